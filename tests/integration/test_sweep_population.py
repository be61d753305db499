"""A real PBT sweep: lagging trials continue from a leader's checkpoint under new values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
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
                "max_steps": 25,  # 5 evaluations: PBT rounds after the 2nd and 4th
                "micro_batch_size": 16,
                "eval_every": 5,
                "log_every": 1,
                "lr_scheduler": "constant",  # each record's lr is its trial's value itself
                "warmup_ratio": 0.0,
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
                    # Rounds once all three reached them: trial processes start seconds
                    # apart, and a trial this short can finish before the leader starts.
                    "synch": True,
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
    # PBT restarts trials from checkpoints: a leader to save one (its own, same value), and
    # a lagging trial from a leader's, with the leader's value perturbed (x0.8 or x1.2), the
    # config Tune records. After each restart the trial must train with its config's value,
    # not the one in the checkpoint it was given.
    final = {
        str(row["trial_id"]): row["config/train.learning_rate"]
        for _, row in pd.read_csv(run_dir / "results.csv").iterrows()
    }
    exploited = 0
    for name, records in events.items():
        segments: list[set[float]] = [set()]
        for record in records:
            if record.get("event") == "resumed":
                segments.append(set())
            elif "lr" in record:
                segments[-1].add(record["lr"])
        segments = [seg for seg in segments if seg]  # a restart at the last step trains no more
        assert all(len(seg) == 1 for seg in segments), (name, segments)
        first, last = min(segments[0]), min(segments[-1])
        assert first in (5e-3, 1e-5, 2e-5), (name, first)
        assert last == pytest.approx(final[name]), (name, segments, final[name])
        exploited += final[name] != pytest.approx(first)
    assert exploited >= 1, (final, events)
    assert (run_dir / "best-model" / "config.json").exists()
