"""Data that would corrupt labels or fail mid-run is refused in the pre-flight, by file and row."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import minimal_spec, prepared_rows

from raytune_ft.data.loading import read_source
from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.spec.sections import SourceSpec


def rows_tsv(n: int = 40, extra: str = "") -> str:
    return "text\tlabel\n" + "".join(f"sentence {i}\t{i % 2}\n" for i in range(n)) + extra


def problem(fn, *args) -> str:
    with pytest.raises(UserError) as info:
        fn(*args)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def spec_problems(data: dict) -> list[str]:
    with pytest.raises(UserError) as info:
        validate_spec(minimal_spec(data=data))
    return info.value.problems


def test_repeated_header_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\tlabel\nhello\t1\t0\n")
    assert problem(read_source, SourceSpec(path=str(path))) == (
        f"{path}:1: header: column 'label' appears more than once; "
        "expected unique column names (set columns to rename them)"
    )
    lines = spec_problems({"train": {"path": str(path), "columns": ["text", "label", "label"]}})
    assert lines == [
        "data.train.columns: column 'label' appears more than once; expected unique names"
    ]


@pytest.mark.parametrize("column", ["label", "text"])
def test_file_column_may_not_replace_text_or_label(column: str) -> None:
    lines = spec_problems({"train": {"path": "x", "file_column": {"name": column}}})
    assert lines == [
        f"data.train.file_column.name: {column!r} is a column the classification task reads; "
        "expected a new column name"
    ]


def test_file_column_may_not_replace_a_data_column(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1, "site": "x"}\n')
    source = SourceSpec(path=str(path), file_column={"name": "site"})
    assert problem(read_source, source) == (
        f"{path}:1: the data already has a column 'site'; "
        "data.train.file_column.name must be a new column name"
    )


def test_catastrophic_file_column_pattern_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / ("a" * 40 + "b.tsv")
    path.write_text(rows_tsv())
    source = SourceSpec(path=str(path), file_column={"name": "site", "pattern": "^(a|aa)+$"})
    started = time.monotonic()
    message = problem(read_source, source)
    assert time.monotonic() - started < 30  # a hang guard, not a timing goal
    assert message.startswith("data.train.file_column.pattern: '^(a|aa)+$' ran over 1 s")


def test_jsonl_row_without_the_label_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    assert problem(prepared_rows, {"train": {"path": str(path)}}) == (
        "d.jsonl:2: no column 'label' (this row has: text); "
        "every row of data.train needs 'text', 'label'"
    )
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": null}\n')
    assert problem(prepared_rows, {"train": {"path": str(path)}}) == (
        "d.jsonl:2: 'label' is null; expected a label"
    )


def test_group_column_missing_in_some_rows_is_found_before_training(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [f'{{"text": "t{i}", "label": {i % 2}, "site": "s{i % 3}"}}' for i in range(30)]
    lines[17] = '{"text": "t17", "label": 1}'
    path.write_text("\n".join(lines) + "\n")
    spec = {"train": {"path": str(path)}, "group_column": "site"}
    assert problem(prepared_rows, spec).startswith("d.jsonl:18: no column 'site'")


def test_unknown_label_is_named_by_row_with_stratified_split(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text(rows_tsv(extra="typo row\t11\n"))
    listed = {"type": "classification", "labels": ["0", "1"]}
    assert problem(prepared_rows, {"train": {"path": str(path)}}, listed) == (
        "d.tsv:42: label '11' is not one of ['0', '1'] (set task.labels to list every class)"
    )
    # Without task.labels, a label seen once cannot be stratified: named by its row too.
    assert problem(prepared_rows, {"train": {"path": str(path)}}) == (
        "d.tsv:42: label '11' has only 1 row; a stratified split (data.split.test) needs "
        "at least 2 per label: fix the label, add rows, or set data.split.stratify: false"
    )


def test_max_train_samples_too_small_is_blamed_on_itself(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text(rows_tsv())
    spec = {"train": {"path": str(path)}, "max_train_samples": 1}
    assert problem(prepared_rows, spec).startswith(
        "data.max_train_samples: 1 rows held out of 32 cannot hold all 2 labels"
    )


def test_unclosed_csv_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    body = [f"sentence {i},{i % 2}" for i in range(60)]
    body[50] = '"an unclosed quote,1'  # line 52 counting the header
    path.write_text("text,label\n" + "\n".join(body) + "\n")
    assert problem(read_source, SourceSpec(path=str(path))) == (
        f"{path}:52: unreadable csv: a quoted field starts here and its closing quote never comes"
    )


def test_a_quoted_multiline_field_with_wrong_fields_names_its_span(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\nok,1\n"two\nlines"\nafter,0\n')
    assert problem(read_source, SourceSpec(path=str(path))) == (
        f"{path}:3-4: expected 2 csv fields (text, label), found 1"
    )


def test_a_5mb_field_is_read_and_lines_stay_right(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    big = "word " * 1_000_000
    path.write_text(f'text,label\n"{big}",1\nshort,0\nbroken\n')
    message = problem(read_source, SourceSpec(path=str(path)))
    assert message == f"{path}:4: expected 2 csv fields (text, label), found 1"
    path.write_text(f'text,label\n"{big}",1\nshort,0\n')
    rows = read_source(SourceSpec(path=str(path)))
    assert len(rows[0]["text"]) == len(big) and rows[1]["_source"] == "d.csv:3"


def test_a_jsonl_key_written_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0, "label": 1}\n')
    assert problem(read_source, SourceSpec(path=str(path))) == (
        f"{path}:2: key 'label' appears twice in one object; expected each column once"
    )


def test_file_column_pattern_is_checked_by_the_engine_that_runs_it() -> None:
    lines = spec_problems({"train": {"path": "x", "file_column": {"name": "s", "pattern": "(a"}}})
    assert len(lines) == 1
    assert lines[0].startswith("data.train.file_column.pattern: not a valid regular expression")
