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

TORCH_ADAMW = "torch_adamw"
DEEPSPEED_CPU_ADAM = "deepspeed_cpu_adam"


@dataclass(frozen=True)
class ChosenOptimizer:
    optimizer: torch.optim.Optimizer
    name: str  # TORCH_ADAMW or DEEPSPEED_CPU_ADAM, as runtime.json records it
    fallback_reason: str | None = None  # why the host step is not DeepSpeed's CPU Adam


def build_optimizer(
    groups: list[dict[str, Any]], lr: float, *, offload: bool, fused: bool
) -> ChosenOptimizer:
    """AdamW with decoupled weight decay over `groups` (each carries its own weight_decay)."""
    if not offload:
        return ChosenOptimizer(torch.optim.AdamW(groups, lr=lr, fused=fused or None), TORCH_ADAMW)
    reason = cpu_adam_unavailable()
    if reason is None:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return ChosenOptimizer(DeepSpeedCPUAdam(groups, lr=lr, adamw_mode=True), DEEPSPEED_CPU_ADAM)
    return ChosenOptimizer(torch.optim.AdamW(groups, lr=lr), TORCH_ADAMW, reason)


def cpu_adam_unavailable() -> str | None:
    """None when DeepSpeed's CPU Adam op loads (prebuilt, or JIT-built now: about a minute of
    g++ once per machine, then cached), else why not in one line."""
    from deepspeed.ops.op_builder import CPUAdamBuilder

    builder = CPUAdamBuilder()
    if not builder.is_compatible():
        return "DeepSpeed's CPU Adam is not compatible with this machine"
    try:
        builder.load()
    # The JIT build fails in many ways (no compiler, no ninja, a header missing), each its own
    # exception type; every one of them means the same here: use torch's AdamW.
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"DeepSpeed's CPU Adam could not be built ({type(error).__name__}: {first})"
    return None
