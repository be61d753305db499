"""`tune --resume` takes only the spec the sweep started with."""

from __future__ import annotations

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.run_folder import spec_yaml
from raytune_ft.spec import validate_spec
from raytune_ft.sweep.resume import changes, check_unchanged

SWEEP = {"space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}}


def test_the_same_spec_resumes() -> None:
    spec = validate_spec(minimal_spec(sweep=SWEEP))
    check_unchanged(spec, spec_yaml(spec), "runs/x/spec.yaml")


def test_every_changed_field_is_named_with_both_values() -> None:
    started = validate_spec(minimal_spec(sweep=SWEEP))
    now = validate_spec(
        minimal_spec(
            train={"weight_decay": 0.2, "learning_rate": 1e-4},
            sweep=SWEEP | {"num_samples": 20},
        )
    )
    with pytest.raises(UserError) as info:
        check_unchanged(now, spec_yaml(started), "runs/x/spec.yaml", "--extend")
    tail = (
        "go on with the spec in runs/x/spec.yaml (only sweep.num_samples may change; a "
        "different spec is a new sweep: drop --extend)"
    )
    assert info.value.problems == [
        f"--extend: train.learning_rate: the sweep started with 5.0e-05, the spec now says "
        f"0.0001; {tail}",
        f"--extend: train.weight_decay: the sweep started with 0.01, the spec now says 0.2; {tail}",
    ]


def test_only_the_budget_may_change_and_the_stored_one_is_returned() -> None:
    started = validate_spec(minimal_spec(sweep=SWEEP | {"num_samples": 6}))
    for now in (3, 6, 20):
        spec = validate_spec(minimal_spec(sweep=SWEEP | {"num_samples": now}))
        assert check_unchanged(spec, spec_yaml(started), "runs/x/spec.yaml") == 6


def test_added_and_removed_fields_count_as_changes() -> None:
    found = changes({"a": {"b": 1}, "c": [1, 2]}, {"a": {"b": 1, "d": 2}, "c": [1, 3]})
    assert [(k, n) for k, _, n in found] == [("a.d", 2), ("c", [1, 3])]


def test_a_sweep_started_before_a_field_existed_resumes_when_the_field_is_at_its_default() -> None:
    """A sweep folder written by an earlier version lacks fields added since (here
    `sweep.retain`): at their defaults they are what that sweep ran with; set otherwise, they
    are a change like any other."""
    import yaml

    started = validate_spec(minimal_spec(sweep=SWEEP))
    older = yaml.safe_load(spec_yaml(started))
    del older["sweep"]["retain"]
    stored = yaml.safe_dump(older)
    check_unchanged(started, stored, "runs/x/spec.yaml")
    changed = validate_spec(minimal_spec(sweep=SWEEP | {"retain": {"exports": 1}}))
    with pytest.raises(UserError) as info:
        check_unchanged(changed, stored, "runs/x/spec.yaml")
    [problem] = info.value.problems
    assert problem.startswith(
        "--resume: sweep.retain.exports: the sweep started with (absent), the spec now says 1;"
    )
