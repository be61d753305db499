"""What the optional speed packages on this machine offer (checked on each worker: the
driver's machine may lack what the cluster's image has)."""

from __future__ import annotations

import importlib.util
from typing import Any

OPTIONAL = ("flash_attn", "liger_kernel")


def installed_extras() -> frozenset[str]:
    return frozenset(name for name in OPTIONAL if importlib.util.find_spec(name) is not None)


def liger_model_types() -> frozenset[str]:
    """Model types liger-kernel can patch on an instance; empty when it is not installed."""
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError:  # not installed, or no Triton (CPU-only machines)
        return frozenset()
    return frozenset(MODEL_TYPE_TO_APPLY_LIGER_FN)


def enable_checkpointing(model: Any, every: int) -> None:
    """Activation checkpointing of every `every`-th transformer layer (1: all of them).

    Non-reentrant checkpointing, so frozen inputs (LoRA over a frozen embedding) still get
    gradients without `enable_input_require_grads`. transformers renamed the method to
    `activation_checkpointing_enable` (the old name warns); both take `every_n_layers`."""
    kwargs = {"use_reentrant": False}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    enable = getattr(base, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs, every_n_layers=every)
    else:
        base.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=kwargs, every_n_layers=every
        )
