"""Packing short causal-LM examples into full rows, exactly.

Several tokenized examples share one row of `max_length` tokens, so no step is spent on
padding. Exactness needs three things (measured with transformers 5.24: restarting position
ids alone leave attention crossing the boundary, off by ~0.5 in the logits under eager and
sdpa; only flash-attention-2 turns position ids into varlen attention):
- position ids that restart at 0 for every example;
- a 4D additive attention mask, block-diagonal and causal: a token sees only the earlier
  tokens of its own example (a boolean mask is wrong under eager attention);
- no label across a boundary: the first token of each example would be predicted from the
  previous example's last token, so it is ignored (-100), like prompt and padding tokens.
Plain functions, no Ray, for the causal-LM SFT task to collate with (issue 6: not wired yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

IGNORE_INDEX = -100


def plan_rows(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Example indices per row: first-fit over the examples sorted longest first.

    Deterministic for the same lengths; every example longer than `max_length` must have
    been truncated before (it is refused here rather than cut silently).
    """
    too_long = [i for i, n in enumerate(lengths) if n > max_length or n < 1]
    if too_long:
        raise ValueError(f"examples {too_long[:5]} are empty or longer than {max_length} tokens")
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for row, free in enumerate(room):
            if lengths[index] <= free:
                rows[row].append(index)
                room[row] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(max_length - lengths[index])
    return rows


def pack_row(
    examples: Sequence[dict[str, Sequence[int]]], max_length: int, pad_token_id: int
) -> dict[str, list[int]]:
    """One packed row: input_ids, labels, position_ids and segment ids (-1 for padding)."""
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    segments: list[int] = []
    for segment, example in enumerate(examples):
        ids = list(example["input_ids"])
        example_labels = list(example.get("labels", ids))
        if len(example_labels) != len(ids):
            raise ValueError("labels and input_ids differ in length")
        input_ids += ids
        labels += [IGNORE_INDEX, *example_labels[1:]]  # nothing predicts across a boundary
        positions += range(len(ids))
        segments += [segment] * len(ids)
    if len(input_ids) > max_length:
        raise ValueError(f"the examples hold {len(input_ids)} tokens; a row holds {max_length}")
    pad = max_length - len(input_ids)
    return {
        "input_ids": input_ids + [pad_token_id] * pad,
        "labels": labels + [IGNORE_INDEX] * pad,
        "position_ids": positions + list(range(pad)),
        "segment_ids": segments + [-1] * pad,
    }


def block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, L, L] additive mask: 0 where query i may see key j, the dtype's minimum elsewhere.

    i sees j when both are in the same segment and j <= i. Padding (segment -1) is one more
    segment of its own, so no softmax row is empty (an all-masked row gives NaN).
    """
    length = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = same & causal
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None, :, :]


def collate_packed(rows: Sequence[dict[str, list[int]]], dtype: torch.dtype) -> dict[str, Any]:
    """Packed rows -> the tensors a Hugging Face causal LM takes as `model(**batch)`."""
    segment_ids = torch.tensor([r["segment_ids"] for r in rows])
    return {
        "input_ids": torch.tensor([r["input_ids"] for r in rows]),
        "labels": torch.tensor([r["labels"] for r in rows]),
        "position_ids": torch.tensor([r["position_ids"] for r in rows]),
        "attention_mask": block_causal_mask(segment_ids, dtype),
    }
