"""`raytune-ft submit` and `raytune-ft jobs ...`: the Ray Jobs API from a laptop."""

from __future__ import annotations

import typer

jobs_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Ray Jobs on a cluster: list, status, logs, stop.",
)
