"""Text cleaning with a report of what was changed or dropped."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass

from raytune_ft.data.loading import Row
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


def clean_text(text: str, spec: CleanSpec) -> tuple[str, int]:
    """Cleaned text and the number of characters repaired."""
    text, repaired = _C1.subn(_repair_c1, text)
    if spec.unicode_form != "none":
        text = unicodedata.normalize(spec.unicode_form, text)
    if spec.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text)
    return text.strip(), repaired


def clean_rows(
    rows: list[Row], text_column: str, label_column: str, spec: CleanSpec
) -> tuple[list[Row], CleanReport]:
    report = CleanReport(rows_in=len(rows))
    cleaned: list[Row] = []
    for row in rows:
        text, repaired = clean_text(str(row[text_column] or ""), spec)
        report.repaired_characters += repaired
        if spec.drop_empty and not text:
            report.empty_dropped += 1
            continue
        label = row[label_column]
        cleaned.append(
            {**row, text_column: text, label_column: "" if label is None else str(label).strip()}
        )

    if spec.drop_conflicting_labels:
        labels_by_text: dict[str, set[str]] = {}
        for row in cleaned:
            labels_by_text.setdefault(row[text_column], set()).add(row[label_column])
        conflicting = {t for t, labels in labels_by_text.items() if len(labels) > 1}
        before = len(cleaned)
        cleaned = [r for r in cleaned if r[text_column] not in conflicting]
        report.conflicting_dropped = before - len(cleaned)

    if spec.dedupe:
        seen: set[str] = set()
        unique = []
        for row in cleaned:
            if row[text_column] in seen:
                report.duplicates_dropped += 1
                continue
            seen.add(row[text_column])
            unique.append(row)
        cleaned = unique

    report.rows_out = len(cleaned)
    return cleaned, report
