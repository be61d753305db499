"""What every command shares: how bad input, failures and interrupts end a command."""

from __future__ import annotations

import shlex
import signal
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer

from raytune_ft.errors import Interrupted, RunFailed, UserError


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input: its lines on stderr, exit 2. A failed run: one line, exit 1. No traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            for line in exc.problems:
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2) from None
        except RunFailed as exc:
            typer.echo(f"{'error' if exc.bad_input else 'failed'}: {exc}", err=True)
            raise typer.Exit(2 if exc.bad_input else 1) from None
        except (Interrupted, KeyboardInterrupt) as exc:
            typer.echo(_interrupted_line(fn.__name__, exc, kwargs), err=True)
            raise typer.Exit(128 + _signum(exc)) from None

    return wrapper


def _signum(exc: BaseException) -> int:
    from raytune_ft.launch import interrupts

    if isinstance(exc, Interrupted):
        return exc.signum
    return interrupts.received() or signal.SIGINT


def _interrupted_line(command: str, exc: BaseException, kwargs: dict[str, Any]) -> str:
    from raytune_ft.launch import interrupts

    name = signal.Signals(_signum(exc)).name
    run_dir = getattr(exc, "run_dir", None) or interrupts.current_run_dir()
    if run_dir is None:
        return f"interrupted ({name}) before the run started; nothing to resume"
    sets = "".join(f" --set {shlex.quote(item)}" for item in kwargs.get("set_") or [])
    again = f"raytune-ft {command} {shlex.quote(str(kwargs['spec']))}{sets} --resume"
    return f"interrupted ({name}); Ray stopped; run folder: {run_dir}; resume with: {again}"
