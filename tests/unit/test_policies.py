from __future__ import annotations

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.train.policies import deepspeed_config, resolve_precision


@pytest.mark.parametrize(
    ("requested", "on_gpu", "bf16", "expected"),
    [
        ("auto", False, False, "fp32"),
        ("auto", True, True, "bf16"),
        ("auto", True, False, "fp32"),
        ("bf16", False, False, "bf16"),
        ("fp16", True, False, "fp16"),
        ("fp32", True, True, "fp32"),
    ],
)
def test_precision_policy(requested: str, on_gpu: bool, bf16: bool, expected: str) -> None:
    assert resolve_precision(requested, on_gpu, bf16) == expected


def test_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(UserError, match=r"train\.precision: fp16 needs a GPU"):
        resolve_precision("fp16", on_gpu=False, gpu_has_bf16=False)


def test_deepspeed_config_derives_batch_fields_from_spec() -> None:
    spec = validate_spec(
        minimal_spec(
            train={"micro_batch_size": 4, "gradient_accumulation_steps": 3, "max_grad_norm": 0.5},
            deepspeed={"zero_stage": 3, "offload_optimizer": "cpu", "offload_params": "cpu"},
            scaling={"num_workers": 2},
        )
    )
    config = deepspeed_config(spec, "bf16")
    assert config["train_batch_size"] == 24 == spec.global_batch_size
    assert config["train_micro_batch_size_per_gpu"] == 4
    assert config["gradient_accumulation_steps"] == 3
    assert config["gradient_clipping"] == 0.5 and config["bf16"] == {"enabled": True}
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    # Else DeepSpeed refuses torch's AdamW, the fallback when its CPU Adam cannot be built.
    assert config["zero_force_ds_cpu_optimizer"] is False


def test_deepspeed_config_without_clipping_or_mixed_precision() -> None:
    spec = validate_spec(minimal_spec(train={"max_grad_norm": 0}, deepspeed={"zero_stage": 0}))
    config = deepspeed_config(spec, "fp32")
    assert "gradient_clipping" not in config and "bf16" not in config and "fp16" not in config
    assert config["zero_optimization"] == {"stage": 0}


# ------------------------------------------------------------------ performance


from raytune_ft.spec.sections import PerformanceSpec  # noqa: E402
from raytune_ft.train.policies import check_device_settings, resolve_performance  # noqa: E402

LIGER_TYPES = frozenset({"llama", "mistral", "qwen2"})


def test_auto_performance_is_plain_on_cpu_even_with_the_packages() -> None:
    perf = resolve_performance(
        PerformanceSpec(), False, frozenset({"flash_attn", "liger_kernel"}), "llama", LIGER_TYPES
    )
    assert perf.attention is None  # the model's default (sdpa)
    assert not perf.liger and not perf.fused_optimizer and not perf.pin_memory
    assert perf.dataloader_workers == 0


def test_auto_performance_on_gpu_uses_what_is_installed_and_supported() -> None:
    both = frozenset({"flash_attn", "liger_kernel"})
    perf = resolve_performance(PerformanceSpec(), True, both, "llama", LIGER_TYPES)
    assert perf.attention == "flash_attention_2" and perf.liger and perf.fused_optimizer
    assert perf.pin_memory and perf.dataloader_workers == 2
    bert = resolve_performance(PerformanceSpec(), True, both, "bert", LIGER_TYPES)
    assert not bert.liger  # no kernels for this architecture: auto leaves it off
    bare = resolve_performance(PerformanceSpec(), True, frozenset(), "llama", LIGER_TYPES)
    assert bare.attention is None and not bare.liger


@pytest.mark.parametrize(
    ("fields", "installed", "model_type", "message"),
    [
        ({"liger": True}, frozenset(), "llama", r"performance\.liger: true, but liger-kernel"),
        (
            {"liger": True},
            frozenset({"liger_kernel"}),
            "bert",
            r"performance\.liger: liger-kernel has no kernels for model type 'bert'",
        ),
        (
            {"attention": "flash_attention_2"},
            frozenset(),
            "llama",
            r"performance\.attention: flash_attention_2, but flash-attn is not installed",
        ),
    ],
)
def test_an_explicit_speed_feature_that_cannot_run_is_an_error(
    fields: dict, installed: frozenset[str], model_type: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        resolve_performance(PerformanceSpec(**fields), True, installed, model_type, LIGER_TYPES)


def test_gpu_only_features_are_refused_on_cpu_before_launch() -> None:
    spec = validate_spec(minimal_spec(performance={"liger": True}))
    with pytest.raises(UserError, match=r"performance\.liger: true needs a GPU"):
        check_device_settings(spec, use_gpu=False)
    check_device_settings(spec, use_gpu=True)  # the workers check it is installed


def test_explicit_settings_are_kept() -> None:
    spec = PerformanceSpec(
        attention="eager", fused_optimizer=True, gradient_checkpointing=True, dataloader_workers=3
    )
    perf = resolve_performance(spec, False, frozenset(), "bert", LIGER_TYPES)
    assert perf.attention == "eager" and perf.fused_optimizer and perf.gradient_checkpointing
    assert perf.dataloader_workers == 3
