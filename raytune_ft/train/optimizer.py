"""The AdamW a worker trains with.

On the device it is torch's (fused on GPU). When ZeRO offloads the optimizer to the host
(`deepspeed.offload_optimizer: cpu`), the step runs on the CPU over fp32 master weights, where
DeepSpeed's CPU Adam (SIMD C++, built on first use) is the fast one; DeepSpeed refuses any other
optimizer there unless told otherwise (`zero_force_ds_cpu_optimizer`, which the config sets so
that torch's AdamW remains the fallback when that op cannot be built, e.g. no C++ compiler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

TORCH_ADAMW = "torch_adamw"
DEEPSPEED_CPU_ADAM = "deepspeed_cpu_adam"


@dataclass(frozen=True)
class ChosenOptimizer:
    optimizer: torch.optim.Optimizer
    name: str  # TORCH_ADAMW or DEEPSPEED_CPU_ADAM, as runtime.json records it
    fallback_reason: str | None = None  # why the host step is not DeepSpeed's CPU Adam


def build_optimizer(
    groups: list[dict[str, Any]],
    lr: float,
    *,
    offload: bool,
    fused: bool,
    cpu_adam_problem: str | None = None,
) -> ChosenOptimizer:
    """AdamW with decoupled weight decay over `groups` (each carries its own weight_decay);
    offloaded, DeepSpeed's CPU Adam unless `cpu_adam_problem` says why it cannot be."""
    if not offload:
        return ChosenOptimizer(torch.optim.AdamW(groups, lr=lr, fused=fused or None), TORCH_ADAMW)
    if cpu_adam_problem is None:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return ChosenOptimizer(DeepSpeedCPUAdam(groups, lr=lr, adamw_mode=True), DEEPSPEED_CPU_ADAM)
    return ChosenOptimizer(torch.optim.AdamW(groups, lr=lr), TORCH_ADAMW, cpu_adam_problem)


def cpu_adam_problem() -> str | None:
    """None when DeepSpeed's CPU Adam op loads on this machine (prebuilt, or JIT-built now:
    about a minute of g++ once per machine, then cached), else why not, in one line."""
    from deepspeed.ops.op_builder import CPUAdamBuilder

    try:
        CPUAdamBuilder().load()
    # The JIT build fails in many ways (no compiler, no ninja, a header missing), each its own
    # exception type; every one of them means the same here: use torch's AdamW.
    except Exception as error:
        message = str(error).strip()
        first = f": {message.splitlines()[0]}" if message else ""
        return f"DeepSpeed's CPU Adam could not be built ({type(error).__name__}{first})"
    return None


def agreed_problem(problem: str | None, world: int) -> str | None:
    """The first rank's problem, if any rank has one: all ranks must step the same optimizer
    (a node without a compiler would otherwise train with other math than the rest)."""
    if world == 1:
        return problem
    problems: list[Any] = [None] * world
    dist.all_gather_object(problems, problem)
    return next((f"rank {r}: {p}" for r, p in enumerate(problems) if p is not None), None)


def complete_groups(optimizer: torch.optim.Optimizer) -> None:
    """Fill each parameter group's missing keys from the optimizer's defaults: a restored
    checkpoint written by the other AdamW (offloaded, DeepSpeed's CPU Adam where it builds and
    torch's where not) lacks some of this one's keys (CPU Adam's `bias_correction`)."""
    for group in optimizer.param_groups:
        for key, value in optimizer.defaults.items():
            group.setdefault(key, value)
