"""A real PBT sweep: lagging trials continue from a leader's checkpoint under new values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raytune_ft.spec import validate_spec
from raytune_ft.sweep.runner import run_sweep

pytestmark = pytest.mark.integration


def test_pbt_trials_exploit_a_leader_checkpoint_and_keep_learning(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = validate_spec(
        {
            "name": "kw-pbt",
            "model": {"name_or_path": str(tiny_bert)},
            "data": {"train": {"path": str(keyword_data)}, "max_length": 16},
            "train": {
                "epochs": 1,
                "max_steps": 30,
                "micro_batch_size": 16,
                "eval_every": 5,
                "log_every": 1,
            },
            "deepspeed": {"zero_stage": 2},
            "scaling": {"num_workers": 1},
            "sweep": {
                "num_samples": 3,
                "max_concurrent_trials": 3,
                "search": {"algorithm": "random", "seed": 1},
                # One trial learns fastest (5e-3); PBT hands the last one its checkpoint.
                "points_to_evaluate": [
                    {"train.learning_rate": 5e-3},
                    {"train.learning_rate": 1e-5},
                    {"train.learning_rate": 2e-5},
                ],
                "scheduler": {
                    "name": "pbt",
                    "perturbation_interval": 2,
                    "quantile_fraction": 0.34,
                    "resample_probability": 0.0,
                },
                "space": {"train.learning_rate": {"loguniform": [1e-5, 5e-3]}},
            },
            "storage": {"path": str(tmp_path)},
        }
    )
    outcome = run_sweep(spec)
    summary, run_dir = outcome.summary, outcome.run_dir.local_path
    assert summary["trials"]["errored"] == 0 and summary["trials"]["total"] == 3
    events = {
        trial.name: [json.loads(line) for line in (trial / "steps.jsonl").read_text().splitlines()]
        for trial in (run_dir / "trials").iterdir()
    }
    # A lagging trial restarted from the leader's checkpoint (its log says where) and went on
    # with the leader's learning rate, perturbed (x0.8 or x1.2): not its own 1e-5 or 2e-5.
    exploited = 0
    for name, records in events.items():
        marks = [i for i, r in enumerate(records) if r.get("event") == "resumed"]
        if not marks:
            continue
        exploited += 1
        before = [r["lr"] for r in records[: marks[0]] if "lr" in r]
        after = [r["lr"] for r in records[marks[0] :] if "lr" in r]
        assert max(before) <= 2e-5 < 1e-3 < max(after), (name, before, after)
    assert exploited >= 1, events
    assert summary["best_validation"] >= 0.5
    assert (run_dir / "best-model" / "config.json").exists()
