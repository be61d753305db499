"""`raytune-ft submit` and `raytune-ft jobs` against a real `ray start --head` on 127.0.0.1 with
token authentication, each command run as a separate client process, as from a laptop."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from helpers import ROOT

from raytune_ft.launch.sessions import MARKER_ENV, stop_processes

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent  # the venv's bin: `python -m raytune_ft` in jobs finds us
HEAD_MARKER = "RAYTUNE_FT_TEST_HEAD"  # every process of the test head inherits it
PLACES = (
    "the token is read from --token-file, else $RAY_AUTH_TOKEN, else the file "
    "$RAY_AUTH_TOKEN_PATH names, else ~/.ray/auth_token"
)
# The quickstart, cut to seconds: 64 training rows, 2 steps, short sequences.
SHORT = [
    "data.max_train_samples=64",
    "data.max_length=32",
    "train.micro_batch_size=8",
    "train.max_steps=2",
    "train.eval_every=2",
]


def with_sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_range(size: int) -> int:
    """The first port of `size` consecutive free ports (for Ray's workers)."""
    for _ in range(50):
        base = secrets.randbelow(20000) + 20000
        ports = range(base, base + size)
        with contextlib.ExitStack() as stack:
            try:
                for port in ports:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise RuntimeError("no free port range")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Ray's variables or a local session's marker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != MARKER_ENV}
    return env | extra


def head_processes(temp_dir: Path) -> list[psutil.Process]:
    """Processes of the test head: marked in their environment, or (Ray's agents retitle
    themselves, which hides the environment) naming or writing into its temp dir."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.pid == os.getpid():
            continue
        try:
            marked = process.environ().get(HEAD_MARKER) == str(temp_dir)
            named = any(str(temp_dir) in part for part in process.info["cmdline"] or [])
            writing = not (marked or named) and any(
                f.path.startswith(str(temp_dir)) for f in process.open_files()
            )
        except (psutil.Error, OSError):
            continue
        if marked or named or writing:
            found.append(process)
    return found


@dataclass
class Head:
    url: str
    gcs: str
    token: str
    temp_dir: Path
    home: Path  # the clients' HOME: no ~/.ray/auth_token of this machine gets in the way

    def sets(self, *items: str) -> list[str]:
        """--set arguments for a job. Train V2's helper actors look for "the" Ray instance on
        the machine unless RAY_ADDRESS names it, and this machine may run another one (the
        session's `ray_local`): the spec's runtime env names ours."""
        return with_sets([*items, f"cluster.runtime_env.env_vars.RAY_ADDRESS={self.gcs}"])

    def cli(self, *args: str, token: str | None = "env", timeout: float = 300, **kw):
        return subprocess.run(
            [str(BIN / "raytune-ft"), *args],
            env=self.client_env(token),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    def client_env(self, token: str | None = "env") -> dict[str, str]:
        env = clean_env(HOME=str(self.home))
        if token is not None:
            env["RAY_AUTH_TOKEN"] = self.token if token == "env" else token
        return env

    def status(self, job_id: str) -> str:
        response = requests.get(
            f"{self.url}/api/jobs/{job_id}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        return response.json()["status"]


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # Short: Ray's unix sockets live under it and their paths must stay under 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rtjobs-", dir="/tmp"))
    token = secrets.token_hex(24)
    token_file = temp_dir / "token"
    token_file.write_text(token)
    dashboard = free_port()
    env = clean_env(
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_file),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        **{HEAD_MARKER: str(temp_dir)},
    )
    gcs = free_port()
    workers = free_port_range(100)
    command = [
        str(BIN / "ray"), "start", "--head", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--port={gcs}", f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}", f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
        f"--min-worker-port={workers}", f"--max-worker-port={workers + 99}",
        "--num-cpus=3", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    home = temp_dir / "home"
    home.mkdir()
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-3000:]
        url = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 60
        while True:  # the dashboard answers a little after `ray start` returns
            with contextlib.suppress(requests.RequestException):
                headers = {"Authorization": f"Bearer {token}"}
                if requests.get(f"{url}/api/version", headers=headers, timeout=5).ok:
                    break
            assert time.monotonic() < deadline, "the dashboard did not come up"
            time.sleep(0.5)
        yield Head(url, f"127.0.0.1:{gcs}", token, temp_dir, home)
    finally:
        processes = head_processes(temp_dir)
        stop_processes(processes, grace_s=10)
        assert not [p for p in head_processes(temp_dir) if p.is_running()]
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a user would have: the spec, its data, a .gitignore; no .venv, no repository."""
    root = tmp_path_factory.mktemp("laptop")
    shutil.copy(ROOT / "experiments" / "quickstart.yaml", root / "quickstart.yaml")
    shutil.copytree(ROOT / "experiments" / "data" / "sentiment", root / "data" / "sentiment")
    (root / ".gitignore").write_text("runs/\n*.txt\n")  # the data is forced in all the same
    (root / "runs").mkdir()
    (root / "runs" / "old.bin").write_bytes(b"x" * 4096)
    return root


def check_no_secret(head: Head, *results: subprocess.CompletedProcess[str]) -> None:
    for result in results:
        assert head.token not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr[-3000:]


def submitted_id(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.splitlines()[0]


def test_head_listens_on_loopback_only(head: Head) -> None:
    pids = {p.pid for p in head_processes(head.temp_dir)}
    listening = [
        c for c in psutil.net_connections(kind="inet") if c.pid in pids and c.status == "LISTEN"
    ]
    assert len(listening) >= 5  # GCS, raylet, dashboard, agents, ...
    wide = [
        (psutil.Process(c.pid).name(), c.laddr.ip, c.laddr.port)
        for c in listening
        if c.laddr.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    ]
    assert not wide


def test_submit_follow_trains_and_writes_the_run_folder(
    head: Head, workdir: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "runs"
    sets = head.sets("sweep=null", *SHORT, f"storage.path={storage}")
    result = head.cli(
        "submit", "quickstart.yaml", *sets, "--address", head.url, "--follow", cwd=workdir
    )
    check_no_secret(head, result)
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = submitted_id(result)
    assert re.fullmatch(r"quickstart-train-\d{8}-\d{6}-[0-9a-f]{4}", job_id)
    assert f"submitted job {job_id} to {head.url}" in result.stderr
    assert "data.train.path: uploading data/sentiment/amazon_cells_labelled.txt" in result.stderr
    assert "uploading 4 files" in result.stderr  # the spec and 3 data files; not runs/, readme
    assert result.stderr.rstrip().endswith(f"job {job_id}: SUCCEEDED")
    assert head.status(job_id) == "SUCCEEDED"
    [run_dir] = storage.glob("quickstart-train-*")
    assert (run_dir / "summary.json").is_file()


def test_sweep_job_shows_in_status_logs_and_list(head: Head, workdir: Path, tmp_path: Path) -> None:
    sets = head.sets(
        *SHORT, "train.max_steps=1", "train.eval_every=1", "sweep.num_samples=2",
        f"storage.path={tmp_path}",
    )  # fmt: skip
    submit = head.cli(
        "submit", "quickstart.yaml", *sets, "--address", head.url, "--no-wait", cwd=workdir
    )
    assert submit.returncode == 0, submit.stderr[-3000:]
    job_id = submitted_id(submit)
    assert job_id.startswith("quickstart-tune-")
    status = head.cli("jobs", "status", job_id, "--address", head.url)
    assert status.returncode == 0, status.stderr
    assert f"id:         {job_id}" in status.stdout
    assert re.search(r"status:     (PENDING|RUNNING)", status.stdout), status.stdout
    assert "raytune_ft tune quickstart.yaml" in status.stdout
    follow = head.cli("jobs", "logs", job_id, "--follow", "--address", head.url)
    assert follow.returncode == 0, follow.stderr[-3000:]
    assert follow.stderr.rstrip().endswith(f"job {job_id}: SUCCEEDED")
    logs = head.cli("jobs", "logs", job_id, "--address", head.url)
    listed = head.cli("jobs", "list", "--address", head.url)
    check_no_secret(head, submit, status, follow, logs, listed)
    assert "tune: quickstart" in logs.stdout  # the results table the sweep prints at the end
    [row] = [line for line in listed.stdout.splitlines() if job_id in line]
    assert row.split("│")[2].strip() == "SUCCEEDED"
    [sweep_dir] = tmp_path.glob("quickstart-tune-*")
    assert (sweep_dir / "summary.json").is_file()


def test_ctrl_c_detaches_then_jobs_stop_ends_the_job(
    head: Head, workdir: Path, tmp_path: Path
) -> None:
    sets = head.sets(*SHORT, "sweep=null", "train.max_steps=500", f"storage.path={tmp_path}")
    proc = subprocess.Popen(
        [str(BIN / "raytune-ft"), "submit", "quickstart.yaml", *sets,
         "--address", head.url, "--follow"],
        cwd=workdir, env=head.client_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    job_id = proc.stdout.readline().strip()  # the id is the first line on stdout
    assert job_id.startswith("quickstart-train-"), proc.communicate()[1][-3000:]
    deadline = time.monotonic() + 120
    while head.status(job_id) != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(2)  # let the client reach its log stream
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.rstrip().endswith(
        f"detached; job {job_id} keeps running; reattach with: raytune-ft jobs logs {job_id} "
        f"--follow --address {head.url}"
    )
    assert head.status(job_id) == "RUNNING"
    stop = head.cli("jobs", "stop", job_id, "--wait", "--address", head.url)
    check_no_secret(head, stop)
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout == f"job {job_id}: STOPPED\n"
    assert head.status(job_id) == "STOPPED"
    unknown = head.cli("jobs", "status", "no-such-job", "--address", head.url)
    assert unknown.returncode == 2
    assert unknown.stderr == (
        f"error: job id 'no-such-job': no such job at {head.url}; list the jobs with: "
        f"raytune-ft jobs list --address {head.url}\n"
    )


def test_wrong_or_missing_token_fails_authentication(head: Head, tmp_path: Path) -> None:
    wrong = head.cli("jobs", "list", "--address", head.url, token="not-the-token-1234")
    assert wrong.returncode == 2
    assert wrong.stderr == (
        f"error: authentication failed: the Ray head at {head.url} refused the token from "
        f"$RAY_AUTH_TOKEN (HTTP 403); {PLACES}\n"
    )
    missing = head.cli("jobs", "list", "--address", head.url, token=None)
    assert missing.returncode == 2
    assert missing.stderr == (
        f"error: authentication failed: the Ray head at {head.url} requires a token and none "
        f"was found; {PLACES}\n"
    )
    (tmp_path / "token").write_text(head.token + "\n")
    by_file = head.cli(
        "jobs", "list", "--address", head.url, "--token-file", str(tmp_path / "token"), token=None
    )
    assert by_file.returncode == 0, by_file.stderr
    helps = [head.cli(*command, "--help") for command in (["submit"], ["jobs", "list"])]
    assert all(shown.returncode == 0 for shown in helps)
    check_no_secret(head, wrong, missing, by_file, *helps)
    assert "not-the-token-1234" not in wrong.stdout + wrong.stderr


def test_unreachable_address_and_not_a_dashboard(head: Head) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = head.cli("jobs", "list", "--address", closed)
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert result.stderr == (
        f"error: --address: cannot reach {closed}: Connection refused; expected a Ray "
        "dashboard, e.g. http://HEAD:8265\n"
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        other = f"http://127.0.0.1:{server.server_address[1]}"
        result = head.cli("jobs", "list", "--address", other, cwd=head.home)
    finally:
        server.shutdown()
    assert result.returncode == 2
    assert result.stderr == (
        f"error: --address: cannot reach {other}: no Ray dashboard there (GET /api/version "
        "gave HTTP 404); expected a Ray dashboard, e.g. http://HEAD:8265\n"
    )
