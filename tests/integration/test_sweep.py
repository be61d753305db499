"""Ray Tune sweep: Optuna TPE + ASHA, each trial a driver with its own TorchTrainer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from raytune_ft.spec import load_spec, validate_spec
from raytune_ft.sweep.runner import run_sweep

pytestmark = pytest.mark.integration


def test_three_trial_asha_optuna_sweep_writes_results(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = validate_spec(
        {
            "name": "kw-sweep",
            "model": {"name_or_path": str(tiny_bert)},
            "data": {"train": {"path": str(keyword_data)}, "max_length": 16},
            "train": {"epochs": 1, "micro_batch_size": 16, "eval_every": 5},
            "deepspeed": {"zero_stage": 2},
            "scaling": {"num_workers": 1},
            "sweep": {
                "num_samples": 3,
                "search": {"algorithm": "optuna", "seed": 0},
                "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
                "space": {
                    "train.learning_rate": {"loguniform": [1e-3, 5e-3]},
                    "train.micro_batch_size": {"choice": [8, 16]},
                },
            },
            "storage": {"path": str(tmp_path)},
        }
    )
    outcome = run_sweep(spec)
    run_dir, summary = outcome.run_dir, outcome.summary

    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) == 3
    assert summary["trials"]["total"] == 3 and summary["trials"]["errored"] == 0
    assert summary["trials"]["finished"] + summary["trials"]["stopped_early"] == 3
    assert summary["best_validation"] == pytest.approx(results["eval_accuracy"].max())
    assert summary["best_validation"] > 0.9
    assert summary["test_metrics"]["test_accuracy"] > 0.9

    best = load_spec(run_dir / "best-spec.yaml")  # `raytune-ft train` accepts it unchanged
    assert best.sweep is None
    assert best.train.learning_rate == pytest.approx(summary["best_config"]["train.learning_rate"])
    assert best.train.micro_batch_size == summary["best_config"]["train.micro_batch_size"]
