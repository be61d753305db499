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
            train={"weight_decay": 0.2},
            sweep=SWEEP | {"num_samples": 20},
        )
    )
    with pytest.raises(UserError) as info:
        check_unchanged(now, spec_yaml(started), "runs/x/spec.yaml")
    assert info.value.problems == [
        "--resume: sweep.num_samples: the sweep started with 8, the spec now says 20; resume "
        "with the spec in runs/x/spec.yaml (a different spec is a new sweep: drop --resume)",
        "--resume: train.weight_decay: the sweep started with 0.01, the spec now says 0.2; "
        "resume with the spec in runs/x/spec.yaml (a different spec is a new sweep: drop "
        "--resume)",
    ]


def test_added_and_removed_fields_count_as_changes() -> None:
    found = changes({"a": {"b": 1}, "c": [1, 2]}, {"a": {"b": 1, "d": 2}, "c": [1, 3]})
    assert [(k, n) for k, _, n in found] == [("a.d", 2), ("c", [1, 3])]
