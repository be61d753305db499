"""Read user data files into rows. Every row remembers its file and line for error messages."""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path
from typing import Any

import regex

from raytune_ft.errors import UserError
from raytune_ft.spec.sections import SourceSpec

Row = dict[str, Any]
SOURCE_KEY = "_source"  # "file:line", kept through cleaning and splitting for error analysis

# csv's default limit (128 KiB a field) refuses real documents; 64 MiB still bounds memory.
MAX_FIELD_BYTES = 64 << 20
PATTERN_TIMEOUT_S = 1.0  # a file_column.pattern that backtracks for longer is refused

_FORMAT_BY_SUFFIX = {
    ".tsv": "tsv",
    ".txt": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
}


def resolve_files(source: SourceSpec, field: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(source.path, recursive=True) if Path(p).is_file())
    if not files:
        raise UserError(f"{field}.path: {source.path!r} matches no files")
    return files


def read_source(source: SourceSpec, field: str = "data.train") -> list[Row]:
    """All rows of every file the source's path or glob names, in file-name order."""
    rows: list[Row] = []
    for file in resolve_files(source, field):
        fmt = source.format if source.format != "auto" else _FORMAT_BY_SUFFIX.get(file.suffix)
        if fmt is None:
            raise UserError(
                f"{file}: cannot tell the format from {file.suffix!r}; "
                f"set {field}.format to tsv, csv or jsonl"
            )
        file_rows = _read_jsonl(file) if fmt == "jsonl" else _read_delimited(file, fmt, source)
        if source.file_column is not None:
            name = source.file_column.name
            value = _file_column_value(file, source.file_column.pattern, field)
            for row in file_rows:
                if name in row:  # never overwrite what the user's data says
                    raise UserError(
                        f"{file}:{row[SOURCE_KEY].rsplit(':', 1)[1]}: the data already has a "
                        f"column {name!r}; {field}.file_column.name must be a new column name"
                    )
                row[name] = value
        rows.extend(file_rows)
    return rows


def _file_column_value(file: Path, pattern: str, field: str) -> str:
    # `regex` with a time-out: a pattern with catastrophic backtracking must not hang the run.
    try:
        match = regex.search(pattern, file.stem, timeout=PATTERN_TIMEOUT_S)
    except TimeoutError:
        raise UserError(
            f"{field}.file_column.pattern: {pattern!r} ran over {PATTERN_TIMEOUT_S:g} s on "
            f"{file.stem!r} (catastrophic backtracking); expected a simpler pattern"
        ) from None
    if match is None:
        raise UserError(
            f"{file}: {field}.file_column.pattern {pattern!r} does not match {file.stem!r}"
        )
    return match.group(1) if match.groups() else match.group(0)


def _open_text(file: Path):
    # newline="" splits only on \n, \r, \r\n: a stray NEL (U+0085) inside a sentence stays put,
    # where str.splitlines() would cut the row in two.
    return file.open(encoding="utf-8-sig", newline="")


def _read_delimited(file: Path, fmt: str, source: SourceSpec) -> list[Row]:
    dialect: dict[str, Any] = (
        {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"strict": True}
    )
    rows: list[Row] = []
    start = 1  # the line the current record starts on: a quoted field may span lines
    csv.field_size_limit(MAX_FIELD_BYTES)
    try:
        with _open_text(file) as handle:
            reader = csv.reader(handle, **dialect)
            names = source.columns
            if source.header:
                header = next(reader, None)
                if header is None:
                    raise UserError(f"{file}: empty file; expected a header row")
                names = names or [h.strip() for h in header]
            if not names:
                raise UserError(f"{file}: no column names; set columns or header: true")
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                where = f"{file}:1: header" if not source.columns else "columns"
                raise UserError(
                    f"{where}: column {repeated[0]!r} appears more than once; "
                    "expected unique column names (set columns to rename them)"
                )
            start = reader.line_num + 1
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(names):
                    span = f"{line}" if reader.line_num == line else f"{line}-{reader.line_num}"
                    raise UserError(
                        f"{file}:{span}: expected {len(names)} {fmt} fields "
                        f"({', '.join(names)}), found {len(cells)}"
                    )
                row: Row = dict(zip(names, cells, strict=True))
                row[SOURCE_KEY] = f"{file.name}:{line}"
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise UserError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        problem = str(exc)
        if "end of data" in problem:
            problem = "a quoted field starts here and its closing quote never comes"
        elif "field limit" in problem:
            problem = f"a field is larger than {MAX_FIELD_BYTES >> 20} MiB"
        raise UserError(f"{file}:{start}: unreadable {fmt}: {problem}") from None
    return rows


class _RepeatedKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys: a label written twice would win silently.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen[key] = value
    return seen


def _read_jsonl(file: Path) -> list[Row]:
    rows: list[Row] = []
    try:
        with _open_text(file) as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line, object_pairs_hook=_refuse_repeated_keys)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{file}:{line_no}: not valid JSON: {exc.msg}") from None
                except _RepeatedKey as exc:
                    raise UserError(
                        f"{file}:{line_no}: key {exc.key!r} appears twice in one object; "
                        "expected each column once"
                    ) from None
                if not isinstance(obj, dict):
                    raise UserError(f"{file}:{line_no}: expected a JSON object per line")
                obj[SOURCE_KEY] = f"{file.name}:{line_no}"
                rows.append(obj)
    except UnicodeDecodeError as exc:
        raise UserError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    return rows
