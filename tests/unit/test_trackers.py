"""sweep.trackers: which Tune callbacks a sweep gets, and the errors when one cannot run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.storage import storage_root
from raytune_ft.sweep.trackers import tracker_callbacks

SPACE = {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}


def spec(trackers: dict, storage: str = "runs"):
    return validate_spec(
        minimal_spec(sweep={"space": SPACE, "trackers": trackers}, storage={"path": storage})
    )


def test_no_tracker_by_default_and_mlflow_defaults_to_sqlite_in_the_sweep(tmp_path: Path) -> None:
    assert tracker_callbacks(spec({}), storage_root(spec({}).storage)) == []
    pytest.importorskip("mlflow")
    chosen = spec({"mlflow": True}, str(tmp_path))
    [callback] = tracker_callbacks(chosen, storage_root(chosen.storage) / "sweep")
    assert type(callback).__name__ == "MLflowLoggerCallback"
    assert callback.tracking_uri == f"sqlite:///{tmp_path / 'sweep' / 'mlflow.db'}"
    assert callback.experiment_name == chosen.name


def test_remote_storage_needs_a_tracking_uri() -> None:
    pytest.importorskip("mlflow")
    chosen = spec({"mlflow": True}, "s3://bucket/runs")
    with pytest.raises(UserError, match="mlflow_tracking_uri: the sweep's storage is remote"):
        tracker_callbacks(chosen, storage_root(chosen.storage) / "sweep")


def test_wandb_without_its_package_is_named() -> None:
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    chosen = spec({"wandb": True})
    with pytest.raises(UserError) as info:
        tracker_callbacks(chosen, storage_root(chosen.storage) / "sweep")
    assert info.value.problems == [
        "sweep.trackers.wandb: needs the wandb package, which is not installed here; "
        "pip install wandb"
    ]
