"""Ctrl-C and SIGTERM: stop Ray's work cleanly, then tell the caller which signal it was.

Ray changes signal handling under us: `ray.init` turns SIGTERM into `sys.exit(15)`; Tune's
`fit()` takes SIGINT (unless TUNE_DISABLE_SIGINT_HANDLER) and stops gracefully on SIGUSR1;
Train V2's `fit()`, in the main thread, installs a SIGINT handler whose `sys.exit(0)` surfaces
from `ray.get` as SystemExit(1). None of them says afterwards that the run was interrupted.
Here one handler takes both signals and records which arrived: during a sweep it hands the stop
to Tune (which saves its state for --resume); otherwise it raises KeyboardInterrupt, and the
caller shuts Ray down. `fit_in_thread` keeps Train's handler out of the way.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

_received: list[tuple[int, float]] = []  # (signal, monotonic time)
_phase: list[str] = []
_run_dirs: list[object] = []
_installed = False
# A supervisor (timeout, systemd, a shell) often forwards a signal the process also got
# directly: a repeat this soon is the same request, not a second "stop now".
_REPEAT_WINDOW_S = 1.0


def install() -> None:
    """Take SIGINT and SIGTERM (main thread only; elsewhere signals are not ours to take)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # we forward to Tune's SIGUSR1 stop instead
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    _installed = True


def reinstall() -> None:
    """After `ray.init` (which replaced SIGTERM's handler), if `install` was called before."""
    if _installed:
        install()


def received() -> int | None:
    """The first signal that arrived, if any."""
    return _received[0][0] if _received else None


def note_run_dir(run_dir: object) -> None:
    """The folder of the run in progress, named if a signal stops it."""
    _run_dirs.append(run_dir)


def current_run_dir() -> object | None:
    return _run_dirs[-1] if _run_dirs else None


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a Tune `fit()` in progress ("tune"), whose own stop a signal should use."""
    _phase.append(name)
    try:
        yield
    finally:
        _phase.pop()
        reinstall()  # Train and Tune leave their handlers behind


def _handler(signum: int, frame: FrameType | None) -> None:
    if _received:
        if time.monotonic() - _received[0][1] < _REPEAT_WINDOW_S:
            return
        raise KeyboardInterrupt  # a second request: stop now, whatever is in progress
    _received.append((signum, time.monotonic()))
    current = _phase[-1] if _phase else None
    if current == "tune":
        stop = signal.getsignal(signal.SIGUSR1)  # Tune: save state, stop trials, return
        if callable(stop):
            stop(signum, frame)
            return
    raise KeyboardInterrupt


def fit_in_thread(fit: Callable[[], T]) -> T:
    """Run a Ray Train `fit()` off the main thread, which stays free to take signals.

    Off the main thread, Train V2 installs no SIGINT handler of its own; a signal raises
    KeyboardInterrupt here, and shutting Ray down (the caller's job) stops the workers.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fit()
        except BaseException as exc:  # handed to the caller as is
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="raytune-ft-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
