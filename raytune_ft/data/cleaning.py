"""Text cleaning with a report of what was changed or dropped."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from datasets import Dataset

from raytune_ft.spec.sections import CleanSpec

_WHITESPACE = re.compile(r"\s+")
_C1 = re.compile("[\u0080-\u009f]")


@dataclass
class CleanReport:
    rows_in: int = 0
    repaired_characters: int = 0
    empty_dropped: int = 0
    duplicates_dropped: int = 0
    conflicting_dropped: int = 0
    rows_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _repair_c1(match: re.Match[str]) -> str:
    # C1 controls in "UTF-8" text are almost always cp1252 bytes decoded as latin-1
    # (U+0085 was an ellipsis, U+0092 an apostrophe). Map them back to what was meant.
    try:
        return bytes([ord(match.group(0))]).decode("cp1252")
    except UnicodeDecodeError:
        return " "


def clean_text(text: str, spec: CleanSpec, collapse_whitespace: bool) -> tuple[str, int]:
    """Cleaned text and the number of characters repaired."""
    text, repaired = _C1.subn(_repair_c1, text)
    if spec.unicode_form != "none":
        text = unicodedata.normalize(spec.unicode_form, text)
    if collapse_whitespace:
        text = _WHITESPACE.sub(" ", text)
    return text.strip(), repaired


def clean_dataset(
    data: Dataset,
    text_columns: list[str],
    key_columns: list[str],
    label_column: str | None,
    spec: CleanSpec,
    collapse_whitespace: bool,
) -> tuple[Dataset, CleanReport]:
    """Normalize the text columns (batched map), then drop empty, conflicting and repeated rows.

    `key_columns` identify a duplicate; `label_column` (classification) finds the same key
    with different labels, where every copy goes: neither label can be trusted.
    """
    report = CleanReport(rows_in=len(data))

    def normalize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        repaired = [0] * len(next(iter(batch.values())))
        for column in text_columns:
            cleaned = []
            for i, value in enumerate(batch[column]):
                text, n = clean_text(value, spec, collapse_whitespace)
                cleaned.append(text)
                repaired[i] += n
            batch[column] = cleaned
        return batch | {REPAIRED: repaired}

    data = data.map(normalize, batched=True, desc="clean")
    report.repaired_characters = int(sum(data[REPAIRED]))
    data = data.remove_columns(REPAIRED)
    if spec.drop_empty and text_columns:
        before = len(data)
        data = data.filter(
            lambda batch: [
                all(batch[c][i] for c in text_columns) for i in range(len(batch[text_columns[0]]))
            ],
            batched=True,
            desc="drop empty",
        )
        report.empty_dropped = before - len(data)
    keys = _keys(data, key_columns)
    if spec.drop_conflicting_labels and label_column is not None and keys is not None:
        labels_by_key: dict[Any, set[str]] = {}
        for key, label in zip(keys, data[label_column], strict=True):
            labels_by_key.setdefault(key, set()).add(_hashable(label))
        keep = [i for i, key in enumerate(keys) if len(labels_by_key[key]) == 1]
        report.conflicting_dropped = len(data) - len(keep)
        data, keys = data.select(keep), [keys[i] for i in keep]
    if spec.dedupe and keys is not None:
        seen: set[Any] = set()
        keep = []
        for i, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                keep.append(i)
        report.duplicates_dropped = len(data) - len(keep)
        data = data.select(keep)
    report.rows_out = len(data)
    return data, report


REPAIRED = "_repaired"


def _keys(data: Dataset, columns: list[str]) -> list[Any] | None:
    if not columns:
        return None
    values = [data[c] for c in columns]
    return [tuple(_hashable(v[i]) for v in values) for i in range(len(data))]


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
