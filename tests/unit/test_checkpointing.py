"""Selective activation checkpointing: which layers recompute, and that the gradients match."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError
from transformers import BertConfig, BertForSequenceClassification

from raytune_ft.modeling.speed import enable_checkpointing
from raytune_ft.spec.sections import PerformanceSpec
from raytune_ft.train.policies import checkpoint_every


def tiny_model(layers: int = 4) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


def layer_flags(model: torch.nn.Module) -> list[bool]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [bool(layer.gradient_checkpointing) for layer in base.bert.encoder.layer]


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model.train()
    inputs = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    model(input_ids=inputs, labels=torch.tensor([0, 1, 0])).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("every", "flags"), [(1, [True] * 4), (2, [True, False, True, False])])
def test_every_nth_layer_recomputes_and_the_gradients_do_not_change(
    every: int, flags: list[bool]
) -> None:
    plain = tiny_model()
    checkpointed = copy.deepcopy(plain)
    enable_checkpointing(checkpointed, every)
    assert layer_flags(checkpointed) == flags and layer_flags(plain) == [False] * 4
    expected, got = grads(plain), grads(checkpointed)
    assert expected.keys() == got.keys() and len(got) > 10
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, msg=name)


def test_lora_model_checkpoints_its_base_layers() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(), LoraConfig(r=4, target_modules=["query", "value"]))
    enable_checkpointing(model, 3)
    assert layer_flags(model) == [True, False, False, True]
    assert any("lora_" in name for name in grads(model))  # adapters still get gradients


def test_spec_takes_a_bool_or_a_layer_stride() -> None:
    assert checkpoint_every(PerformanceSpec().gradient_checkpointing) == 0
    assert (
        checkpoint_every(PerformanceSpec(gradient_checkpointing=True).gradient_checkpointing) == 1
    )
    assert checkpoint_every(PerformanceSpec(gradient_checkpointing=2).gradient_checkpointing) == 2
    assert checkpoint_every(PerformanceSpec(gradient_checkpointing=0).gradient_checkpointing) == 0
    for bad in (-1, 2.5, "sometimes"):
        with pytest.raises(ValidationError, match="gradient_checkpointing"):
            PerformanceSpec(gradient_checkpointing=bad)
