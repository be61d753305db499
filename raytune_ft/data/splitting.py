"""Seeded, optionally stratified train/validation/test splits."""

from __future__ import annotations

from sklearn.model_selection import train_test_split

from raytune_ft.data.loading import Row
from raytune_ft.errors import UserError


def hold_out(
    rows: list[Row], fraction_or_count: float | int, label_column: str, stratify: bool, seed: int
) -> tuple[list[Row], list[Row]]:
    """(kept, held_out) with held_out of the given fraction or size."""
    labels = [r[label_column] for r in rows] if stratify else None
    try:
        kept, held = train_test_split(
            rows, test_size=fraction_or_count, random_state=seed, stratify=labels
        )
    except ValueError as exc:
        raise UserError(
            f"data.split: cannot split {len(rows)} rows "
            f"({'stratified' if stratify else 'random'}): {exc}"
        ) from None
    return kept, held


def split_rows(
    rows: list[Row],
    label_column: str,
    validation: float,
    test: float,
    stratify: bool,
    seed: int,
) -> tuple[list[Row], list[Row], list[Row]]:
    """Train, validation and test lists; fractions are of all rows."""
    rest, test_rows = hold_out(rows, test, label_column, stratify, seed) if test > 0 else (rows, [])
    train_rows, val_rows = hold_out(rest, validation / (1 - test), label_column, stratify, seed + 1)
    return train_rows, val_rows, test_rows


def subsample(
    rows: list[Row], size: int, label_column: str, stratify: bool, seed: int
) -> list[Row]:
    """A seeded subset of `size` rows that keeps the label mix when stratified."""
    if size >= len(rows):
        return rows
    _, subset = hold_out(rows, size, label_column, stratify, seed)
    return subset
