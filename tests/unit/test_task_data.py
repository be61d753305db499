"""Task data preparation: bad data is refused by file, row and column before Ray starts;
prepared splits are cached by fingerprint and never re-tokenized."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from raytune_ft.data.prepare import data_fingerprint, prepare, tokenizer_fingerprint
from raytune_ft.errors import UserError
from raytune_ft.modeling.sources import resolve_model_source
from raytune_ft.spec import validate_spec
from raytune_ft.tasks.base import IGNORE_INDEX

SFT = {"type": "causal-lm-sft", "prompt_template": "Q: {q}\n", "response_template": "{a}"}


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("llama"))


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spec_for(model: Path, data: Path, tmp_path: Path, task: dict, **data_extra: object):
    return validate_spec(
        {
            "name": "t",
            "model": {"name_or_path": str(model), "init": "random"},
            "task": task,
            "data": {"train": {"path": str(data)}, "max_length": 32, **data_extra},
            "storage": {"path": str(tmp_path / "runs")},
        }
    )


def problem(spec) -> str:
    with pytest.raises(UserError) as info:
        prepare(spec)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def qa(n: int = 40) -> list[dict]:
    return [{"q": f"question {i}", "a": f"answer {i}"} for i in range(n)]


def test_row_500_without_the_text_key_exits_2_before_ray(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(600)]
    rows[499] = {"txt": "typo", "label": 1}
    data = jsonl(tmp_path / "d.jsonl", rows)
    spec = {
        "name": "t",
        "model": {"name_or_path": "all-MiniLM-L6-v2"},
        "data": {"train": {"path": str(data)}},
        "storage": {"path": str(tmp_path / "runs")},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "raytune_ft", "train", str(tmp_path / "spec.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: d.jsonl:500: no column 'text' (this row has: label, txt); "
        "every row of data.train needs 'text', 'label'"
    )
    assert "Traceback" not in result.stderr and "ray" not in result.stdout.lower()
    assert time.monotonic() - started < 120  # refused in the pre-flight, not mid-run


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"q": "", "a": "x"}, "d.jsonl:7: column 'q' is empty; expected text"),
        ({"q": "x", "a": "  "}, "d.jsonl:7: column 'a' is empty; expected text"),
        ({"q": "x", "a": None}, "d.jsonl:7: column 'a' is empty; expected text"),
        ({"q": "x", "a": ["list"]}, "d.jsonl:7: column 'a' holds list ['list']; expected text"),
        ({"q": "x"}, "d.jsonl:7: no column 'a' (this row has: q); every row of data.train"),
    ],
)
def test_empty_or_missing_prompt_or_response_names_row_and_column(
    llama: Path, tmp_path: Path, row: dict, expected: str
) -> None:
    rows = qa()
    rows[6] = row
    spec = spec_for(llama, jsonl(tmp_path / "d.jsonl", rows), tmp_path, SFT)
    assert problem(spec).startswith(expected)


def test_a_template_naming_a_missing_column_is_refused_at_load(llama: Path, tmp_path: Path) -> None:
    task = SFT | {"response_template": "{answer}"}
    spec = spec_for(llama, jsonl(tmp_path / "d.jsonl", qa()), tmp_path, task)
    assert problem(spec) == (
        "d.jsonl:1: no column 'answer' (this row has: a, q); every row of data.train needs "
        "'q', 'answer'"
    )


def test_truncated_away_responses_are_dropped_and_counted_or_refused(
    llama: Path, tmp_path: Path
) -> None:
    rows = qa(60)
    for i in range(0, 60, 3):  # a third of the prompts fill max_length on their own
        rows[i]["q"] = "long " * 20 + str(i)
    data = jsonl(tmp_path / "d.jsonl", rows)
    right = SFT | {"truncation_side": "right"}
    prepared = prepare(spec_for(llama, data, tmp_path, right))
    dropped = prepared.meta["dropped_by_truncation"]
    assert sum(dropped.values()) == 20 and dropped["train"] > 0
    assert sum(prepared.sizes().values()) == 40
    for row in prepared["train"]:
        assert any(label != IGNORE_INDEX for label in row["labels"])
    # Left truncation cuts the prompt's start instead: every response survives.
    kept = prepare(spec_for(llama, data, tmp_path, SFT | {"truncation_side": "left"}))
    assert sum(kept.meta["dropped_by_truncation"].values()) == 0
    # When every row loses its response, nothing could be learned: refused.
    for row in rows:
        row["q"] = "long " * 20 + row["q"]
    data = jsonl(tmp_path / "all.jsonl", rows)
    message = problem(spec_for(llama, data, tmp_path, right))
    assert "lost every label token to truncation at data.max_length 32" in message


def test_a_non_numeric_regression_target_names_its_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("text,score\n" + "".join(f"s{i},{i / 10}\n" for i in range(30)) + "bad,n/a\n")
    spec = validate_spec(
        {
            "name": "t",
            "model": {"name_or_path": "all-MiniLM-L6-v2"},
            "task": {"type": "regression", "label_column": "score"},
            "data": {"train": {"path": str(path)}},
            "storage": {"path": str(tmp_path / "runs")},
        }
    )
    assert problem(spec) == "r.csv:32: 'score' is 'n/a'; expected a finite number"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("hello", "holds str, not a non-empty list"),
        ([{"role": "user", "content": "hi"}, "oops"], "message 1 is a str, not an object"),
        ([{"content": "hi"}], "message 0 has no role"),
        ([{"role": "user", "content": 3}], "message 0 (user) has no text content"),
        ([{"role": "user", "content": "hi"}], "no assistant message with content"),
    ],
)
def test_a_bad_messages_cell_names_its_row(
    llama: Path, tmp_path: Path, cell: object, expected: str
) -> None:
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    rows = [{"messages": good} for _ in range(20)]
    rows[2] = {"messages": cell}
    task = {"type": "causal-lm-sft", "messages_column": "messages"}
    spec = spec_for(llama, jsonl(tmp_path / "c.jsonl", rows), tmp_path, task)
    assert problem(spec).startswith(f"c.jsonl:3: column 'messages': {expected}; expected a list")


def test_chat_messages_learn_only_assistant_turns(llama: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    conversation = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "reverse: abc"},
        {"role": "assistant", "content": "cba"},
        {"role": "user", "content": "reverse: xy"},
        {"role": "assistant", "content": "yx"},
    ]
    rows = [{"messages": conversation}] + [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(30)
    ]
    task = {"type": "causal-lm-sft", "messages_column": "messages"}
    spec = spec_for(llama, jsonl(tmp_path / "c.jsonl", rows), tmp_path, task, max_length=128)
    prepared = prepare(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(llama))
    rows_out = [r for s in ("train", "validation", "test") for r in prepared[s]]
    first = next(r for r in rows_out if r["_source"] == "c.jsonl:1")
    learned = tokenizer.decode([t for t in first["labels"] if t != IGNORE_INDEX])
    # Both assistant turns with the end-of-turn token, nothing from system or user turns.
    assert learned == "cba</s>\nyx</s>\n"
    assert first["reference"] == "yx"  # generation answers the last user turn
    prompt = tokenizer.decode(first["prompt_ids"])
    assert prompt.endswith("<|user|>\nreverse: xy</s>\n<|assistant|>\n")


def test_prepared_data_is_cached_by_fingerprint_and_never_retokenized(
    llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raytune_ft.tasks.language_modeling import SftTask

    calls = []
    original = SftTask.tokenize
    monkeypatch.setattr(SftTask, "tokenize", lambda self, *a: calls.append(1) or original(self, *a))
    data = jsonl(tmp_path / "d.jsonl", qa())
    spec = spec_for(llama, data, tmp_path, SFT | {"packing": True})
    first = prepare(spec)
    tokenized = len(calls)
    assert tokenized > 0
    again = prepare(spec)
    assert again.path == first.path and len(calls) == tokenized  # a cache hit: no tokenizing
    assert again["train"]["input_ids"] == first["train"]["input_ids"]
    assert first.path.parent == (tmp_path / "runs" / "prepared").resolve()
    # Anything the result depends on gives a new folder: the data file, the task, the seed.
    time.sleep(0.01)
    jsonl(data, qa(41))
    changed = prepare(spec)
    assert changed.path != first.path and len(calls) > tokenized
    other = spec_for(llama, data, tmp_path, SFT | {"packing": False})
    assert data_fingerprint(other, _tokenizer(llama)) != changed.path.name


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def test_a_tokenizer_copy_fingerprints_the_same(llama: Path, tmp_path: Path) -> None:
    original = _tokenizer(llama)
    original.save_pretrained(tmp_path / "copy")
    assert tokenizer_fingerprint(_tokenizer(tmp_path / "copy")) == tokenizer_fingerprint(original)
    before = tokenizer_fingerprint(original)
    original(["some text"], truncation=True, max_length=4)  # stores truncation in the backend
    assert tokenizer_fingerprint(original) == before
    t5 = _tokenizer(ROOT / "experiments" / "models" / "tiny-t5")
    assert tokenizer_fingerprint(t5) == tokenizer_fingerprint(original)  # same char tokenizer
    bert = _tokenizer(Path(resolve_model_source("all-MiniLM-L6-v2")))
    assert tokenizer_fingerprint(bert) != tokenizer_fingerprint(original)


def test_parquet_text_json_and_hub_sources_read_with_row_sources(tmp_path: Path) -> None:
    from datasets import Dataset

    from raytune_ft.data.loading import read_source
    from raytune_ft.spec.sections import SourceSpec

    Dataset.from_list([{"text": "a", "label": 1}, {"text": "b", "label": 0}]).to_parquet(
        tmp_path / "d.parquet"
    )
    rows = read_source(SourceSpec(path=str(tmp_path / "d.parquet")))
    assert [(r["text"], r["_source"]) for r in rows] == [
        ("a", "d.parquet:row 1"),
        ("b", "d.parquet:row 2"),
    ]
    (tmp_path / "t.txt").write_text("first line\n\nthird line\n")
    rows = read_source(SourceSpec(path=str(tmp_path / "t.txt"), format="text"))
    assert [(r["text"], r["_source"]) for r in rows] == [
        ("first line", "t.txt:1"),
        ("third line", "t.txt:3"),
    ]
    (tmp_path / "a.json").write_text('[{"text": "x", "label": 1}, {"text": "y", "label": 0}]')
    rows = read_source(SourceSpec(path=str(tmp_path / "a.json")))
    assert [r["_source"] for r in rows] == ["a.json:item 1", "a.json:item 2"]
    # A hub dataset goes through load_dataset by name; a dataset folder is the offline stand-in
    # (users with internet name a hub id here).
    hub = tmp_path / "my-dataset"
    (hub / "data").mkdir(parents=True)
    jsonl(hub / "data" / "train.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(5)])
    rows = read_source(SourceSpec(hub={"name": str(hub), "split": "train[:3]"}), "data.train")
    assert [r["_source"] for r in rows][-1] == f"{hub}[train[:3]]:row 3" and len(rows) == 3
    with pytest.raises(UserError, match=r"data.train.hub: cannot load 'acme/no-such-dataset'"):
        read_source(SourceSpec(hub={"name": "acme/no-such-dataset"}), "data.train")
