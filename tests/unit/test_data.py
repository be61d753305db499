from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset
from helpers import SENTIMENT, prepared_rows

from raytune_ft.data.cleaning import clean_dataset, clean_text
from raytune_ft.data.loading import SOURCE_KEY, read_source
from raytune_ft.data.splitting import split_rows
from raytune_ft.errors import UserError
from raytune_ft.spec.sections import CleanSpec, SourceSpec

SITES = {"name": "site", "pattern": "^([a-z]+)_"}


def sentiment_source(**extra: object) -> SourceSpec:
    return SourceSpec(path=str(SENTIMENT / "*_labelled.txt"), columns=["text", "label"], **extra)


def sentiment_data(**extra: object) -> dict:
    return {"path": str(SENTIMENT / "*_labelled.txt"), "columns": ["text", "label"], **extra}


def test_real_files_read_whole_despite_crlf_and_nel() -> None:
    rows = read_source(sentiment_source(file_column=SITES))
    # 1,000 sentences per site: no row split at the stray U+0085 inside two imdb sentences.
    assert Counter(r["site"] for r in rows) == {"amazon": 1000, "imdb": 1000, "yelp": 1000}
    assert {r["label"] for r in rows} == {"0", "1"}
    assert not any("\r" in r["text"] or "\r" in r["label"] for r in rows)
    nel = [r for r in rows if "\x85" in r["text"]]
    assert [r[SOURCE_KEY] for r in nel] == ["imdb_labelled.txt:180", "imdb_labelled.txt:969"]


def test_cleaning_repairs_cp1252_controls_and_normalizes() -> None:
    text, repaired = clean_text("The script is\x85was there  a script?\u00a0 ", CleanSpec(), True)
    assert (text, repaired) == ("The script is...was there a script?", 1)
    assert clean_text("ﬁne", CleanSpec(unicode_form="none"), True)[0] == "ﬁne"
    assert clean_text("ﬁne", CleanSpec(), True)[0] == "fine"
    # Generative tasks keep their layout: newlines and indentation are part of the text.
    assert clean_text("def f():\n    return 1", CleanSpec(), False)[0] == "def f():\n    return 1"


def test_cleaning_report_counts_each_drop() -> None:
    rows = [
        {"text": "good", "label": "1"},
        {"text": " good ", "label": "1"},  # duplicate after strip
        {"text": "   ", "label": "0"},  # empty
        {"text": "meh", "label": "1"},
        {"text": "meh", "label": "0"},  # conflicting labels: both copies go
        {"text": "bad", "label": "0"},
    ]
    cleaned, report = clean_dataset(
        Dataset.from_list(rows), ["text"], ["text"], "label", CleanSpec(), True
    )
    assert cleaned["text"] == ["good", "bad"]
    assert report.as_dict() == {
        "rows_in": 6,
        "repaired_characters": 0,
        "empty_dropped": 1,
        "duplicates_dropped": 1,
        "conflicting_dropped": 2,
        "rows_out": 2,
    }


def test_stratified_split_keeps_label_mix_and_is_seeded() -> None:
    rows = [{"text": str(i), "label": "1" if i % 4 == 0 else "0"} for i in range(1000)]
    train, val, test = split_rows(rows, "label", 0.1, 0.2, stratify=True, seed=3)
    assert (len(train), len(val), len(test)) == (700, 100, 200)
    for part in (train, val, test):
        share = sum(r["label"] == "1" for r in part) / len(part)
        assert share == pytest.approx(0.25, abs=0.01)
    assert {r["text"] for r in train} | {r["text"] for r in val} | {r["text"] for r in test} == {
        str(i) for i in range(1000)
    }
    again = split_rows(rows, "label", 0.1, 0.2, stratify=True, seed=3)
    assert again[1] == val
    other = split_rows(rows, "label", 0.1, 0.2, stratify=True, seed=4)
    assert other[1] != val


def test_prepare_real_data_end_to_end() -> None:
    spec = {
        "train": sentiment_data(file_column=SITES),
        "group_column": "site",
        "max_train_samples": 500,
    }
    data = prepared_rows(spec, seed=42)
    assert data.labels == ["0", "1"]
    assert data.sizes() == {"train": 500, "validation": 299, "test": 299}
    assert data.clean_report["train"].duplicates_dropped == 18
    texts = [set(data.splits[s]["text"]) for s in ("train", "validation", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert set(data.splits["test"]["_group"]) == {"amazon", "imdb", "yelp"}
    again = prepared_rows(spec, seed=42).splits["validation"]
    assert again["_source"] == data.splits["validation"]["_source"]  # same on every worker


def test_jsonl_and_csv_sources(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"text": "fine", "label": 1}\n\n{"text": "awful", "label": 0}\n'
    )
    (tmp_path / "b.csv").write_text('text,label\n"great, really",1\nbad,0\n')
    jsonl = read_source(SourceSpec(path=str(tmp_path / "a.jsonl")))
    assert [r["text"] for r in jsonl] == ["fine", "awful"]
    csv_rows = read_source(SourceSpec(path=str(tmp_path / "b.csv")))
    assert csv_rows[0]["text"] == "great, really" and csv_rows[1][SOURCE_KEY] == "b.csv:3"


@pytest.mark.parametrize(
    ("name", "content", "source_extra", "expected"),
    [
        (
            "x.tsv",
            "text\tlabel\nok\t1\nbroken row\n",
            {},
            "x.tsv:3: expected 2 tsv fields (text, label), found 1",
        ),
        ("x.jsonl", '{"text": "a", "label": 1}\n{oops\n', {}, "x.jsonl:2: not valid JSON"),
        ("x.jsonl", '["a", 1]\n', {}, "x.jsonl:1: expected a JSON object per line"),
        ("x.bin", "", {}, "cannot tell the format from '.bin'"),
        ("x.tsv", "", {}, "x.tsv: empty file; expected a header row"),
    ],
)
def test_bad_files_name_file_and_line(
    tmp_path: Path, name: str, content: str, source_extra: dict, expected: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=None) as info:
        read_source(SourceSpec(path=str(tmp_path / name), **source_extra))
    assert expected in info.value.problems[0]


def test_non_utf8_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "x.tsv").write_bytes(b"text\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_source(SourceSpec(path=str(tmp_path / "x.tsv")))


def test_missing_glob_column_and_label_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data\.train\.path: .* matches no files"):
        prepared_rows({"train": {"path": str(tmp_path / "*.tsv")}})
    (tmp_path / "x.tsv").write_text(
        "sentence\tscore\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(40))
    )
    with pytest.raises(
        UserError, match=r"x.tsv:2: no column 'text' \(this row has: score, sentence\)"
    ):
        prepared_rows({"train": {"path": str(tmp_path / "x.tsv")}})
    task = {"text_column": "sentence", "label_column": "score", "labels": ["0", "2"]}
    with pytest.raises(UserError, match=r"x.tsv:\d+: label '1' is not one of \['0', '2'\]"):
        prepared_rows({"train": {"path": str(tmp_path / "x.tsv")}}, task)


def test_an_empty_test_split_is_saved_with_the_validation_columns(tmp_path: Path) -> None:
    """`data.split.test: 0`: no rows to infer the split's columns from, which once crashed
    the pre-flight with a traceback from `datasets`."""
    from helpers import ROOT

    from raytune_ft.data.prepare import prepare
    from raytune_ft.spec import load_spec

    spec = load_spec(
        ROOT / "experiments" / "quickstart.yaml",
        ["data.split.test=0", "data.max_train_samples=200", f"storage.path={tmp_path}"],
    )
    data = prepare(spec)
    assert (len(data["train"]), len(data["test"])) == (200, 0)
    assert data["test"].column_names == data["validation"].column_names
