"""What the sweep says about trials that are not running yet, and why."""

from __future__ import annotations

from helpers import minimal_spec

from raytune_ft.launch.resources import NodeShape, Placement
from raytune_ft.spec import validate_spec
from raytune_ft.sweep.pending import (
    STARTING_AFTER_S,
    WAITING_AFTER_S,
    concurrency_line,
    pending_reason,
    unplaced_trials,
)

SPACE = {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}


def test_the_start_says_how_many_trials_run_at_once_and_why() -> None:
    spec = validate_spec(
        minimal_spec(scaling={"num_workers": 2}, sweep={"space": SPACE, "num_samples": 6})
    )
    four_cpus = Placement(False, [NodeShape("head", 4, 0, 1)], 1)
    assert concurrency_line(spec, four_cpus, 2) == (
        "sweep: 2 of 6 trials at a time (the cluster holds 2 trials of 2 workers of 1 CPU at "
        "once); the other 4 wait their turn"
    )
    limited = validate_spec(
        minimal_spec(sweep={"space": SPACE, "num_samples": 3, "max_concurrent_trials": 3})
    )
    assert concurrency_line(limited, four_cpus, 3) == (
        "sweep: 3 of 3 trials at a time (sweep.max_concurrent_trials)"
    )


def test_a_pending_trial_names_what_it_needs_and_what_is_short() -> None:
    line, after_s = pending_reason(
        {"CPU": 2.0, "GPU": 1.0},
        {"CPU": 6.0, "GPU": 0.0, "memory": 1e9, "node:127.0.0.1": 1.0},
        "trial 7f3a",
    )
    assert line == (
        "sweep: trial 7f3a is pending: it needs 2 CPU, 1 GPU, the cluster has 6 CPU free "
        "(short of 1 GPU)"
    )
    assert after_s == WAITING_AFTER_S  # said at the next check


def test_a_trial_whose_resources_are_free_is_said_only_after_a_long_wait() -> None:
    """Seen at the start of a sweep on a busy 2-core machine: both first trials PENDING for
    over 5 s while their processes imported torch, and a line said they were short of
    "a single node with all of it" with the CPU they needed free."""
    line, after_s = pending_reason({"CPU": 1.0}, {"CPU": 1.0}, "trial 85d9")
    assert after_s == STARTING_AFTER_S > WAITING_AFTER_S
    assert line == (
        "sweep: trial 85d9 is pending after 60 s: it needs 1 CPU, the cluster has 1 CPU free "
        "in all, so no single node has all of it free, or its process is slow to start"
    )


def test_a_trial_that_holds_its_resources_is_not_called_short() -> None:
    """Seen in the multinode test: the first trial's placement group held the head's only
    `trainer_slot` while its process started, and the line said that trial was short of the
    slot it held."""
    line, after_s = pending_reason(
        {"CPU": 1.0, "trainer_slot": 1.0}, {"CPU": 1.0}, "trial 25f86_00000", reserved=True
    )
    assert after_s == STARTING_AFTER_S
    assert line == (
        "sweep: trial 25f86_00000 is pending after 60 s: its 1 CPU, 1 trainer_slot are "
        "reserved, its process is slow to start"
    )


def test_the_last_pending_trials_are_the_ones_without_resources() -> None:
    pending = ["t0", "t1", "t2"]
    assert unplaced_trials(pending, 0) == []
    assert unplaced_trials(pending, 1) == ["t2"]
    assert unplaced_trials(pending, 2) == ["t1", "t2"]
    assert unplaced_trials(pending, 5) == pending  # other jobs' groups wait too
