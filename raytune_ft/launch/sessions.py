"""Each local Ray this tool starts is a session of its own: own temp dir, own address, marked.

- Own temp dir and GCS port, with RAY_ADDRESS pointing at it before `ray.init`: Ray's helpers
  (Train V2's placement-group cleaner, the state API) otherwise scan the machine for "active
  Ray instances" and, with a second local Ray running, fail with "Found multiple active Ray
  instances" or talk to the wrong cluster.
- A marker in the environment, which every Ray process inherits (agents and workers rewrite
  their command lines, not their environment), and an owner file with the driver's pid: when a
  driver is SIGKILLed, a later session finds the processes it left and stops them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MARKER_ENV = "RAYTUNE_FT_SESSION"
PREFIX = "rtft-"
OWNER_FILE = "owner.json"
# Ray puts unix sockets under the temp dir; their paths must stay under 108 bytes.
_MAX_ROOT_LENGTH = 24
_SESSION_ENV = ("RAY_GCS_SERVER_PORT", "RAY_ADDRESS", MARKER_ENV)


def sessions_root() -> Path:
    root = Path(tempfile.gettempdir())
    return root if len(str(root)) <= _MAX_ROOT_LENGTH else Path("/tmp")


@dataclass
class LocalSession:
    temp_dir: Path
    gcs_port: int
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def create(cls) -> LocalSession:
        temp_dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=sessions_root()))
        owner = {"pid": os.getpid(), "start": _start_mark(os.getpid()), "host": _host()}
        (temp_dir / OWNER_FILE).write_text(json.dumps(owner))
        session = cls(temp_dir, _free_loopback_port())
        session._saved_env = {k: os.environ.get(k) for k in _SESSION_ENV}
        os.environ.update(
            RAY_GCS_SERVER_PORT=str(session.gcs_port),
            RAY_ADDRESS=f"127.0.0.1:{session.gcs_port}",
            **{MARKER_ENV: str(temp_dir)},
        )
        return session

    def close(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_processes(_marked_processes().get(str(self.temp_dir), []))
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def clean_orphaned_sessions() -> list[int]:
    """Stop the processes of sessions whose driver is gone; remove their folders.

    Returns the pids that were stopped.
    """
    marked = _marked_processes()
    stopped: list[int] = []
    folders = {str(f) for f in sessions_root().glob(f"{PREFIX}*") if f.is_dir()} | set(marked)
    for folder in map(Path, sorted(folders)):
        if folder.is_dir() and _owner_alive(folder):
            continue
        processes = marked.get(str(folder), [])
        stopped += [p.pid for p in processes]
        stop_processes(processes)
        shutil.rmtree(folder, ignore_errors=True)
    return stopped


def stop_processes(processes: list[psutil.Process], grace_s: float = 3.0) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)


def _owner_alive(folder: Path) -> bool:
    """False only when the folder's driver is known to be gone from this machine."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        # No owner file yet: a session being created right now, unless the folder is old.
        try:
            return time.time() - folder.stat().st_mtime < 60
        except OSError:  # removed meanwhile by its own session
            return True
    if owner.get("host") != _host():
        return True  # a temp dir shared with another machine or container: not ours to judge
    return _start_mark(owner.get("pid", -1)) == owner.get("start")


def _start_mark(pid: int) -> str | None:
    """When a process started, in a form that a reused pid or a clock change cannot fake."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            # Field 22, counted after the command name (which may hold spaces and parens).
            return "ticks:" + handle.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        pass
    try:
        return f"time:{psutil.Process(pid).create_time():.0f}"
    except psutil.Error:
        return None


def _host() -> str:
    """This machine and boot: a pid means nothing on another one."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = f"{psutil.boot_time():.0f}"
    return f"{socket.gethostname()}/{boot}"


def _marked_processes() -> dict[str, list[psutil.Process]]:
    """Ray's processes of our user, by the session marker in their environment.

    Only Ray's own processes: a program started from a session's driver (a test's CLI run, say)
    inherits the marker too, and is not ours to stop.
    """
    me = os.getpid()
    uid = os.getuid()
    found: dict[str, list[psutil.Process]] = {}
    for process in psutil.process_iter(["uids", "name", "cmdline"]):
        try:
            if process.pid == me or process.info["uids"].real != uid:
                continue
            if not _is_ray_process(process.info["name"] or "", process.info["cmdline"] or []):
                continue
            marker = process.environ().get(MARKER_ENV) or _session_of_open_files(process)
        except (psutil.Error, OSError):
            continue
        if marker:
            found.setdefault(marker, []).append(process)
    return found


def _session_of_open_files(process: psutil.Process) -> str | None:
    """The session folder a process writes its logs into.

    Ray's agents retitle themselves (setproctitle), which overwrites the environment that
    /proc shows, so the marker is gone from them; their open log files still name the folder.
    """
    pattern = re.compile(rf"^({re.escape(str(sessions_root()))}/{PREFIX}[^/]+)/")
    fd_dir = Path(f"/proc/{process.pid}/fd")
    if fd_dir.is_dir():
        targets = []
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                targets.append(os.readlink(fd))
    else:
        targets = [f.path for f in process.open_files()]
    for target in targets:
        match = pattern.match(target)
        if match:
            return match.group(1)
    return None


def _is_ray_process(name: str, cmdline: list[str]) -> bool:
    if name in ("gcs_server", "raylet") or (cmdline and cmdline[0].startswith("ray::")):
        return True
    return any(f"{os.sep}ray{os.sep}" in part for part in cmdline[:3])


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
