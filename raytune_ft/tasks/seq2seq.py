"""Encoder-decoder generation (T5/BART style): source column in, target column out."""

from __future__ import annotations

from typing import Any

import torch

from raytune_ft.tasks.base import (
    IGNORE_INDEX,
    Batch,
    Row,
    Stats,
    Task,
    reduce_token_stats,
    text_cell,
    token_stats,
)
from raytune_ft.tasks.language_modeling import REFERENCE


class Seq2SeqTask(Task):
    auto_model = "AutoModelForSeq2SeqLM"
    peft_task_type = "SEQ_2_SEQ_LM"
    generative = True

    @property
    def text_columns(self) -> list[str]:
        return [self.section.source_column, self.section.target_column]

    def normalize(self, row: Row) -> Row:
        return {c: text_cell(row, c, allow_empty=False) for c in self.text_columns}

    def tokenize(
        self, batch: Batch, tokenizer: Any, max_length: int, labels: list[str] | None
    ) -> tuple[Batch, list[int]]:
        sources = [self.section.source_prefix + s for s in batch[self.section.source_column]]
        encoded = tokenizer(sources, truncation=True, max_length=max_length)
        targets = tokenizer(batch[self.section.target_column], add_special_tokens=False)
        # The decoder learns to stop: every target ends with EOS, after truncation.
        keep = self.section.max_target_length - 1
        label_ids = [[*ids[:keep], tokenizer.eos_token_id] for ids in targets["input_ids"]]
        out = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": label_ids,
            REFERENCE: list(batch[self.section.target_column]),
        }
        return out, list(range(len(label_ids)))

    def feature_columns(self, split: str) -> list[str]:
        return ["input_ids", "attention_mask", "labels"]

    def collator(self, tokenizer: Any, dtype: torch.dtype, split: str) -> Any:
        pad = tokenizer.pad_token_id

        def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            source = max(len(f["input_ids"]) for f in features)
            target = max(len(f["labels"]) for f in features)
            return {
                "input_ids": torch.tensor(
                    [
                        list(f["input_ids"]) + [pad] * (source - len(f["input_ids"]))
                        for f in features
                    ]
                ),
                "attention_mask": torch.tensor(
                    [
                        [1] * len(f["input_ids"]) + [0] * (source - len(f["input_ids"]))
                        for f in features
                    ]
                ),
                # The model shifts labels right into decoder inputs; -100 never enters them.
                "labels": torch.tensor(
                    [
                        list(f["labels"]) + [IGNORE_INDEX] * (target - len(f["labels"]))
                        for f in features
                    ]
                ),
            }

        return collate

    def example_stats(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Stats:
        return token_stats(logits, batch["labels"], shift=False)

    def metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        return reduce_token_stats(stats, prefix)

    def generate(
        self, model: Any, tokenizer: Any, rows: list[dict[str, Any]], device: Any, synced: bool
    ) -> Stats:
        batch = self.collator(tokenizer, torch.float32, "validation")(rows)
        output = model.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=self.section.generation.max_new_tokens,
            do_sample=False,
            synced_gpus=synced,
        )
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        return [(t.strip(), r[REFERENCE].strip()) for t, r in zip(texts, rows, strict=True)]
