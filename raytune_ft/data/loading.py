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
    ".json": "json",
    ".parquet": "parquet",
}


def resolve_files(source: SourceSpec, field: str) -> list[Path]:
    assert source.path is not None
    files = sorted(Path(p) for p in glob.glob(source.path, recursive=True) if Path(p).is_file())
    if not files:
        raise UserError(f"{field}.path: {source.path!r} matches no files")
    return files


def read_source(source: SourceSpec, field: str = "data.train") -> list[Row]:
    """All rows of every file the source's path or glob names, in file-name order (or of the
    hub dataset it names). Every row carries SOURCE_KEY: file:line, or name[split]:row N."""
    if source.hub is not None:
        return _read_hub(source, field)
    rows: list[Row] = []
    for file in resolve_files(source, field):
        fmt = source.format if source.format != "auto" else _FORMAT_BY_SUFFIX.get(file.suffix)
        if fmt is None:
            raise UserError(
                f"{file}: cannot tell the format from {file.suffix!r}; "
                f"set {field}.format to tsv, csv, jsonl, json, parquet or text"
            )
        file_rows = _READERS[fmt](file, fmt, source)
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


def _read_jsonl(file: Path, fmt: str = "jsonl", source: SourceSpec | None = None) -> list[Row]:
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


def _read_json(file: Path, fmt: str, source: SourceSpec) -> list[Row]:
    """A JSON array of objects; a .json file holding one object per line reads as JSONL."""
    with _open_text(file) as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith("["):
        return _read_jsonl(file)
    try:
        with _open_text(file) as handle:
            data = json.load(handle, object_pairs_hook=_refuse_repeated_keys)
    except json.JSONDecodeError as exc:
        raise UserError(f"{file}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except _RepeatedKey as exc:
        raise UserError(f"{file}: key {exc.key!r} appears twice in one object") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    rows = []
    for index, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise UserError(f"{file}: item {index + 1}: expected a JSON object per item")
        rows.append({**obj, SOURCE_KEY: f"{file.name}:item {index + 1}"})
    return rows


def _via_load_dataset(builder: str, file: Path, **kwargs: Any) -> Any:
    from datasets import load_dataset

    try:
        return load_dataset(builder, data_files=[str(file)], split="train", **kwargs)
    except Exception as exc:  # pyarrow and datasets raise many types for one bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{file}: unreadable {builder}: {first}") from None


def _read_parquet(file: Path, fmt: str, source: SourceSpec) -> list[Row]:
    table = _via_load_dataset("parquet", file)
    return [{**row, SOURCE_KEY: f"{file.name}:row {i + 1}"} for i, row in enumerate(table)]


def _read_text(file: Path, fmt: str, source: SourceSpec) -> list[Row]:
    """One example per line, in the column 'text' (or the first of source.columns)."""
    column = (source.columns or ["text"])[0]
    lines = _via_load_dataset("text", file, keep_linebreaks=False)["text"]
    return [
        {column: line, SOURCE_KEY: f"{file.name}:{i + 1}"}
        for i, line in enumerate(lines)
        if line.strip()
    ]


def _read_hub(source: SourceSpec, field: str) -> list[Row]:
    """A dataset `load_dataset` finds by name: a hub id, or a local dataset folder."""
    from datasets import load_dataset

    hub = source.hub
    assert hub is not None
    try:
        table = load_dataset(hub.name, hub.config, split=hub.split, revision=hub.revision)
    except Exception as exc:  # offline, unknown name, bad split: one line, the user's fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{field}.hub: cannot load {hub.name!r} (config {hub.config!r}, split "
            f"{hub.split!r}): {first}"
        ) from None
    label = f"{hub.name}[{hub.split}]"
    return [{**row, SOURCE_KEY: f"{label}:row {i + 1}"} for i, row in enumerate(table)]


_READERS = {
    "tsv": _read_delimited,
    "csv": _read_delimited,
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
    "text": _read_text,
}
