"""GPU smoke test: one Ray Train worker on CUDA, DeepSpeed ZeRO-2, bf16 where supported.

Skipped without CUDA; run on a GPU machine with `make gpu`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_one_gpu_worker_trains_in_bf16(tiny_bert: Path, tmp_path: Path) -> None:
    from helpers import SENTIMENT

    from raytune_ft.launch.local_ray import ray_session
    from raytune_ft.spec import validate_spec
    from raytune_ft.train.runner import run_training

    spec = validate_spec(
        {
            "name": "gpu-smoke",
            "model": {"name_or_path": "sentence-transformers/all-MiniLM-L6-v2"},
            "data": {
                "train": {"path": str(SENTIMENT / "*_labelled.txt"), "columns": ["text", "label"]},
                "max_length": 64,
            },
            "train": {"epochs": 1, "micro_batch_size": 32, "learning_rate": 5e-5},
            "deepspeed": {"zero_stage": 2},
            "scaling": {"num_workers": 1, "use_gpu": True},
            "storage": {"path": str(tmp_path)},
        }
    )
    with ray_session(spec.cluster, cpus_per_trial=1):
        summary = run_training(spec).summary
    assert summary["use_gpu"] is True
    assert summary["best_validation"] > 0.8
    # What the DeepSpeed engine really ran with, recorded by rank 0, not what the spec asked.
    runtime = summary["runtime"]
    assert runtime["device"].startswith("cuda")
    assert runtime["zero_stage"] == 2
    if torch.cuda.is_bf16_supported():
        assert runtime["precision"] == "bf16" and runtime["bf16_enabled"] is True
        assert runtime["param_dtype"] == "bfloat16"
    # GPU defaults of `performance: auto`: fused AdamW, pinned memory, DataLoader workers.
    performance = runtime["performance"]
    assert performance["fused_optimizer"] and performance["pin_memory"]
    assert performance["dataloader_workers"] == 2
    assert summary["timings"]["tokens_per_s"] > 0
