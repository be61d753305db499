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


@k8s_app.command("render")
@user_errors
def render(
    spec: Annotated[Path, typer.Argument(help="Experiment spec (YAML).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the manifests.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field (repeatable); the job runs with it too."),
    ] = None,
    cluster: Annotated[
        Path | None,
        typer.Option("--cluster", help="A YAML file whose cluster: section replaces the spec's."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files in the folder that differ.")
    ] = False,
) -> None:
    """Write the spec's KubeRay objects (RayJob, RayCluster, ConfigMap, storage) to a folder."""
    from raytune_ft.k8s.manifests import render_to_folder

    for line in render_to_folder(spec, set_ or [], cluster, output, force):
        typer.echo(line)


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


# ---- apply, status, logs, delete: the cluster, through the kubernetes client ------------------

_Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace; default: the objects' own, else the kubeconfig context's, else default.",
    ),
]
_Context = Annotated[
    str | None, typer.Option("--context", help="kubeconfig context; default: current-context.")
]
_Kubeconfig = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="kubeconfig file; default: KUBECONFIG, else ~/.kube/config, else (in a pod) its "
        "service account.",
    ),
]
# Seconds between two reads of a status; hidden: only the tests need another value.
_Poll = Annotated[float, typer.Option("--poll-interval", hidden=True, min=0.0)]


@k8s_app.command("apply")
@user_errors
def apply_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Manifest files or folders (a folder's kustomization.yaml decides)."),
    ],
    namespace: _Namespace = None,
    context: _Context = None,
    kubeconfig: _Kubeconfig = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Stop after the API server's dry run.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the RayJob until it ends; exit 1 if it failed.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.0, help="With --wait: give up after S seconds (exit 124)."),
    ] = None,
    validate_first: Annotated[
        bool,
        typer.Option(
            "--validate/--no-validate",
            help="Check offline against KubeRay v1.7.0 first; --no-validate leaves it to the "
            "API server (a cluster running a newer KubeRay).",
        ),
    ] = True,
    poll_interval: _Poll = 2.0,
) -> None:
    """Create the objects in the cluster, after a server-side dry run of every one."""
    from raytune_ft.k8s.apply import ApplyOptions, apply

    options = ApplyOptions(
        namespace, kubeconfig, context, dry_run, wait, timeout, validate_first, poll_interval
    )
    code = apply(paths, options)
    if code:
        raise typer.Exit(code)


@k8s_app.command("status")
@user_errors
def status_command(
    name: Annotated[str, typer.Argument(help="A RayJob's name (or a RayCluster's).")],
    namespace: _Namespace = None,
    context: _Context = None,
    kubeconfig: _Kubeconfig = None,
) -> None:
    """Show a RayJob's status (deployment, job, message, cluster, dashboard), or a RayCluster's."""
    from raytune_ft.k8s.apply import show_status

    show_status(name, namespace, kubeconfig, context)


@k8s_app.command("logs")
@user_errors
def logs_command(
    name: Annotated[str, typer.Argument(help="The RayJob's name.")],
    namespace: _Namespace = None,
    context: _Context = None,
    kubeconfig: _Kubeconfig = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Wait for the pod and stream until it ends.")
    ] = False,
    poll_interval: _Poll = 2.0,
) -> None:
    """Print the RayJob's submitter log: the output of its entrypoint."""
    from raytune_ft.k8s.apply import show_logs

    code = show_logs(name, namespace, kubeconfig, context, follow, poll_interval)
    if code:
        raise typer.Exit(code)


@k8s_app.command("delete")
@user_errors
def delete_command(
    targets: Annotated[
        list[str],
        typer.Argument(help="RayJob or RayCluster names, or manifest files and folders."),
    ],
    namespace: _Namespace = None,
    context: _Context = None,
    kubeconfig: _Kubeconfig = None,
) -> None:
    """Delete RayJobs/RayClusters by name, or a manifest path's objects (last applied, first)."""
    from raytune_ft.k8s.apply import delete

    delete(targets, namespace, kubeconfig, context)
