"""What the optional speed packages on this machine offer (checked on each worker: the
driver's machine may lack what the cluster's image has)."""

from __future__ import annotations

import importlib.util

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
