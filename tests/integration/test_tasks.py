"""Every task trains under 2 Ray Train workers with ZeRO-2: its loss falls and its metrics are
computed, on the validation split and on the test split. The tasks whose example spec runs a
tiny random-init model (causal LM, SFT, seq2seq) are tested so in test_examples.py, on their
example; the ones whose example finetunes the real MiniLM (a two-worker MiniLM step took 3.5
to 6 s on this machine's two cores) are tested here on a tiny random-init BERT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import ROOT, TASK_METRICS

from raytune_ft.spec import validate_spec
from raytune_ft.train.runner import run_training

pytestmark = pytest.mark.integration
DATA = ROOT / "experiments" / "data"


def read_steps(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


CASES = {
    "multi-label": (
        {"type": "multi-label", "text_column": "text", "label_column": "topics"},
        {"path": str(DATA / "topics" / "train.jsonl")},
    ),
    "regression": (
        {"type": "regression", "text_column": "review", "label_column": "score"},
        {"path": str(DATA / "ratings" / "train.csv")},
    ),
    "masked-lm": (
        {"type": "masked-lm", "mlm_probability": 0.3},
        {"path": str(DATA / "corpus" / "reviews.txt"), "format": "text"},
    ),
}


@pytest.mark.parametrize("task_type", list(CASES))
def test_each_task_trains_on_two_zero2_workers(
    ray_local: None,
    tiny_bert: Path,
    tmp_path: Path,
    task_type: str,
) -> None:
    task, train = CASES[task_type]
    # Sigmoid and regression heads on a random 2-layer BERT need more steps to move.
    steps = 60 if task_type in ("multi-label", "regression") else 30
    spec = validate_spec(
        {
            "name": task_type,
            "model": {"name_or_path": str(tiny_bert), "init": "random"},
            "task": task,
            "data": {
                "train": train,
                "max_length": 64,
                "max_train_samples": 800,
                "split": {"validation": 0.1, "test": 0.05},
            },
            "train": {
                "max_steps": steps,
                "micro_batch_size": 16,
                "learning_rate": 3e-3,
                "warmup_ratio": 0.0,
                "eval_every": steps // 2,
                "log_every": 1,
            },
            "deepspeed": {"zero_stage": 2},
            "scaling": {"num_workers": 2},
            "storage": {"path": str(tmp_path)},
        }
    )
    outcome = run_training(spec)
    losses = [s["loss"] for s in read_steps(outcome.run_dir) if "loss" in s]
    assert len(losses) == steps
    assert sum(losses[-5:]) / 5 < 0.95 * sum(losses[:5]) / 5, losses
    summary = outcome.summary
    assert summary["task"] == task_type and summary["metric"] == spec.metric
    validation, test = summary["validation_metrics"], summary["test_metrics"]
    for name in ["eval_loss", *TASK_METRICS[task_type]]:
        assert math.isfinite(validation[name]), (name, validation)
        assert math.isfinite(test["test_" + name.removeprefix("eval_")]), (name, test)
    evaluations = [s for s in read_steps(outcome.run_dir) if s.get("event") == "eval"]
    assert [e["step"] for e in evaluations] == [steps // 2, steps]
    runtime = summary["runtime"]
    assert (runtime["zero_stage"], runtime["world_size"]) == (2, 2)
