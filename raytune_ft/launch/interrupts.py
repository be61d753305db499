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
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class _State:
    installed: bool = False
    received: tuple[int, float] | None = None  # (signal, monotonic time) of the first one
    in_tune: bool = False
    run_dir: object | None = None


_state = _State()
# A supervisor (timeout, systemd, a shell) often forwards a signal the process also got
# directly: a repeat this soon is the same request, not a second "stop now".
_REPEAT_WINDOW_S = 1.0


def install() -> None:
    """Take SIGINT and SIGTERM (main thread only; elsewhere signals are not ours to take)."""
    if threading.current_thread() is not threading.main_thread():
        return
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # we forward to Tune's SIGUSR1 stop instead
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    _state.installed = True


def reinstall() -> None:
    """After `ray.init` (which replaced SIGTERM's handler), if `install` was called before."""
    if _state.installed:
        install()


def received() -> int | None:
    """The first signal that arrived, if any."""
    return _state.received[0] if _state.received else None


def note_run_dir(run_dir: object) -> None:
    """The folder of the run in progress, named if a signal stops it."""
    _state.run_dir = run_dir


def current_run_dir() -> object | None:
    return _state.run_dir


@contextmanager
def tune_running() -> Iterator[None]:
    """Mark a Tune `fit()` in progress: a signal then uses Tune's own graceful stop."""
    _state.in_tune = True
    try:
        yield
    finally:
        _state.in_tune = False
        reinstall()  # Tune leaves its handlers behind


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.received:
        if time.monotonic() - _state.received[1] < _REPEAT_WINDOW_S:
            return
        raise KeyboardInterrupt  # a second request: stop now, whatever is in progress
    _state.received = (signum, time.monotonic())
    if _state.in_tune:
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
