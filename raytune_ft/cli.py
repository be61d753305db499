"""The `raytune-ft` command line. Bad input exits 2 with one line per problem."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from raytune_ft.errors import RunFailed, UserError

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
            typer.echo(f"failed: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


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


@app.command()
@_user_errors
def train(spec: SpecArg, set_: SetOpt = None) -> None:
    """Run one finetune on Ray Train; print the run folder."""
    from raytune_ft.train.runner import run_training

    outcome = run_training(_load(spec, set_))
    _print_outcome("train", outcome.run_dir, outcome.summary)


@app.command()
@_user_errors
def tune(
    spec: SpecArg,
    set_: SetOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the latest sweep of this spec.")
    ] = False,
) -> None:
    """Run a hyperparameter sweep on Ray Tune; print the sweep folder and the best config."""
    from raytune_ft.sweep.runner import run_sweep

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
    for key in ("test_accuracy", "test_f1", "test_majority_accuracy"):
        if key in test:
            table.add_row(key, f"{test[key]:.4f}")
    for group, metrics in test.get("slices", {}).items():
        table.add_row(f"  test_accuracy ({group})", f"{metrics['test_accuracy']:.4f}")
    table.add_row("wall time", f"{summary['wall_time_s']:.0f} s")
    console.print(table)
    typer.echo(str(run_dir))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
