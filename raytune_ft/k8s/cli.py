"""`raytune-ft k8s ...`: KubeRay objects from a spec (render, validate, apply, status, delete)."""

from __future__ import annotations

import typer

k8s_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="KubeRay objects: render a spec, validate manifests, apply and watch them.",
)
