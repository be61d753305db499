"""A stage chain: masked-LM pretraining, then classification from the stage-1 weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM

from raytune_ft.spec import validate_spec
from raytune_ft.train.loop import weights_digest
from raytune_ft.train.runner import run_chain

pytestmark = pytest.mark.integration


def test_second_stage_starts_from_the_first_stages_weights(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = validate_spec(
        {
            "name": "chain",
            "model": {"name_or_path": str(tiny_bert)},
            "task": {"type": "masked-lm"},
            "data": {"train": {"path": str(keyword_data)}, "max_length": 16},
            "train": {"max_steps": 10, "micro_batch_size": 16, "learning_rate": 3e-3},
            "scaling": {"num_workers": 2},
            "storage": {"path": str(tmp_path)},
            "stages": [
                {"name": "mlm", "task": {"type": "masked-lm"}, "train": {"eval_every": 5}},
                {
                    "name": "cls",
                    "task": {"type": "classification"},
                    "train": {"max_steps": 40, "eval_every": 20},
                },
            ],
        }
    )
    first, second = run_chain(spec)
    assert first.run_dir != second.run_dir
    assert first.run_dir.name.startswith("chain-mlm-train-")
    assert second.run_dir.name.startswith("chain-cls-train-")
    for outcome in (first, second):
        summary = json.loads((outcome.run_dir / "summary.json").read_text())
        assert summary["stage"] in ("mlm", "cls")
    assert first.summary["task"] == "masked-lm" and second.summary["task"] == "classification"
    assert second.summary["started_from"] == first.summary["best_model"]

    # Checked, not assumed: the weights stage 2 started from are stage 1's trained ones,
    # which differ from the original model's.
    with torch.no_grad():
        trained = weights_digest(AutoModelForMaskedLM.from_pretrained(first.summary["best_model"]))
        original = weights_digest(AutoModelForMaskedLM.from_pretrained(str(tiny_bert)))
    assert second.summary["runtime"]["init_weights_sha256"] == trained
    assert first.summary["runtime"]["init_weights_sha256"] == original != trained
    assert second.summary["test_metrics"]["test_accuracy"] > 0.6
