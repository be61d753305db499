"""The task interface: everything that differs between classification, causal-LM SFT,
seq2seq and masked-LM lives behind it, so data preparation, the training recipe, evaluation
and the CLI never ask which task they run.

A task turns checked rows into features (batched, for `Dataset.map`), collates them into
`model(**batch)` inputs with the labels already masked, and turns per-example statistics
gathered from every rank into metrics. Plain code: no Ray.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from raytune_ft.data.loading import SOURCE_KEY, Row
from raytune_ft.errors import UserError

Batch = dict[str, list[Any]]
Stats = list[tuple[Any, ...]]  # one tuple per example; gathered across ranks, then reduced
IGNORE_INDEX = -100


class Task(ABC):
    """One task type; `section` is its typed spec section (spec.task)."""

    auto_model: ClassVar[str]  # the transformers Auto class that builds and reloads the model
    peft_task_type: ClassVar[str | None] = None
    generative: ClassVar[bool] = False  # text whose whitespace matters (no collapsing)

    def __init__(self, section: Any):
        self.section = section

    # ---------------------------------------------------------------- rows

    @abstractmethod
    def normalize(self, row: Row) -> Row:
        """The row's task columns, typed and checked; a UserError names row and column."""

    @property
    def text_columns(self) -> list[str]:
        """String columns that cleaning normalizes (and drop_empty checks)."""
        return []

    @property
    def key_columns(self) -> list[str]:
        """Columns whose values together identify a duplicate row."""
        return self.text_columns

    @property
    def label_column(self) -> str | None:
        """The class column: stratified splits and conflicting-label checks use it."""
        return None

    def label_names(self, train: Any) -> list[str] | None:
        """Class names in index order (classification), from the spec or the training split."""
        return None

    def check_labels(self, data: Any, labels: list[str] | None) -> None:
        """Every label of a split is a known class (classification); nothing to check else."""
        return None

    # ---------------------------------------------------------------- features

    @abstractmethod
    def tokenize(
        self, batch: Batch, tokenizer: Any, max_length: int, labels: list[str] | None
    ) -> tuple[Batch, list[int]]:
        """Features for a batch of rows, and which rows they came from (rows may be dropped,
        e.g. a response truncated away, or split, e.g. chunked text)."""

    def finish_split(self, data: Any, split: str, tokenizer: Any, max_length: int) -> Any:
        """A last whole-split step after tokenizing (packing, chunking); by default none."""
        return data

    def feature_columns(self, split: str) -> list[str]:
        """The columns the collator takes (the rest is kept for evaluation)."""
        return ["input_ids", "attention_mask", "labels"]

    # ---------------------------------------------------------------- model

    def config_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        """Keyword arguments for AutoConfig (e.g. the number of classes)."""
        return {}

    @abstractmethod
    def collator(
        self, tokenizer: Any, dtype: torch.dtype, split: str
    ) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
        """Features -> the tensors of `model(**batch)`."""

    # ---------------------------------------------------------------- evaluation

    @abstractmethod
    def example_stats(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Stats:
        """Per-example statistics of one evaluation batch."""

    @abstractmethod
    def metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        """Metrics from the statistics of every example of a split."""

    @property
    def generation(self) -> Any | None:
        """The spec's generation settings when this task generates at evaluation."""
        return getattr(self.section, "generation", None)

    def generate(
        self, model: Any, tokenizer: Any, rows: list[dict[str, Any]], device: Any, synced: bool
    ) -> Stats:
        """(prediction, reference) per row, by greedy decoding."""
        raise NotImplementedError

    def generation_metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        from raytune_ft.evaluation.metrics import generation_metrics

        return generation_metrics([p for p, _ in stats], [r for _, r in stats], prefix)


# -------------------------------------------------------------------- shared helpers


def where(row: Row) -> str:
    return str(row.get(SOURCE_KEY, "a row"))


def text_cell(row: Row, column: str, allow_empty: bool = True) -> str:
    """The row's value in `column` as text; numbers become text, anything else is refused."""
    value = row.get(column)
    if value is None:
        value = ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UserError(
            f"{where(row)}: column {column!r} holds {type(value).__name__} {_short(value)}; "
            "expected text"
        )
    text = str(value)
    if not allow_empty and not text.strip():
        raise UserError(f"{where(row)}: column {column!r} is empty; expected text")
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def token_stats(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> Stats:
    """(summed loss, labelled tokens, correct tokens) per example; -100 labels ignored.

    `shift`: causal LMs predict token t+1 at position t.
    """
    if shift:
        logits, labels = logits[:, :-1, :], labels[:, 1:]
    flat = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(labels.shape)
    mask = labels != IGNORE_INDEX
    correct = (logits.argmax(dim=-1) == labels) & mask
    return [
        (float(flat[i].sum()), int(mask[i].sum()), int(correct[i].sum()))
        for i in range(labels.shape[0])
    ]


def reduce_token_stats(stats: Stats, prefix: str) -> dict[str, float]:
    from raytune_ft.evaluation.metrics import token_metrics

    loss = math.fsum(s[0] for s in stats)
    return token_metrics(loss, sum(s[1] for s in stats), sum(s[2] for s in stats), prefix)
