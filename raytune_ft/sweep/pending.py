"""Why trials are not running: said once at the start (how many run at once, and why that
many), then whenever a trial or a trial's worker group waits on resources the cluster does
not have free (a GPU node still starting under an autoscaler, another job's workers).

Tune shows a waiting trial as PENDING and no more; Ray Train's worker group waits in a
placement group that Tune does not show at all.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from raytune_ft.launch.resources import Placement
from raytune_ft.spec.experiment import ExperimentSpec

CHECK_EVERY_S = 5.0
# Every trial is PENDING for a moment while Tune places it: only one still waiting at the
# next check is worth a line.
WAITING_AFTER_S = CHECK_EVERY_S
# A trial whose resources are free is PENDING while its process starts (importing torch and
# transformers took over 5 s on a busy 2-core machine): only a wait this long is news then.
STARTING_AFTER_S = 60.0


def _amounts(resources: dict[str, float]) -> str:
    hidden = ("memory", "object_store_memory")
    shown = {
        k: v
        for k, v in resources.items()
        if v and k not in hidden and not k.startswith(("node:", "accelerator_type:"))
    }
    return ", ".join(f"{v:g} {k}" for k, v in sorted(shown.items())) or "nothing"


def concurrency_line(spec: ExperimentSpec, placement: Placement, capacity: int) -> str:
    """How many trials run at once and why: the spec's limit, or what the cluster holds."""
    assert spec.sweep is not None
    scaling = spec.scaling
    worker = _amounts(scaling.worker_resources(placement.use_gpu))
    trial = f"{scaling.num_workers} worker{'s' if scaling.num_workers > 1 else ''} of {worker}"
    total = spec.sweep.total_trials
    if spec.sweep.max_concurrent_trials is not None:
        why = "sweep.max_concurrent_trials"
    else:
        held = placement.trial_capacity(spec)
        why = f"the cluster holds {held} trial{'s' if held != 1 else ''} of {trial} at once"
    waiting = "" if capacity >= total else f"; the other {total - capacity} wait their turn"
    return f"sweep: {capacity} of {total} trials at a time ({why}){waiting}"


def pending_reason(
    needs: dict[str, float], free: dict[str, float], what: str, reserved: bool = False
) -> tuple[str, float]:
    """One line (what is waiting, what it needs, what is free now) and how long it must
    have waited to be said: short at once when the cluster lacks something, else only after
    `STARTING_AFTER_S`. A `reserved` trial already holds its resources (Tune placed it and
    its process is starting), so the free resources say nothing about it."""
    if reserved:
        return (
            f"sweep: {what} is pending after {STARTING_AFTER_S:g} s: its {_amounts(needs)} "
            "are reserved, its process is slow to start",
            STARTING_AFTER_S,
        )
    short = {k: v for k, v in needs.items() if free.get(k, 0.0) + 1e-9 < v}
    available = _amounts({k: free.get(k, 0.0) for k in needs})
    has = f"it needs {_amounts(needs)}, the cluster has {available} free"
    if short:
        return f"sweep: {what} is pending: {has} (short of {_amounts(short)})", WAITING_AFTER_S
    return (
        f"sweep: {what} is pending after {STARTING_AFTER_S:g} s: {has} in all, so no single "
        "node has all of it free, or its process is slow to start",
        STARTING_AFTER_S,
    )


def unplaced_trials(pending: list[Any], waiting_groups: int) -> list[Any]:
    """The PENDING trials still waiting for resources. Tune binds a placement group to a
    trial only once the group is ready, so the waiting ones are not named anywhere; but it
    places trials in order, so with k of the trials' groups still waiting, the last k
    PENDING trials are the ones without resources (the others hold theirs and start)."""
    return pending[len(pending) - min(waiting_groups, len(pending)) :]


class PendingReasons:
    """A Tune callback (built lazily so this module imports without Ray) that prints why
    a trial or worker group still waits at the next check, once for each."""

    def __new__(cls, spec: ExperimentSpec, placement: Placement, capacity: int) -> Any:
        from ray.tune import Callback

        class _Callback(Callback):
            def __init__(self) -> None:
                self.said: set[str] = set()
                self.since: dict[str, float] = {}  # what is waiting -> first seen waiting
                self.next_check = 0.0
                print(concurrency_line(spec, placement, capacity), file=sys.stderr, flush=True)

            def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
                now = time.monotonic()
                if now < self.next_check:
                    return
                self.next_check = now + CHECK_EVERY_S
                waiting = _waiting(trials)
                self.since = {key: self.since.get(key, now) for key in waiting}
                for key, (line, after_s) in waiting.items():
                    if now - self.since[key] >= after_s and key not in self.said:
                        self.said.add(key)  # once per trial or group
                        print(line, file=sys.stderr, flush=True)

        return _Callback()


def _waiting(trials: list[Any]) -> dict[str, tuple[str, float]]:
    """What waits now (a trial, or a worker group's placement group), with its line and
    how long it must have waited to be said."""
    import ray
    from ray.util import placement_group_table

    pending = [t for t in trials if t.status == "PENDING"]
    table = placement_group_table()
    waiting = [g for g in table.values() if g.get("state") == "PENDING"]
    # A trial's own group has one bundle (its trainable, which holds a one-worker trial's
    # worker too); a multi-worker trial's worker group has one bundle per worker.
    trial_groups = sum(1 for g in waiting if len(g.get("bundles") or {}) == 1)
    groups = {
        group_id: g
        for group_id, g in table.items()
        if g.get("state") == "PENDING" and len(g.get("bundles") or {}) > 1
    }
    if not pending and not groups:
        return {}
    free = ray.available_resources()
    unplaced = {t.trial_id for t in unplaced_trials(pending, trial_groups)}
    lines = {}
    for trial in pending:
        needs = trial.placement_group_factory.required_resources
        what = f"trial {trial.trial_id}"
        lines[trial.trial_id] = pending_reason(needs, free, what, trial.trial_id not in unplaced)
    for group_id, group in groups.items():  # a multi-worker trial's worker group
        bundles = list(group["bundles"].values())
        needs: dict[str, float] = {}
        for bundle in bundles:
            for key, value in bundle.items():
                needs[key] = needs.get(key, 0.0) + value
        what = f"a worker group of {len(bundles)} workers"
        lines[str(group_id)] = pending_reason(needs, free, what)
    return lines
