"""Seeded, optionally stratified train/validation/test splits."""

from __future__ import annotations

import math
from collections import Counter

from raytune_ft.data.loading import SOURCE_KEY, Row
from raytune_ft.errors import UserError


def hold_out(
    rows: list[Row],
    fraction_or_count: float | int,
    label_column: str,
    stratify: bool,
    seed: int,
    field: str = "data.split",
    keeps_both: bool = True,
) -> tuple[list[Row], list[Row]]:
    """(kept, held_out) with held_out of the given fraction or size.

    `field` is the spec field that asked for this split, named in every error; `keeps_both`
    is False when only the held-out side is used (a subsample), so only it must hold every
    label.
    """
    # Imported here: training workers import this module but never split (1.2 s a process).
    from sklearn.model_selection import train_test_split

    labels = [r[label_column] for r in rows] if stratify else None
    if labels is not None:
        _check_stratifiable(rows, labels, fraction_or_count, field, keeps_both)
    try:
        kept, held = train_test_split(
            rows, test_size=fraction_or_count, random_state=seed, stratify=labels
        )
    except ValueError as exc:
        raise UserError(
            f"{field}: cannot split {len(rows)} rows "
            f"({'stratified' if stratify else 'random'}): {exc}"
        ) from None
    return kept, held


def _check_stratifiable(
    rows: list[Row],
    labels: list[str],
    fraction_or_count: float | int,
    field: str,
    keeps_both: bool,
) -> None:
    counts = Counter(labels)
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        first = next(r for r, label in zip(rows, labels, strict=True) if label == rare[0])
        where = first.get(SOURCE_KEY, "a row")
        raise UserError(
            f"{where}: label {rare[0]!r} has only 1 row; a stratified split ({field}) needs "
            "at least 2 per label: fix the label, add rows, or set data.split.stratify: false"
        )
    held = (
        fraction_or_count
        if isinstance(fraction_or_count, int)
        else math.ceil(fraction_or_count * len(rows))
    )
    kept = len(rows) - held
    sides = [("held out", held)] + ([("kept", kept)] if keeps_both else [])
    for side, size in sides:
        if size < len(counts):
            raise UserError(
                f"{field}: {size} rows {side} of {len(rows)} cannot hold all {len(counts)} "
                "labels of a stratified split; expected at least one row per label "
                "(or data.split.stratify: false)"
            )


def split_rows(
    rows: list[Row],
    label_column: str,
    validation: float,
    test: float,
    stratify: bool,
    seed: int,
) -> tuple[list[Row], list[Row], list[Row]]:
    """Train, validation and test lists; fractions are of all rows."""
    rest, test_rows = (
        hold_out(rows, test, label_column, stratify, seed, "data.split.test")
        if test > 0
        else (rows, [])
    )
    train_rows, val_rows = hold_out(
        rest, validation / (1 - test), label_column, stratify, seed + 1, "data.split.validation"
    )
    return train_rows, val_rows, test_rows


def subsample(
    rows: list[Row], size: int, label_column: str, stratify: bool, seed: int
) -> list[Row]:
    """A seeded subset of `size` rows that keeps the label mix when stratified."""
    if size >= len(rows):
        return rows
    _, subset = hold_out(
        rows, size, label_column, stratify, seed, "data.max_train_samples", keeps_both=False
    )
    return subset
