"""A submitted job: its id, entrypoint and runtime_env; following it; waiting for its end."""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import typer

from raytune_ft.errors import UserError
from raytune_ft.spec import ExperimentSpec
from raytune_ft.submit.client import Jobs

# Ids go into URL paths (/api/jobs/ID): anything else would reach another endpoint.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
POLL_S = 1.0
# Ray sends SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (3 s by default); a job that
# is still not stopped after a minute has a cluster problem, not a slow shutdown.
STOP_WAIT_S = 60.0


def submission_id(name: str, kind: str, now: datetime | None = None) -> str:
    """NAME-KIND-YYYYmmdd-HHMMSS-XXXX: readable, sortable, and unique (Ray refuses reuse)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{kind}-{stamp}-{secrets.token_hex(2)}"


def command_kind(spec: ExperimentSpec) -> str:
    return "tune" if spec.sweep is not None else "train"


def entrypoint(kind: str, spec_name: str, overrides: list[str]) -> str:
    args = ["python", "-m", "raytune_ft", kind, spec_name]
    for item in overrides:
        args += ["--set", item]
    return shlex.join(args)


def runtime_env(spec: ExperimentSpec, working_dir: Path) -> dict[str, Any]:
    from raytune_ft.launch.local_ray import RUNTIME_ENV_VARS

    env: dict[str, Any] = {
        "working_dir": str(working_dir),
        "env_vars": {**RUNTIME_ENV_VARS, **spec.cluster.runtime_env.env_vars},
    }
    if spec.cluster.runtime_env.pip:
        env["pip"] = list(spec.cluster.runtime_env.pip)
    return env


def check_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise UserError(
            f"job id {job_id!r}: expected a submission id such as quickstart-train-20260101-"
            "120000-ab12 (letters, digits, '.', '_', '-')"
        )
    return job_id


def job_info(jobs: Jobs, job_id: str) -> Any:
    """The job's details; an unknown id is bad input (exit 2), named with the address."""
    check_id(job_id)
    try:
        return jobs.client.get_job_info(job_id)
    except RuntimeError as exc:
        if "status code 404" not in str(exc):
            raise
    raise UserError(
        f"job id {job_id!r}: no such job at {jobs.address.url}; list the jobs with: "
        f"raytune-ft jobs list --address {jobs.address.url}"
    )


def wait_for(
    jobs: Jobs, job_id: str, until: Callable[[Any], bool], timeout_s: float | None = None
) -> Any:
    """Poll the job until `until(status)` holds (or the time-out passes); its last details."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = jobs.client.get_job_info(job_id)
        if until(info.status) or (deadline is not None and time.monotonic() > deadline):
            return info
        time.sleep(POLL_S)


def _ended(status: Any) -> bool:
    return status.is_terminal()


def follow(jobs: Jobs, job_id: str, out: TextIO | None = None) -> Any:
    """Stream the job's logs until it ends; its final details. Ctrl-C raises KeyboardInterrupt."""
    out = out or sys.stdout

    async def tail() -> None:
        async for chunk in jobs.client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    import aiohttp

    try:
        asyncio.run(tail())
    except (RuntimeError, OSError, aiohttp.ClientError) as exc:  # the stream broke, not the job
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"note: log stream closed ({first}); waiting for the job to end", err=True)
    return wait_for(jobs, job_id, _ended)


def first_line(text: str | None) -> str:
    """The message's first line, without the job's log tail Ray appends to a failure."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line.split(", last available logs")[0]


def outcome(info: Any) -> int:
    """0 when the job succeeded, else 1, with one line saying how it ended."""
    job_id = info.submission_id or info.job_id
    status = str(info.status)
    if status == "SUCCEEDED":
        typer.echo(f"job {job_id}: SUCCEEDED", err=True)
        return 0
    typer.echo(f"failed: job {job_id}: {status}: {first_line(info.message)}", err=True)
    return 1


def stop(jobs: Jobs, job_id: str, wait: bool) -> Any:
    """Ask Ray to stop the job (SIGTERM, then SIGKILL); with `wait`, until it has ended."""
    jobs.client.stop_job(job_id)
    if not wait:
        return jobs.client.get_job_info(job_id)
    return wait_for(jobs, job_id, _ended, timeout_s=STOP_WAIT_S)


def reattach_hint(jobs: Jobs, job_id: str) -> str:
    return f"raytune-ft jobs logs {job_id} --follow --address {jobs.address.url}"


def ask_to_stop(jobs: Jobs, job_id: str) -> int:
    """After Ctrl-C while following: stop the job (if a person says so) or detach. Exit 130."""
    answer = ""
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            typer.echo(f"\nStop job {job_id}? [y/N] ", err=True, nl=False)
            answer = sys.stdin.readline().strip().lower()
        except (KeyboardInterrupt, EOFError):  # a second Ctrl-C during the question: detach
            typer.echo("", err=True)
            answer = ""
    if answer in ("y", "yes"):
        info = stop(jobs, job_id, wait=True)
        typer.echo(f"job {job_id}: {info.status}", err=True)
        return 130
    typer.echo(
        f"detached; job {job_id} keeps running; reattach with: {reattach_hint(jobs, job_id)}",
        err=True,
    )
    return 130


def when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
