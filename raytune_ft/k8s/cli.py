"""`raytune-ft k8s ...`: KubeRay objects from a spec (render, validate, apply, status, delete)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from raytune_ft.cli_support import user_errors

k8s_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="KubeRay objects: render a spec, validate manifests, apply and watch them.",
)


@k8s_app.command("validate")
@user_errors
def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Manifest files or folders (searched for *.yaml and *.yml)."),
    ],
) -> None:
    """Check manifests offline: KubeRay v1.7.0 CRDs (strict), their CEL rules, KubeRay's checks."""
    from raytune_ft.errors import UserError
    from raytune_ft.k8s.validate import check_paths

    report = check_paths(paths)
    if report.problems:
        raise UserError(report.problems)
    line = f"ok: {_count(report.documents, 'document')} in {_count(report.files, 'file')}"
    if report.patch_files:
        line += f" ({_count(report.patch_files, 'kustomize patch file')} parsed only)"
    typer.echo(line)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
