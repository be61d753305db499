"""The optimizer a worker builds: torch's AdamW on the device, DeepSpeed's CPU Adam when the
optimizer is offloaded, and torch's AdamW when that op cannot be built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from raytune_ft.train.optimizer import TORCH_ADAMW, build_optimizer


def groups() -> list[dict]:
    model = torch.nn.Linear(4, 2)
    return [
        {"params": [model.weight], "weight_decay": 0.1},
        {"params": [model.bias], "weight_decay": 0.0},
    ]


def test_on_the_device_it_is_torchs_adamw_with_each_groups_decay() -> None:
    chosen = build_optimizer(groups(), 1e-3, offload=False, fused=True)
    assert isinstance(chosen.optimizer, torch.optim.AdamW)
    assert (chosen.name, chosen.fallback_reason) == (TORCH_ADAMW, None)
    assert chosen.optimizer.defaults["fused"] is True
    assert [g["weight_decay"] for g in chosen.optimizer.param_groups] == [0.1, 0.0]
    assert build_optimizer(groups(), 1e-3, offload=False, fused=False).optimizer.defaults[
        "fused"
    ] in (None, False)


CHILD = """
import json, torch
from raytune_ft.train.optimizer import build_optimizer
model = torch.nn.Linear(4, 2)
chosen = build_optimizer([{"params": list(model.parameters()), "weight_decay": 0.0}], 1e-3,
                         offload=True, fused=False)
print(json.dumps({"name": chosen.name, "type": type(chosen.optimizer).__name__,
                  "reason": chosen.fallback_reason}))
"""


def test_offloaded_without_a_working_compiler_it_is_torchs_adamw_and_says_why(
    tmp_path: Path,
) -> None:
    # A compiler that fails and an empty extension cache: DeepSpeed really tries the build.
    env = os.environ | {"CXX": "/bin/false", "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert (found["name"], found["type"]) == (TORCH_ADAMW, "AdamW")
    assert found["reason"].startswith("DeepSpeed's CPU Adam could not be built (")
    assert "\n" not in found["reason"]
