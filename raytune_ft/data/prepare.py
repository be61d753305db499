"""load -> clean -> split -> label ids: the data a run trains, validates and tests on."""

from __future__ import annotations

from dataclasses import dataclass, field

from raytune_ft.data.cleaning import CleanReport, clean_rows
from raytune_ft.data.loading import SOURCE_KEY, Row, read_source
from raytune_ft.data.splitting import hold_out, split_rows, subsample
from raytune_ft.errors import UserError
from raytune_ft.spec.sections import DataSpec

LABEL_ID_KEY = "_label_id"


@dataclass
class PreparedData:
    train: list[Row]
    validation: list[Row]
    test: list[Row]
    labels: list[str]
    clean_report: dict[str, CleanReport] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def _check_columns(rows: list[Row], spec: DataSpec, field_name: str) -> None:
    """Every row has every column the run needs, with a value: checked here, not mid-run."""
    needed = [spec.text_column, spec.label_column] + (
        [spec.group_column] if spec.group_column else []
    )
    if not rows:
        raise UserError(f"{field_name}: no rows after reading the files")
    for row in rows:
        for column in needed:
            if column not in row:
                have = ", ".join(sorted(c for c in row if c != SOURCE_KEY))
                raise UserError(
                    f"{row[SOURCE_KEY]}: no column {column!r} (this row has: {have}); "
                    f"every row of {field_name} needs {', '.join(map(repr, needed))}"
                )
            if column != spec.text_column and row[column] is None:
                raise UserError(f"{row[SOURCE_KEY]}: {column!r} is null; expected a value")


def _load_clean(spec: DataSpec, which: str) -> tuple[list[Row], CleanReport]:
    source = getattr(spec, which)
    rows = read_source(source, f"data.{which}")
    _check_columns(rows, spec, f"data.{which}")
    rows, report = clean_rows(rows, spec.text_column, spec.label_column, spec.clean)
    if not rows:
        raise UserError(f"data.{which}: every row was dropped by cleaning ({report.as_dict()})")
    return rows, report


def _check_labels(rows: list[Row], label_column: str, labels: list[str]) -> None:
    known = set(labels)
    for row in rows:
        if row[label_column] not in known:
            raise UserError(
                f"{row[SOURCE_KEY]}: label {row[label_column]!r} is not one of {labels} "
                "(set data.labels to list every class)"
            )


def prepare_data(spec: DataSpec, seed: int) -> PreparedData:
    """Deterministic for a given spec and seed, so every Ray worker builds the same splits."""
    train_rows, train_report = _load_clean(spec, "train")
    reports = {"train": train_report}
    val_rows: list[Row] | None = None
    test_rows: list[Row] | None = None
    for which in ("validation", "test"):
        if getattr(spec, which) is not None:
            rows, reports[which] = _load_clean(spec, which)
            if which == "validation":
                val_rows = rows
            else:
                test_rows = rows

    if spec.labels is not None:  # before splitting, so an unknown label is named by its row
        for rows in (train_rows, val_rows or [], test_rows or []):
            _check_labels(rows, spec.label_column, spec.labels)

    split, label = spec.split, spec.label_column
    if val_rows is None and test_rows is None:
        train_rows, val_rows, test_rows = split_rows(
            train_rows, label, split.validation, split.test, split.stratify, seed
        )
    elif val_rows is None:
        train_rows, val_rows = hold_out(
            train_rows, split.validation, label, split.stratify, seed, "data.split.validation"
        )
    elif test_rows is None:
        train_rows, test_rows = (
            hold_out(train_rows, split.test, label, split.stratify, seed, "data.split.test")
            if split.test > 0
            else (train_rows, [])
        )

    if spec.max_train_samples is not None:
        train_rows = subsample(
            train_rows, spec.max_train_samples, spec.label_column, split.stratify, seed
        )

    labels = spec.labels or sorted({r[spec.label_column] for r in train_rows})
    label_ids = {label: i for i, label in enumerate(labels)}
    for rows in (train_rows, val_rows, test_rows):
        if spec.labels is None:  # listed labels were checked before the split
            _check_labels(rows, spec.label_column, labels)
        for row in rows:
            row[LABEL_ID_KEY] = label_ids[row[spec.label_column]]
    if len(labels) < 2:
        where = "data.labels" if spec.labels else f"data.label_column {spec.label_column!r}"
        raise UserError(f"{where}: only one class {labels}; expected at least 2")
    return PreparedData(train_rows, val_rows, test_rows, labels, reports)
