"""Rows -> token ids, and batches padded to their longest example."""

from __future__ import annotations

from typing import Any

from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from raytune_ft.data.loading import Row
from raytune_ft.data.prepare import LABEL_ID_KEY


def tokenize_rows(
    rows: list[Row], tokenizer: PreTrainedTokenizerBase, text_column: str, max_length: int
) -> list[dict[str, Any]]:
    encoded = tokenizer([r[text_column] for r in rows], truncation=True, max_length=max_length)
    return [
        {**{k: v[i] for k, v in encoded.items()}, "labels": row[LABEL_ID_KEY]}
        for i, row in enumerate(rows)
    ]


def make_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
    # Dynamic padding: each batch pads to its own longest example, not to max_length.
    return DataCollatorWithPadding(tokenizer, return_tensors="pt")
