"""Experiment trackers for a sweep, as Ray Tune logger callbacks (they run on the driver and
see every trial's results). Each library is imported only when the spec asks for it."""

from __future__ import annotations

import os
from typing import Any

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.storage import Location


def _missing(tracker: str, package: str) -> UserError:
    return UserError(
        f"sweep.trackers.{tracker}: needs the {package} package, which is not installed here; "
        f"pip install {package}"
    )


def tracker_callbacks(spec: ExperimentSpec, sweep_dir: Location) -> list[Any]:
    trackers = spec.sweep.trackers if spec.sweep else None
    callbacks: list[Any] = []
    if trackers is None:
        return callbacks
    if trackers.mlflow:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise _missing("mlflow", "mlflow-skinny") from None
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = trackers.mlflow_tracking_uri
        if uri is None:
            if not sweep_dir.is_local:
                raise UserError(
                    "sweep.trackers.mlflow_tracking_uri: the sweep's storage is remote, so there "
                    "is no local folder for the default SQLite store; expected a tracking URI"
                )
            # MLflow 3.17's plain file store refuses to start (maintenance mode); SQLite is its
            # local store now.
            uri = f"sqlite:///{sweep_dir.local_path / 'mlflow.db'}"
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=spec.name))
    if trackers.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise _missing("wandb", "wandb") from None
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Ray reads the mode from the driver's environment before it looks for an API key.
        os.environ["WANDB_MODE"] = trackers.wandb_mode
        extra = {"dir": str(sweep_dir.local_path)} if sweep_dir.is_local else {}
        callbacks.append(
            WandbLoggerCallback(
                project=trackers.wandb_project or spec.name, mode=trackers.wandb_mode, **extra
            )
        )
    return callbacks
