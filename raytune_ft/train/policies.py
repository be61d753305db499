"""Pure decisions about how a run executes: precision, DeepSpeed config. No Ray, no torch state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sections import PerformanceSpec

Precision = Literal["fp32", "bf16", "fp16"]


def resolve_precision(requested: str, on_gpu: bool, gpu_has_bf16: bool) -> Precision:
    """auto -> bf16 on GPUs that have it, fp32 elsewhere (fp16 loss scaling is opt-in)."""
    if requested == "auto":
        return "bf16" if on_gpu and gpu_has_bf16 else "fp32"
    if requested == "fp16" and not on_gpu:
        raise UserError("train.precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    return requested  # type: ignore[return-value]


def choose_use_gpu(spec: ExperimentSpec, has_gpu: bool, lacking: str) -> bool:
    """Whether workers get GPUs, given whether the machine or cluster has any; refuses
    `use_gpu: true` without them (`lacking` says what is missing where) and settings the
    chosen device cannot run."""
    wanted = spec.scaling.use_gpu
    if wanted is True and not has_gpu:
        raise UserError(f"scaling.use_gpu: true, but {lacking}")
    use_gpu = has_gpu if wanted == "auto" else bool(wanted)
    check_device_settings(spec, use_gpu)
    return use_gpu


def check_device_settings(spec: ExperimentSpec, use_gpu: bool) -> None:
    """Settings that only the chosen device decides, checked on the driver before launch."""
    if not use_gpu:
        resolve_precision(spec.train.precision, on_gpu=False, gpu_has_bf16=False)
        perf = spec.performance
        if perf.liger is True:
            raise UserError("performance.liger: true needs a GPU (Triton kernels); use auto")
        if perf.attention == "flash_attention_2":
            raise UserError(
                "performance.attention: flash_attention_2 needs a GPU; use auto or sdpa"
            )


@dataclass(frozen=True)
class Performance:
    """The speed features a worker really uses (recorded in runtime.json)."""

    attention: str | None  # None: the model's own default (sdpa where it supports it)
    liger: bool
    fused_optimizer: bool
    gradient_checkpointing: int  # every N-th transformer layer recomputes; 0: none
    compile: bool
    dataloader_workers: int
    pin_memory: bool


def checkpoint_every(setting: bool | int) -> int:
    """`performance.gradient_checkpointing` as a layer stride: 0 off, 1 every layer, N every
    N-th (bool is an int in Python, so test it first)."""
    if isinstance(setting, bool):
        return int(setting)
    return setting


def resolve_performance(
    perf: PerformanceSpec,
    on_gpu: bool,
    installed: frozenset[str],
    model_type: str,
    liger_model_types: frozenset[str],
) -> Performance:
    """`auto` settled for this device and installation; an explicit ask that cannot be met is
    an error naming the field, not a silent fallback (a benchmark would measure the wrong
    thing). `installed` holds the importable optional packages ("flash_attn", "liger_kernel");
    `liger_model_types` the architectures liger-kernel can patch."""
    if perf.attention == "flash_attention_2" and "flash_attn" not in installed:
        raise UserError(
            "performance.attention: flash_attention_2, but flash-attn is not installed on the "
            "workers; pip install flash-attn, or use sdpa"
        )
    if perf.attention == "auto":
        attention = "flash_attention_2" if on_gpu and "flash_attn" in installed else None
    else:
        attention = perf.attention
    if perf.liger is True:
        if "liger_kernel" not in installed:
            raise UserError(
                "performance.liger: true, but liger-kernel is not installed on the workers; "
                "pip install liger-kernel"
            )
        if model_type not in liger_model_types:
            raise UserError(
                f"performance.liger: liger-kernel has no kernels for model type {model_type!r}; "
                f"expected one of {', '.join(sorted(liger_model_types))}"
            )
    liger = (perf.liger is True) or (
        perf.liger == "auto"
        and on_gpu
        and "liger_kernel" in installed
        and model_type in liger_model_types
    )
    workers = perf.dataloader_workers
    return Performance(
        attention=attention,
        liger=liger,
        fused_optimizer=on_gpu if perf.fused_optimizer == "auto" else bool(perf.fused_optimizer),
        gradient_checkpointing=checkpoint_every(perf.gradient_checkpointing),
        compile=perf.compile,
        dataloader_workers=(2 if on_gpu else 0) if workers == "auto" else int(workers),
        pin_memory=on_gpu,
    )


def deepspeed_config(spec: ExperimentSpec, precision: Precision) -> dict[str, Any]:
    """The DeepSpeed JSON for this spec. Batch fields derive from the spec, never 'auto'."""
    ds = spec.deepspeed
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_params == "cpu":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if ds.zero_stage == 3:
        # The best-model export gathers 16-bit weights once, onto rank 0 only.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config: dict[str, Any] = {
        "train_batch_size": spec.global_batch_size,
        "train_micro_batch_size_per_gpu": spec.train.micro_batch_size,
        "gradient_accumulation_steps": spec.train.gradient_accumulation_steps,
        "zero_optimization": zero,
        # We pass the optimizer (train/optimizer.py): torch's AdamW on the device, DeepSpeed's
        # CPU Adam when offloaded where it builds, else torch's AdamW, which DeepSpeed refuses
        # for an offloaded optimizer unless zero_force_ds_cpu_optimizer is off.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        # DeepSpeed's throughput timer synchronises the device at every forward and step.
        "timers": {"throughput": {"enabled": False}},
        "wall_clock_breakdown": False,
    }
    if spec.train.max_grad_norm > 0:
        config["gradient_clipping"] = spec.train.max_grad_norm
    if precision == "bf16":
        config["bf16"] = {"enabled": True}
    elif precision == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    return config
