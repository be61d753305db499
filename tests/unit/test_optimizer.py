"""The optimizer a worker builds: torch's AdamW on the device, DeepSpeed's CPU Adam when the
optimizer is offloaded, and torch's AdamW when that op cannot be built."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raytune_ft.train.optimizer import TORCH_ADAMW, agreed_problem, build_optimizer


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
from raytune_ft.train.optimizer import build_optimizer, cpu_adam_problem
model = torch.nn.Linear(4, 2)
chosen = build_optimizer([{"params": list(model.parameters()), "weight_decay": 0.0}], 1e-3,
                         offload=True, fused=False, cpu_adam_problem=cpu_adam_problem())
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _agree(rank: int, world: int, port: int, problems: list, out: dict) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        out[rank] = agreed_problem(problems[rank], world)
    finally:
        dist.destroy_process_group()


def test_every_rank_falls_back_when_one_rank_cannot_build_cpu_adam() -> None:
    """Ranks must step the same optimizer: one rank's problem becomes every rank's."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_agree, args=(2, free_port(), [None, "no compiler"], out), nprocs=2, join=True)
        assert dict(out) == {0: "rank 1: no compiler", 1: "rank 1: no compiler"}
        out.clear()
        mp.spawn(_agree, args=(2, free_port(), [None, None], out), nprocs=2, join=True)
        assert dict(out) == {0: None, 1: None}
    assert agreed_problem("alone", 1) == "alone"
