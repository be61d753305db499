"""What a training worker arranges before DeepSpeed starts its process group."""

from __future__ import annotations


def test_deepspeed_compiles_no_inference_kernel_on_cpu() -> None:
    """Unmarked, DeepSpeed's CPU accelerator JIT-compiles (or loads) its shared-memory
    all-reduce kernel here and returns it; training never uses it."""
    from deepspeed.accelerator import get_accelerator
    from deepspeed.comm.torch import build_shm_op

    from raytune_ft.train.loop import skip_cpu_inference_kernel_build

    assert get_accelerator().device_name() == "cpu"
    skip_cpu_inference_kernel_build()
    assert build_shm_op() is None
