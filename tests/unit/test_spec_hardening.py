"""Adversarial specs: bounded parsing, repeated keys, --set merging and blame. Exit 2, one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import load_spec
from raytune_ft.spec.bounded_yaml import MAX_DEPTH

BASE = "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(UserError) as info:
        load_spec(path, overrides)
    return info.value.problems


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return BASE + "\n".join(lines) + "\n"


def nested_laughs(levels: int = 9) -> str:
    """Each anchor's aliases one list deeper: counted by node, not by the innermost list."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [[{', '.join([f'*a{i - 1}'] * 10)}]]")
    return BASE + "\n".join(lines) + "\n"


def alias_chain(links: int = 60) -> str:
    """Small and shallow as written, deep once each alias is expanded."""
    lines = ["c0: &c0 [1]"]
    for i in range(1, links):
        lines.append(f"c{i}: &c{i} " + "[" * 25 + f"*c{i - 1}" + "]" * 25)
    return BASE + "\n".join(lines) + "\n"


def run_validate(spec: Path | str) -> subprocess.CompletedProcess[str]:
    # A real process with a hard time-out: a parser that hangs or eats memory fails the test.
    return subprocess.run(
        [sys.executable, "-m", "raytune_ft", "validate", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (billion_laughs(), ":9: expands to more than 100,000 values through aliases"),
        (BASE + 'labels: &a ["x", *a]\n', ":4: alias *a refers to a node that contains it"),
        (BASE + "deep: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deep"),
        (
            BASE + "deep:\n" + "".join(" " * i + "a:\n" for i in range(1, 60)) + " " * 60 + "1\n",
            f"nested too deep (over {MAX_DEPTH} levels)",
        ),
        (BASE + "x: *nowhere\n", ":4: alias *nowhere has no anchor &nowhere before it"),
        (nested_laughs(), ":9: expands to more than 100,000 values through aliases"),
        (alias_chain(), ":6: nested too deep (over 32 levels)"),
        (BASE + "seed: 2020-02-30\n", ": a value YAML cannot build: day is out of range"),
        (BASE + "seed: " + "9" * 5000 + "\n", ": a value YAML cannot build: Exceeds the limit"),
        (
            BASE + "x: &x {a: 1}\ny: &y {a: 2}\ntrain: {<<: *x, <<: *y}\n",
            ":6: train.<<: written twice in one mapping",
        ),
    ],
    ids=[
        "billion-laughs",
        "recursive-alias",
        "deep-lists",
        "deep-maps",
        "undefined-alias",
        "nested-laughs",
        "alias-chain-depth",
        "impossible-date",
        "huge-integer",
        "two-merge-keys",
    ],
)
def test_hostile_yaml_exits_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    out = run_validate(path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr[-2000:]
    assert out.stderr.startswith(f"error: {path}")


def test_dev_zero_and_huge_files_are_refused(tmp_path: Path) -> None:
    out = run_validate("/dev/zero")
    assert out.returncode == 2
    assert (
        out.stderr
        == "error: /dev/zero: larger than 1024 KiB; expected a YAML spec (data belongs in data files the spec names)\n"
    )
    big = write(tmp_path, BASE + "# " + "x" * (1 << 20) + "\n")
    assert problems(big) == [
        f"{big}: larger than 1024 KiB; expected a YAML spec (data belongs in data files the spec names)"
    ]


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + "train:\n  learning_rate: 1.0e-4\n  epochs: 2\n  learning_rate: 3.0e-4\n",
    )
    assert problems(path) == [
        f"{path}:7: train.learning_rate: written twice in one mapping (lines 5 and 7); keep one"
    ]
    path = write(tmp_path, BASE + "train: {epochs: 2}\nseed: 1\ntrain: {epochs: 3}\n")
    assert problems(path) == [
        f"{path}:6: train: written twice in one mapping (lines 4 and 6); keep one"
    ]


def test_merge_keys_and_anchors_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + "x-defaults: &d {epochs: 2, learning_rate: 1.0e-4}\ntrain:\n  <<: *d\n  epochs: 5\n",
    )
    # x-defaults is not a spec field: the anchor parses, then validation names the unknown key.
    assert problems(path) == [f"{path}:4: x-defaults: unknown field"]
    spec_with_alias = write(tmp_path, BASE + "train: {<<: {epochs: 2}, learning_rate: 0.001}\n")
    spec = load_spec(spec_with_alias)
    assert (spec.train.epochs, spec.train.learning_rate) == (2, 0.001)


def test_a_mapping_set_merges_into_its_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        yaml.safe_dump(
            minimal_spec(train={"learning_rate": 3e-4, "micro_batch_size": 8, "eval_every": 7})
        ),
    )
    spec = load_spec(path, ["train={epochs: 2}"])
    assert spec.train.epochs == 2
    assert (spec.train.learning_rate, spec.train.micro_batch_size, spec.train.eval_every) == (
        3e-4,
        8,
        7,
    )
    spec = load_spec(path, ["train={early_stopping: {patience: 3}}", "train.epochs=4"])
    assert spec.train.early_stopping.patience == 3 and spec.train.learning_rate == 3e-4
    # A list or scalar still replaces.
    spec = load_spec(path, ["peft.target_modules=[query]", "peft.target_modules=[value]"])
    assert spec.peft.target_modules == ["value"]


def test_sweep_space_set_takes_the_rest_of_the_key_as_one_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        yaml.safe_dump(minimal_spec(sweep={"space": {"train.epochs": {"choice": [1, 2]}}})),
    )
    spec = load_spec(path, ["sweep.space.train.learning_rate={loguniform: [1.0e-5, 1.0e-3]}"])
    assert set(spec.sweep.space) == {"train.epochs", "train.learning_rate"}
    # A distribution is a value: setting it replaces the old one rather than mixing keys.
    spec = load_spec(path, ["sweep.space.train.epochs={int: [1, 3]}"])
    assert spec.sweep.space["train.epochs"].int == (1, 3)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("foo.bar=2", "--set foo.bar=2: foo: unknown field"),
        (
            "sweep.space.x.y={choice: [1]}",
            "--set sweep.space.x.y={choice: [1]}: sweep.space.\"x.y\": no spec field 'x' there; "
            "expected a dotted path such as train.learning_rate",
        ),
        (
            "sweep.space.train.epochs=3",
            '--set sweep.space.train.epochs=3: sweep.space."train.epochs": expected one of',
        ),
        ("train.epochs=[1, *a]", "--set train.epochs:1: alias *a has no anchor &a before it"),
    ],
)
def test_set_problems_blame_the_set(tmp_path: Path, override: str, expected: str) -> None:
    path = write(tmp_path, BASE)
    lines = problems(path, [override])
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_a_set_value_is_bounded_too(tmp_path: Path) -> None:
    items = ["&a0 lol"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = "[" + ", ".join(items) + "]"
    path = write(tmp_path, BASE)
    assert "expands to more than 100,000 values" in problems(path, [f"data.labels={bomb}"])[0]
    deep = "[" * 100 + "]" * 100
    assert "nested too deep" in problems(path, [f"data.labels={deep}"])[0]


def test_a_merging_set_is_blamed_only_for_what_it_wrote(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "train:\n  learning_rate: -1\n")
    assert problems(path, ["train={epochs: 3}"]) == [
        f"{path}:5: train.learning_rate: Input should be greater than 0 (got -1)"
    ]
    assert problems(path, ["train={learning_rate: 0}"]) == [
        "--set train={learning_rate: 0}: train.learning_rate: Input should be greater than 0 "
        "(got 0)"
    ]


def test_merging_into_a_sweep_replaces_space_entries_whole(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + "sweep:\n  space:\n    train.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}\n"
        "    train.epochs: {choice: [1, 2]}\n",
    )
    spec = load_spec(path, ["sweep={space: {train.learning_rate: {choice: [0.0001]}}}"])
    assert spec.sweep.space["train.learning_rate"].choice == [0.0001]
    assert spec.sweep.space["train.epochs"].choice == [1, 2]  # the other entry stays
