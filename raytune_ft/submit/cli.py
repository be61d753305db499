"""`raytune-ft submit` and `raytune-ft jobs ...`: the Ray Jobs API from a laptop."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from raytune_ft.cli_support import user_errors
from raytune_ft.errors import UserError

if TYPE_CHECKING:
    from raytune_ft.submit.client import Jobs

jobs_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Ray Jobs on a cluster: list, status, logs, stop.",
)

AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The Ray dashboard, e.g. http://HEAD:8265 (else $RAY_API_SERVER_ADDRESS, "
        "else $RAY_ADDRESS when it is an http(s) URL).",
        show_default=False,
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding the Ray auth token, for a head started with RAY_AUTH_MODE=token "
        "(else $RAY_AUTH_TOKEN, else the file $RAY_AUTH_TOKEN_PATH names, else "
        "~/.ray/auth_token). The token is sent only to a head that asks for one.",
        show_default=False,
    ),
]
JobIdArg = Annotated[str, typer.Argument(help="The submission id `submit` printed.")]


def _connect(address: str | None, token_file: Path | None) -> Jobs:
    from raytune_ft.submit.client import connect, resolve_address

    return connect(resolve_address(address), token_file)


@user_errors
def submit_command(
    spec: Annotated[Path, typer.Argument(help="Experiment spec (YAML).")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a field: --set train.learning_rate=1e-4 (repeatable)."
        ),
    ] = None,
    address: AddressOpt = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Stream the job's logs until it ends: exit 0 if it succeeded, else 1."
        ),
    ] = False,
    working_dir: Annotated[
        Path | None,
        typer.Option(
            "--working-dir",
            help="Folder to upload; it must hold the spec and its local data. "
            "[default: the current folder]",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="A .gitignore pattern to leave out (repeatable)."),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Return once submitted, without waiting for it to start."),
    ] = False,
    token_file: TokenFileOpt = None,
) -> None:
    """Run a spec on a Ray cluster as a Ray Job (`train`, or `tune` for a spec with a sweep)."""
    from raytune_ft.spec import load_spec
    from raytune_ft.submit.client import resolve_address
    from raytune_ft.submit.upload import check_storage, plan_upload, ray_upload_cap

    if follow and no_wait:
        raise UserError("--follow and --no-wait: expected one of them, not both")
    where = resolve_address(address)
    overrides = set_ or []
    typed = load_spec(spec, overrides)
    check_storage(typed)
    if typed.cluster.node_groups:  # the declared shape is known here: refuse before uploading
        from raytune_ft.launch.resources import decide_placement

        decide_placement(typed, [])
    plan = plan_upload(typed, spec, overrides, working_dir or Path.cwd(), exclude or [])
    plan.check_size(ray_upload_cap())
    for note in plan.notes:
        typer.echo(f"note: {note}", err=True)
    from raytune_ft.submit.client import connect
    from raytune_ft.submit.submission import submit

    raise typer.Exit(submit(connect(where, token_file), typed, plan, follow, no_wait))


@jobs_app.command("list")
@user_errors
def list_jobs(address: AddressOpt = None, token_file: TokenFileOpt = None) -> None:
    """Every job the cluster knows, newest first."""
    from rich.console import Console
    from rich.table import Table

    from raytune_ft.submit.jobs import shorten, when

    jobs = _connect(address, token_file)
    with jobs.calls():
        found = jobs.client.list_jobs()
    found.sort(key=lambda info: info.start_time or 0, reverse=True)
    table = Table(title=f"Ray jobs at {jobs.address.url}")
    table.add_column("id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("start", no_wrap=True)
    table.add_column("end", no_wrap=True)
    table.add_column("entrypoint", overflow="ellipsis")
    for info in found:
        table.add_row(
            info.submission_id or info.job_id or "",
            str(info.status),
            when(info.start_time),
            when(info.end_time),
            shorten(info.entrypoint.removeprefix("python -m raytune_ft "), 50),
        )
    # Piped, Rich assumes 80 columns and would cut the ids; a terminal keeps its own width.
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@jobs_app.command("status")
@user_errors
def status(job_id: JobIdArg, address: AddressOpt = None, token_file: TokenFileOpt = None) -> None:
    """One job's status, times, entrypoint and message."""
    from raytune_ft.submit.jobs import first_line, job_info, when

    jobs = _connect(address, token_file)
    with jobs.calls():
        info = job_info(jobs, job_id)
    rows = {
        "id": info.submission_id or info.job_id,
        "status": str(info.status),
        "start": when(info.start_time),
        "end": when(info.end_time),
        "entrypoint": info.entrypoint,
        "message": first_line(info.message),
    }
    if info.driver_exit_code is not None:
        rows["exit code"] = str(info.driver_exit_code)
    for key, value in rows.items():
        typer.echo(f"{key + ':':12}{value}")


@jobs_app.command("logs")
@user_errors
def logs(
    job_id: JobIdArg,
    follow: Annotated[
        bool, typer.Option("--follow", help="Stream until the job ends (exit 0 if it succeeded).")
    ] = False,
    address: AddressOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """A job's logs so far, or (--follow) streamed until it ends."""
    from raytune_ft.submit import jobs as job

    jobs = _connect(address, token_file)
    with jobs.calls():
        job.job_info(jobs, job_id)
        if not follow:
            typer.echo(jobs.client.get_job_logs(job_id), nl=False)
            return
        try:
            code = job.outcome(job.follow(jobs, job_id))
        except KeyboardInterrupt:
            typer.echo(f"\ndetached; job {job_id} keeps running", err=True)
            code = 130
    raise typer.Exit(code)


@jobs_app.command("stop")
@user_errors
def stop(
    job_id: JobIdArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job has ended.")] = False,
    address: AddressOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Stop a job (SIGTERM to its entrypoint, then SIGKILL)."""
    from raytune_ft.submit import jobs as job

    jobs = _connect(address, token_file)
    with jobs.calls():
        info = job.job_info(jobs, job_id)
        if info.status.is_terminal():
            typer.echo(f"job {job_id} had already ended: {info.status}")
            return
        info = job.stop(jobs, job_id, wait)
    if wait and not info.status.is_terminal():
        typer.echo(
            f"failed: job {job_id} is still {info.status} after {job.STOP_WAIT_S:g} s", err=True
        )
        raise typer.Exit(1)
    typer.echo(f"job {job_id}: {info.status}" + ("" if wait else " (stop requested)"))
