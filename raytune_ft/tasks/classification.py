"""Sequence classification: single-label, multi-label and regression heads on one encoder."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding

from raytune_ft.errors import UserError
from raytune_ft.tasks.base import Batch, Row, Stats, Task, text_cell, where


class _SequenceHead(Task):
    """A head over an encoder's sequence representation: text in, one target per row out."""

    auto_model = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"  # peft also trains and saves the new head

    @property
    def text_columns(self) -> list[str]:
        return [self.section.text_column]

    def _targets(self, values: list[Any], labels: list[str] | None) -> list[Any]:
        """The label column's values as the model's `labels`."""
        raise NotImplementedError

    def tokenize(
        self, batch: Batch, tokenizer: Any, max_length: int, labels: list[str] | None
    ) -> tuple[Batch, list[int]]:
        encoded = dict(
            tokenizer(batch[self.section.text_column], truncation=True, max_length=max_length)
        )
        encoded["labels"] = self._targets(batch[self.section.label_column], labels)
        return encoded, list(range(len(encoded["labels"])))

    def feature_columns(self, split: str) -> list[str]:
        return ["input_ids", "attention_mask", "token_type_ids", "labels"]

    def collator(self, tokenizer: Any, dtype: torch.dtype, split: str) -> Any:
        # Dynamic padding: each batch pads to its own longest example, not to max_length.
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")


class ClassificationTask(_SequenceHead):
    """One class per row: softmax over the classes, cross-entropy."""

    @property
    def label_column(self) -> str | None:
        return self.section.label_column

    def normalize(self, row: Row) -> Row:
        label = row.get(self.section.label_column)
        if label is None:
            raise UserError(
                f"{where(row)}: {self.section.label_column!r} is null; expected a label"
            )
        return {
            self.section.text_column: text_cell(row, self.section.text_column),
            self.section.label_column: str(label).strip(),
        }

    def label_names(self, train: Any) -> list[str] | None:
        return self.section.labels or sorted(set(train[self.section.label_column]))

    def check_labels(self, data: Any, labels: list[str] | None) -> None:
        assert labels is not None
        known = set(labels)
        for source, label in zip(data["_source"], data[self.section.label_column], strict=True):
            if label not in known:
                raise UserError(
                    f"{source}: label {label!r} is not one of {labels} "
                    "(set task.labels to list every class)"
                )

    def config_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        assert labels is not None
        return {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
        }

    def _targets(self, values: list[Any], labels: list[str] | None) -> list[Any]:
        assert labels is not None
        ids = {label: i for i, label in enumerate(labels)}
        return [ids[v] for v in values]

    def example_stats(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Stats:
        logits, labels = logits.float(), batch["labels"]
        losses = F.cross_entropy(logits, labels, reduction="none")
        return list(zip(logits.argmax(-1).tolist(), labels.tolist(), losses.tolist(), strict=True))

    def metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        from raytune_ft.evaluation.metrics import classification_metrics

        predictions, labels, losses = (list(column) for column in zip(*stats, strict=True))
        return classification_metrics(labels, predictions, losses, prefix)


class MultiLabelTask(ClassificationTask):
    """Any number of classes per row: one sigmoid per class, binary cross-entropy."""

    @property
    def label_column(self) -> str | None:
        return None  # a set of labels neither stratifies nor conflicts simply

    def normalize(self, row: Row) -> Row:
        column = self.section.label_column
        value = row.get(column)
        if isinstance(value, str):
            value = [v for v in value.split(self.section.label_separator) if v.strip()]
        if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value
        ):
            raise UserError(
                f"{where(row)}: {column!r} holds {value!r}; expected a list of labels or a "
                f"string of labels joined by {self.section.label_separator!r}"
            )
        return {
            self.section.text_column: text_cell(row, self.section.text_column),
            column: sorted({str(v).strip() for v in value}),
        }

    def label_names(self, train: Any) -> list[str] | None:
        found = {label for labels in train[self.section.label_column] for label in labels}
        return self.section.labels or sorted(found)

    def check_labels(self, data: Any, labels: list[str] | None) -> None:
        assert labels is not None
        known = set(labels)
        for source, values in zip(data["_source"], data[self.section.label_column], strict=True):
            unknown = [v for v in values if v not in known]
            if unknown:
                raise UserError(
                    f"{source}: label {unknown[0]!r} is not one of {labels} "
                    "(set task.labels to list every class)"
                )

    def config_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        return super().config_kwargs(labels) | {"problem_type": "multi_label_classification"}

    def _targets(self, values: list[Any], labels: list[str] | None) -> list[Any]:
        assert labels is not None
        return [[float(label in set(row)) for label in labels] for row in values]

    def example_stats(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Stats:
        logits, targets = logits.float(), batch["labels"].float()
        losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)
        predicted = (torch.sigmoid(logits) >= self.section.threshold).int()
        return list(zip(predicted.tolist(), targets.int().tolist(), losses.tolist(), strict=True))

    def metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        from raytune_ft.evaluation.metrics import multilabel_metrics

        predictions, labels, losses = (list(column) for column in zip(*stats, strict=True))
        return multilabel_metrics(labels, predictions, losses, prefix)


class RegressionTask(_SequenceHead):
    """A float target: one output, mean squared error."""

    def normalize(self, row: Row) -> Row:
        column = self.section.label_column
        value = row.get(column)
        try:
            target = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            target = math.nan
        if isinstance(value, bool) or not math.isfinite(target):
            raise UserError(f"{where(row)}: {column!r} is {value!r}; expected a finite number")
        return {self.section.text_column: text_cell(row, self.section.text_column), column: target}

    def config_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        return {"num_labels": 1, "problem_type": "regression"}

    def _targets(self, values: list[Any], labels: list[str] | None) -> list[Any]:
        return [float(v) for v in values]

    def example_stats(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Stats:
        predictions = logits.float().squeeze(-1)
        targets = batch["labels"].float()
        losses = (predictions - targets) ** 2
        return list(zip(predictions.tolist(), targets.tolist(), losses.tolist(), strict=True))

    def metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        from raytune_ft.evaluation.metrics import regression_metrics

        predictions, targets, losses = (list(column) for column in zip(*stats, strict=True))
        return regression_metrics(targets, predictions, losses, prefix)
