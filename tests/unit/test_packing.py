"""Packing is exact: each example's logits packed equal its logits alone; no label leaks."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from raytune_ft.tasks.packing import IGNORE_INDEX, collate_packed, pack_row, plan_rows


def tiny_llama(attention: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation=attention,
    )
    return LlamaForCausalLM(config).eval()


def examples() -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(1)
    out = []
    for length, prompt in ((7, 3), (5, 2), (9, 4)):
        ids = torch.randint(3, 97, (length,), generator=generator).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_logits_equal_unpacked_logits(attention: str) -> None:
    model = tiny_llama(attention)
    parts = examples()
    batch = collate_packed([pack_row(parts, 24, pad_token_id=0)], torch.float32)
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        start = 0
        for part in parts:
            alone = model(input_ids=torch.tensor([part["input_ids"]])).logits[0]
            n = len(part["input_ids"])
            torch.testing.assert_close(packed[start : start + n], alone, atol=1e-5, rtol=1e-4)
            start += n


def test_without_the_mask_attention_crosses_the_boundary() -> None:
    """The reason for the 4D mask: position ids alone are not enough (not a tautology check)."""
    model = tiny_llama("sdpa")
    parts = examples()
    row = pack_row(parts, 24, pad_token_id=0)
    with torch.no_grad():
        packed = model(
            input_ids=torch.tensor([row["input_ids"]]),
            position_ids=torch.tensor([row["position_ids"]]),
        ).logits[0]
        second = model(input_ids=torch.tensor([parts[1]["input_ids"]])).logits[0]
    n0, n1 = len(parts[0]["input_ids"]), len(parts[1]["input_ids"])
    assert (packed[n0 : n0 + n1] - second).abs().max() > 1e-2


def test_labels_ignore_prompts_boundaries_and_padding() -> None:
    parts = examples()
    row = pack_row(parts, 24, pad_token_id=0)
    labels = row["labels"]
    assert len(labels) == 24 and labels[21:] == [IGNORE_INDEX] * 3  # padding
    start = 0
    for part in parts:
        n = len(part["input_ids"])
        assert labels[start] == IGNORE_INDEX  # never predicted from the previous example
        assert labels[start + 1 : start + n] == part["labels"][1:]  # prompt stays ignored
        start += n
    assert row["position_ids"][:7] == list(range(7)) and row["position_ids"][7:12] == list(range(5))
    batch = collate_packed([row], torch.bfloat16)
    assert batch["attention_mask"].shape == (1, 1, 24, 24)
    assert batch["attention_mask"].dtype == torch.bfloat16


def test_plan_rows_fills_rows_and_refuses_overlong_examples() -> None:
    lengths = [9, 3, 7, 5, 2, 8]
    rows = plan_rows(lengths, 10)
    assert sorted(i for row in rows for i in row) == list(range(6))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert len(rows) == 4  # 34 tokens in rows of 10: four rows, the fewest possible
    with pytest.raises(ValueError, match="longer than 10"):
        plan_rows([11], 10)
