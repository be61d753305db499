"""Which worker failures are retried, and the one line a failed run prints."""

from __future__ import annotations

import pytest
from ray.exceptions import RayTaskError
from ray.train import ControllerError, WorkerGroupError

from raytune_ft.errors import RunFailed, UserError
from raytune_ft.train.failures import (
    FailFastOnDeterministicErrors,
    NonRetryableError,
    describe,
    root_cause,
)


def test_deterministic_errors_are_not_retried_and_others_are() -> None:
    policy = FailFastOnDeterministicErrors()
    with pytest.raises(NonRetryableError):
        policy.after_exception(None, {1: ValueError("Target modules {'nope'} not found")})
    with pytest.raises(NonRetryableError):
        policy.after_exception(None, {0: UserError("peft.target_modules: bad")})
    # A lost worker, an OOM, a collective timeout: worth the retry Ray would make.
    policy.after_exception(None, {0: RuntimeError("CUDA out of memory")})
    policy.after_exception(None, {0: OSError("connection reset")})


def test_root_cause_sees_through_rays_wrappers() -> None:
    original = ValueError("Target modules {'nope'} not found in the base model.\nmore text")
    group = WorkerGroupError("Traceback (most recent call last): ...", {1: original, 0: original})
    assert root_cause(group) is original
    controller = ControllerError(group)
    assert root_cause(controller) is original
    # What a Tune trial's result.error looks like: the trial task's error around Train's.
    trial = RayTaskError("trial_driver", "Traceback ...", controller).as_instanceof_cause()
    assert root_cause(trial) is original
    assert describe(trial) == "ValueError: Target modules {'nope'} not found in the base model."


def test_a_run_failure_prints_the_root_cause_and_user_errors_exit_2() -> None:
    failed = RunFailed.from_exception("runs/x", WorkerGroupError("...", {0: RuntimeError("boom")}))
    assert str(failed) == "RuntimeError: boom (run folder: runs/x)" and not failed.bad_input
    bad = RunFailed.from_exception(
        "runs/x", ControllerError(WorkerGroupError("...", {0: UserError("data.x: wrong")}))
    )
    assert str(bad) == "data.x: wrong (run folder: runs/x)" and bad.bad_input


def test_the_deterministic_error_explains_a_run_whatever_its_rank() -> None:
    follow_on = RuntimeError("Connection closed by peer")  # rank 0 lost its collective peer
    real = ValueError("Target modules {'nope'} not found")
    group = WorkerGroupError("...", {0: follow_on, 1: real})
    assert root_cause(group) is real
    assert root_cause(WorkerGroupError("...", {0: follow_on, 1: OSError()})) is follow_on
