"""Submitting a planned upload as a Ray Job, then following it or waiting for it to start."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from raytune_ft.spec import ExperimentSpec
from raytune_ft.submit import jobs as job
from raytune_ft.submit.client import Jobs
from raytune_ft.submit.upload import UploadPlan


def submit(jobs: Jobs, spec: ExperimentSpec, plan: UploadPlan, follow: bool, no_wait: bool) -> int:
    """Stage and submit the job; then follow it, wait for it to start, or return. Exit code."""
    kind = job.command_kind(spec)
    job_id = job.submission_id(spec.name, kind)
    entrypoint = job.entrypoint(kind, plan.spec_name, plan.overrides)
    submitted = False
    try:
        with tempfile.TemporaryDirectory(prefix="raytune-ft-upload-") as tmp:
            staged = Path(tmp) / spec.name
            plan.stage(staged)
            typer.echo(
                f"uploading {len(plan.files)} files ({plan.size / (1 << 20):.1f} MiB) "
                f"from {plan.root}",
                err=True,
            )
            with jobs.calls():
                submitted = True  # from here on the job may exist even if we are interrupted
                jobs.client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=job_id,
                    runtime_env=job.runtime_env(spec, staged),
                    metadata={"raytune_ft_spec": spec.name, "raytune_ft_command": kind},
                )
    except KeyboardInterrupt:
        if not submitted:
            typer.echo("interrupted before the job was submitted; nothing runs", err=True)
        else:
            typer.echo(
                f"interrupted while submitting; see whether job {job_id} exists with: "
                f"raytune-ft jobs status {job_id} --address {jobs.address.url}",
                err=True,
            )
        return 130
    url = jobs.address.url
    typer.echo(f"submitted job {job_id} to {url}", err=True)
    typer.echo(f"  entrypoint: {entrypoint}", err=True)
    typer.echo(f"  dashboard:  {url}/#/jobs/{job_id}", err=True)
    typer.echo(f"  logs:       {job.reattach_hint(jobs, job_id)}", err=True)
    typer.echo(job_id)
    try:
        with jobs.calls():
            if follow:
                return job.outcome(job.follow(jobs, job_id))
            if no_wait:
                return 0
            info = job.wait_for(jobs, job_id, lambda status: str(status) != "PENDING")
            if str(info.status) in ("FAILED", "STOPPED"):
                return job.outcome(info)
            typer.echo(f"job {job_id}: {info.status}", err=True)
            return 0
    except KeyboardInterrupt:
        if follow:
            with jobs.calls():
                return job.ask_to_stop(jobs, job_id)
        typer.echo(f"stopped waiting; job {job_id} goes on", err=True)
        return 130
