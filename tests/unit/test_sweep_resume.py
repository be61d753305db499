"""`tune --resume` takes only the spec the sweep started with."""

from __future__ import annotations

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.run_folder import spec_yaml
from raytune_ft.spec import validate_spec
from raytune_ft.sweep.resume import (
    MISSING,
    absent_line,
    as_it_ran,
    changes,
    check_unchanged,
    schema_default,
    stored_form,
)

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
    `sweep.retain`): at their defaults they are no change; set otherwise, they are a change
    like any other. And the sweep goes on as it ran: before `sweep.retain`, trials kept every
    file, so a resumed older sweep keeps them too (its folder's spec stays without it)."""
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

    going_on, absent = as_it_ran(started, stored)
    assert absent == ["sweep.retain"]
    assert (going_on.sweep.retain.exports, going_on.sweep.retain.checkpoints) == (None, None)
    assert absent_line("sweep.retain") == (
        "sweep: sweep.retain: absent when this sweep started; it goes on as it ran "
        "({checkpoints: null, exports: null})"
    )
    kept = stored_form(going_on, absent)
    assert "retain" not in yaml.safe_load(kept)["sweep"]
    check_unchanged(started, kept, "runs/x/spec.yaml")  # the next resume is accepted too
    # A sweep that started with the section goes on with it as it is.
    assert as_it_ran(changed, spec_yaml(changed)) == (changed, [])


def test_a_default_inside_the_task_section_is_the_specs_own_task_types() -> None:
    """`task` is a union of sections: multi-label's label column defaults to `labels`,
    classification's to `label`."""
    assert schema_default("task.label_column", {"task.type": "multi-label"}) == "labels"
    assert schema_default("task.label_column", {"task.type": "classification"}) == "label"
    assert schema_default("sweep.retain", {}) == {"exports": 3, "checkpoints": 0}
    assert schema_default("model.name_or_path") is MISSING  # required: no default
    assert schema_default("no.such.field") is MISSING
    # So an older multi-label sweep's spec without the field resumes at its default, and a
    # classification default in a multi-label spec is a change.
    assert (
        changes(
            {"task": {"type": "multi-label"}},
            {"task": {"type": "multi-label", "label_column": "labels"}},
        )
        == []
    )
    assert (
        changes(
            {"task": {"type": "multi-label"}},
            {"task": {"type": "multi-label", "label_column": "label"}},
        )
        != []
    )
