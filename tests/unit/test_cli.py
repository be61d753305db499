"""Bad input to train/tune fails in the pre-flight, before Ray starts: exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import minimal_spec
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.errors import UserError

runner = CliRunner()
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def spec_file(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "spec.yaml"
    sections = {"storage": {"path": str(tmp_path)}} | sections
    path.write_text(yaml.safe_dump(minimal_spec(**sections)))
    return path


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


def test_train_with_a_malformed_data_row_exits_2(tmp_path: Path) -> None:
    (tmp_path / "d.tsv").write_text("text\tlabel\ngood\t1\nno label here\n")
    path = spec_file(tmp_path, data={"train": {"path": str(tmp_path / "d.tsv")}})
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        "error: d.tsv:3: expected 2 tsv fields (text, label), found 1".replace(
            "d.tsv", str(tmp_path / "d.tsv")
        )
    ]


def test_train_with_an_unknown_model_exits_2(tmp_path: Path) -> None:
    path = spec_file(tmp_path, model={"name_or_path": "acme/missing"})
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "model.name_or_path: cannot load 'acme/missing'" in result.output


def test_tune_without_sweep_section_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tune", str(spec_file(tmp_path))])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        "error: sweep: the spec has no sweep section; use `raytune-ft train` instead"
    ]


def test_tune_resume_with_nothing_to_resume_exits_2(tmp_path: Path) -> None:
    path = spec_file(tmp_path, sweep={"space": {"train.learning_rate": {"choice": [1e-4]}}})
    result = runner.invoke(app, ["tune", str(path), "--resume"])
    assert result.exit_code == 2
    assert "--resume: no earlier sweep of 't'" in result.output
    extend = runner.invoke(app, ["tune", str(path), "--extend", "2"])
    assert extend.exit_code == 2
    assert "--extend: no earlier sweep of 't'" in extend.output
    negative = runner.invoke(app, ["tune", str(path), "--extend", "-1"])
    assert negative.exit_code == 2 and "--extend" in negative.output


def test_console_script_and_module_entry_point(tmp_path: Path) -> None:
    """A real process: exit code 2, the problem on stderr, no Python traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntrain: {epochs: 0}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "raytune_ft", "validate", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: {bad}:4: train.epochs: Input should be greater than or equal to 1 (got 0)"
    )
    assert "Traceback" not in out.stderr + out.stdout


def test_a_failed_run_exits_1_with_one_line(tmp_path: Path, monkeypatch) -> None:
    import raytune_ft.train.runner as train_runner
    from raytune_ft.errors import RunFailed

    def fail(spec: object, resume: bool = False) -> None:
        raise RunFailed(tmp_path / "run", RuntimeError("worker group died 2 times\nstack..."))

    monkeypatch.setattr(train_runner, "run_training", fail)
    result = runner.invoke(app, ["train", str(spec_file(tmp_path))])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"failed: worker group died 2 times (run folder: {tmp_path / 'run'})"
    )


def test_bad_peft_target_modules_exit_2_before_ray_starts(tmp_path: Path, tiny_bert: Path) -> None:
    """The pre-flight builds the model on the meta device: the error comes from the driver."""
    path = spec_file(
        tmp_path,
        model={"name_or_path": str(tiny_bert)},
        peft={"method": "lora", "target_modules": ["nope"]},
    )
    out = subprocess.run(
        [sys.executable, "-m", "raytune_ft", "train", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    [line] = out.stderr.splitlines()
    assert line.startswith("error: peft.target_modules: ")
    assert "(module names in this model: " in line and "query" in line
    assert not list(tmp_path.glob("t-train-*")), "no run folder for a spec that cannot run"


def test_storage_path_that_cannot_be_written_exits_2(tmp_path: Path) -> None:
    readonly = Path("/sys/kernel")  # exists, and not even root may create folders in it
    if not readonly.is_dir():
        pytest.skip("no /sys/kernel here")
    path = spec_file(tmp_path, storage={"path": str(readonly)})
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [
        f"error: storage.path: cannot create {readonly}/prepared (prepared data): "
        "Operation not permitted; expected a folder you can write"
    ]
    (tmp_path / "afile").write_text("")
    path = spec_file(tmp_path, storage={"path": str(tmp_path / "afile")})
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "storage.path: " in result.output and "expected a folder" in result.output


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    from raytune_ft.run_folder import write_atomic

    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    write_atomic(tmp_path / "b.json", "{}")
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~old


def test_version() -> None:
    from raytune_ft import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"raytune-ft {__version__}\n"


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_cluster_address_exits_2_naming_it(tmp_path: Path, scheme: str) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = spec_file(tmp_path, cluster={"address": f"{scheme}127.0.0.1:{port}"})
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [
        f"error: cluster.address: cannot reach 127.0.0.1:{port} (Connection refused; one TCP "
        "connection tried for 5 s); expected a running Ray head (`ray start --head`): "
        "HOST:6379, or ray://HOST:10001 for Ray Client"
    ]


def test_malformed_cluster_address_is_a_spec_error(tmp_path: Path) -> None:
    path = spec_file(tmp_path, cluster={"address": "http://head"})
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        f"error: {path}:2: cluster.address: 'http://head': expected 'local', 'auto', "
        "HOST:PORT (a head's GCS, usually 6379) or ray://HOST:10001"
    ]


def test_max_length_beyond_the_models_positions_exits_2(tmp_path: Path, tiny_bert: Path) -> None:
    path = spec_file(tmp_path, model={"name_or_path": str(tiny_bert)})
    result = runner.invoke(app, ["train", str(path), "--set", "data.max_length=512"])
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [
        f"error: data.max_length: 512 tokens, but {str(tiny_bert)!r} has 128 positions; "
        "expected at most 128"
    ]


def test_gpu_only_settings_on_a_cpu_machine_exit_2_before_ray(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = spec_file(tmp_path, train={"precision": "fp16"})
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert error_lines(result.output) == [
        "error: train.precision: fp16 needs a GPU; use bf16 or fp32 on CPU"
    ]
    result = runner.invoke(app, ["train", str(path), "--set", "scaling.use_gpu=true"])
    assert error_lines(result.output) == [
        "error: scaling.use_gpu: true, but this machine has no CUDA GPU"
    ]


def test_a_web_server_given_as_the_gcs_address_is_refused_at_once() -> None:
    """ray.init retries a port that is not a GCS forever (the dashboard's 8265, typically)."""
    import http.server
    import threading

    from raytune_ft.launch.local_ray import check_reachable
    from raytune_ft.spec.sections import ClusterSpec

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(UserError) as caught:
            check_reachable(ClusterSpec(address=f"127.0.0.1:{server.server_port}"))
    finally:
        server.shutdown()
    (line,) = caught.value.problems
    assert f"127.0.0.1:{server.server_port} is a web server (HTTP/1.0" in line
    assert "expected HOST:6379" in line


def test_render_into_a_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = runner.invoke(
        app,
        [
            "k8s",
            "render",
            str(EXPERIMENTS / "quickstart.yaml"),
            "--set",
            "storage.path=/mnt/runs",
            "-o",
            str(blocker / "sub"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert f"error: -o {blocker / 'sub'}: cannot write" in result.output
    assert "Traceback" not in result.output


def test_a_malformed_jobs_address_is_one_line() -> None:
    result = runner.invoke(app, ["jobs", "list", "--address", "http://[::1"])
    assert result.exit_code == 2, result.output
    assert "error: --address: 'http://[::1' is not a URL" in result.output
