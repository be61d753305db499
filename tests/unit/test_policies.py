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


def test_deepspeed_config_without_clipping_or_mixed_precision() -> None:
    spec = validate_spec(minimal_spec(train={"max_grad_norm": 0}, deepspeed={"zero_stage": 0}))
    config = deepspeed_config(spec, "fp32")
    assert "gradient_clipping" not in config and "bf16" not in config and "fp16" not in config
    assert config["zero_optimization"] == {"stage": 0}
