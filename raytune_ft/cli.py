"""The `raytune-ft` command line. Bad input exits 2 with one line per problem."""

from __future__ import annotations

import json
import shlex
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from raytune_ft.errors import Interrupted, RunFailed, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Finetune Hugging Face models on Ray Train and sweep them on Ray Tune.",
)

SpecArg = Annotated[Path, typer.Argument(help="Experiment spec (YAML).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a field: --set train.learning_rate=1e-4 (repeatable)."),
]


def _print_version(value: bool) -> None:
    if value:
        from raytune_ft import __version__

        typer.echo(f"raytune-ft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Finetune Hugging Face models on Ray Train and sweep them on Ray Tune."""


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
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


def _load(spec: Path, overrides: list[str] | None) -> Any:
    from raytune_ft.spec import load_spec

    return load_spec(spec, overrides or [])


@app.command()
@_user_errors
def validate(spec: SpecArg, set_: SetOpt = None) -> None:
    """Load, override and validate a spec; print it with every default filled in."""
    from raytune_ft.run_folder import spec_yaml

    typer.echo(spec_yaml(_load(spec, set_)), nl=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a spec (for editor completion and checks)."""
    from raytune_ft.spec import ExperimentSpec

    typer.echo(json.dumps(ExperimentSpec.model_json_schema(), indent=2))


ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the latest unfinished run of this spec.")
]


@app.command()
@_user_errors
def train(spec: SpecArg, set_: SetOpt = None, resume: ResumeOpt = False) -> None:
    """Run one finetune on Ray Train (or each stage of a chain); print the run folder(s)."""
    from raytune_ft.launch import interrupts
    from raytune_ft.train.runner import run_chain, run_training

    interrupts.install()
    typed = _load(spec, set_)
    if typed.stages is not None:
        if resume:
            raise UserError("--resume: a chain of stages is not resumable yet; run it again")
        for outcome in run_chain(typed):
            _print_outcome("train", outcome.run_dir, outcome.summary)
        return
    outcome = run_training(typed, resume=resume)
    _print_outcome("train", outcome.run_dir, outcome.summary)


@app.command()
@_user_errors
def tune(spec: SpecArg, set_: SetOpt = None, resume: ResumeOpt = False) -> None:
    """Run a hyperparameter sweep on Ray Tune; print the sweep folder and the best config."""
    from raytune_ft.launch import interrupts
    from raytune_ft.sweep.runner import run_sweep

    interrupts.install()
    outcome = run_sweep(_load(spec, set_), resume=resume)
    _print_outcome("tune", outcome.run_dir, outcome.summary)


def _print_outcome(kind: str, run_dir: Path, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{kind}: {summary['name']}", show_header=False)
    if "best_config" in summary:
        for key, value in summary["best_config"].items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        table.add_row("trials", ", ".join(f"{k} {v}" for k, v in summary["trials"].items()))
    table.add_row(f"best {summary['metric']}", f"{summary['best_validation']:.4f}")
    test = summary["test_metrics"]
    for key, value in test.items():
        if key != "slices" and not key.endswith(("_examples", "_tokens", "_generated")):
            table.add_row(key, f"{value:.4f}")
    sliced = "test_" + summary["metric"].removeprefix("eval_")
    for group, metrics in test.get("slices", {}).items():
        if sliced in metrics:
            table.add_row(f"  {sliced} ({group})", f"{metrics[sliced]:.4f}")
    table.add_row("wall time", f"{summary['wall_time_s']:.0f} s")
    console.print(table)
    typer.echo(str(run_dir))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (e.g. while importing): no run to name
        typer.echo("interrupted (SIGINT)", err=True)
        sys.exit(130)
