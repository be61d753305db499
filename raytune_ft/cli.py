"""The `raytune-ft` command line. Bad input exits 2 with one line per problem."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from raytune_ft.cli_support import user_errors
from raytune_ft.errors import UserError

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


def _load(spec: Path, overrides: list[str] | None) -> Any:
    from raytune_ft.spec import load_spec

    return load_spec(spec, overrides or [])


@app.command()
@user_errors
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
@user_errors
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
@user_errors
def tune(
    spec: SpecArg,
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    extend: Annotated[
        int,
        typer.Option(
            "--extend",
            min=0,
            metavar="N",
            help="Add N trials to the latest sweep of this spec (finishing it first if it was "
            "interrupted); the searcher goes on from everything it has seen.",
        ),
    ] = 0,
) -> None:
    """Run a hyperparameter sweep on Ray Tune; print the sweep folder and the best config."""
    from raytune_ft.launch import interrupts
    from raytune_ft.sweep.runner import run_sweep

    interrupts.install()
    outcome = run_sweep(_load(spec, set_), resume=resume, extend=extend)
    _print_outcome("tune", outcome.run_dir, outcome.summary)


RunArg = Annotated[Path, typer.Argument(help="A sweep folder (runs/<name>-tune-<time>/).")]


@app.command()
@user_errors
def results(
    run: RunArg,
    top: Annotated[int | None, typer.Option(min=1, help="Show the best N trials only.")] = None,
) -> None:
    """Print a sweep's trials, best first, then its best spec."""
    from rich.console import Console

    from raytune_ft.sweep.results import load_results, results_table

    found = load_results(run)
    console = Console()
    console.print(results_table(found, top))
    if found.best_spec_path is not None:
        console.print(f"best spec: {found.best_spec_path}")
        typer.echo(found.best_spec_path.read_text(), nl=False)


@app.command()
@user_errors
def report(
    run: RunArg,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the page and its PNGs (default RUN/report).")
    ] = None,
) -> None:
    """Write an HTML report of a sweep (learning curves, parallel coordinates, importance)."""
    from raytune_ft.sweep.report import write_report

    typer.echo(str(write_report(run, out)))


@app.command()
@user_errors
def estimate(
    spec: SpecArg,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Estimate parameters, memory per device and step time of a trial, before launch."""
    from rich.console import Console
    from rich.table import Table

    from raytune_ft.modeling import estimate as pre

    typed = _load(spec, set_)
    device = pre.device_for(typed)
    found = pre.estimate(typed, device)
    largest = pre.largest_point(typed, device) if typed.sweep is not None else None
    if as_json:
        out = pre.as_dict(found)
        if largest is not None:
            out["largest_sweep_point"] = {"params": largest[0]} | pre.as_dict(largest[1])
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"estimate: {typed.name} ({typed.model.name_or_path})")
    table.add_column("")
    table.add_column("spec")
    rows = pre.report_rows(found)
    if largest is not None:
        table.add_column("largest point of the sweep")
        for (label, value), (_, other) in zip(rows, pre.report_rows(largest[1]), strict=True):
            table.add_row(label, value, other)
    else:
        for label, value in rows:
            table.add_row(label, value)
    console = Console()
    console.print(table)
    if largest is not None:
        values = ", ".join(f"{k}={v!r}" for k, v in largest[0].items())
        console.print(f"largest point: {values}")
    for note in found.notes:
        console.print(f"note: {note}")


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


def _register_groups() -> None:
    from raytune_ft.k8s.cli import k8s_app
    from raytune_ft.submit.cli import jobs_app, submit_command

    app.command("submit")(submit_command)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(k8s_app, name="k8s")


_register_groups()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (e.g. while importing): no run to name
        typer.echo("interrupted (SIGINT)", err=True)
        sys.exit(130)
