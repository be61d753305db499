"""The activation formula against what autograd really keeps for backward.

Each case builds a small model twice (1 and 3 layers), runs one training forward with a
saved-tensor hook that records every tensor autograd keeps (parameters excluded, each storage
once), and compares the growth per layer and token with `layer_activation_bytes_per_token`.
What this cannot see: transient tensors of the backward pass, allocator rounding, and the GPU
kernels' own choices (bool dropout masks, SDPA with dropout): the H200 figures cover those.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from raytune_ft.modeling.estimate import Setup, layer_activation_bytes_per_token, shape_of_model

BATCH, SEQ = 2, 64
LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BERT_LINEARS = ["query", "key", "value", "dense"]
DECODERS = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "gemma": (GemmaConfig, GemmaForCausalLM),  # (1 + weight) RMS norms in fp32
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),  # per-head q_norm and k_norm
}


def kept_bytes(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**batch)
    return sum(kept.values())


def build(case: dict[str, Any], layers: int) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (BATCH, SEQ))
    width = {"vocab_size": 100, "hidden_size": 128, "intermediate_size": 256}
    if case["model"] in DECODERS:  # grouped-query attention, RMS norms, a gated MLP
        config_class, model_class = DECODERS[case["model"]]
        config = config_class(
            **width,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=64,  # Qwen3's ratio: heads * head_dim = 2h
            tie_word_embeddings=False,
            attn_implementation="sdpa",
        )
        model: torch.nn.Module = model_class(config)
        batch = {"input_ids": ids, "labels": ids}
    else:  # LayerNorm, GELU, dropout after attention and MLP and inside attention
        config = BertConfig(
            **width,
            num_hidden_layers=layers,
            num_attention_heads=4,
            hidden_dropout_prob=case.get("dropout", 0.0),
            attention_probs_dropout_prob=case.get("dropout", 0.0),
            attn_implementation=case.get("attention", "sdpa"),
        )
        model = BertForSequenceClassification(config)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, 0] % 2}
    if "lora_dropout" in case:
        from peft import LoraConfig, get_peft_model

        targets = LLAMA_LINEARS if case["model"] in DECODERS else BERT_LINEARS
        model = get_peft_model(
            model,
            LoraConfig(
                r=8, lora_alpha=16, lora_dropout=case["lora_dropout"], target_modules=targets
            ),
        )
    return model.to(case["dtype"]).train(), batch


CASES = {
    "llama-bf16": {"model": "llama", "dtype": torch.bfloat16},
    "llama-fp32": {"model": "llama", "dtype": torch.float32},
    "llama-bf16-lora": {"model": "llama", "dtype": torch.bfloat16, "lora_dropout": 0.0},
    "llama-bf16-lora-dropout": {"model": "llama", "dtype": torch.bfloat16, "lora_dropout": 0.1},
    "llama-fp32-lora-dropout": {"model": "llama", "dtype": torch.float32, "lora_dropout": 0.1},
    "gemma-bf16": {"model": "gemma", "dtype": torch.bfloat16},
    "qwen3-bf16": {"model": "qwen3", "dtype": torch.bfloat16},
    "qwen3-bf16-lora-dropout": {"model": "qwen3", "dtype": torch.bfloat16, "lora_dropout": 0.1},
    "bert-fp32": {"model": "bert", "dtype": torch.float32},
    "bert-bf16-dropout": {"model": "bert", "dtype": torch.bfloat16, "dropout": 0.1},
    "bert-fp32-dropout": {"model": "bert", "dtype": torch.float32, "dropout": 0.1},
    "bert-fp32-dropout-eager": {
        "model": "bert",
        "dtype": torch.float32,
        "dropout": 0.1,
        "attention": "eager",
    },
    "bert-fp32-lora": {"model": "bert", "dtype": torch.float32, "lora_dropout": 0.0},
    "bert-fp32-lora-dropout": {"model": "bert", "dtype": torch.float32, "lora_dropout": 0.1},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_layer_formula_matches_what_autograd_keeps(name: str) -> None:
    case = CASES[name]
    one, three = (kept_bytes(*build(case, layers)) for layers in (1, 3))
    measured = (three - one) / 2 / (BATCH * SEQ)
    model, _ = build(case, 3)
    setup = Setup(
        precision="bf16" if case["dtype"] == torch.bfloat16 else "fp32",
        zero_stage=2,
        workers=1,
        offload_optimizer=False,
        offload_params=False,
        micro_batch_size=BATCH,
        seq_len=SEQ,
        accumulation=1,
        checkpoint_every=0,
        eager_attention=case.get("attention") == "eager",
        on_gpu=False,
    )
    formula = layer_activation_bytes_per_token(shape_of_model(model), setup)
    # 16 bytes of slack: LayerNorm's fp32 mean and 1/std per token, which the formula leaves out.
    assert measured - 16 <= formula <= measured, (formula, measured)
