"""`raytune-ft tune`: a Ray Tune sweep whose trials each run their own TorchTrainer."""

from __future__ import annotations

import itertools
import math
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_ft.errors import Interrupted, RunFailed, UserError
from raytune_ft.launch import interrupts
from raytune_ft.launch.local_ray import ray_session
from raytune_ft.launch.resources import Placement, check_trial_fits, plan_placement
from raytune_ft.modeling.estimate import memory_known, memory_problem
from raytune_ft.run_folder import spec_yaml
from raytune_ft.spec import validate_spec
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sweep_sections import SweepSpec
from raytune_ft.storage import (
    Location,
    StepLog,
    check_storage,
    latest_run,
    location_of,
    new_run,
)
from raytune_ft.sweep.oom import run_with_oom_retries
from raytune_ft.sweep.pending import PendingReasons
from raytune_ft.sweep.resume import absent_line, as_it_ran, check_unchanged, stored_form
from raytune_ft.sweep.retention import EndedTrial, failed_line, prune_after_sweep, start_line
from raytune_ft.sweep.space import (
    active_params,
    apply_params,
    joint_corners,
    trial_params,
    trial_spec,
)
from raytune_ft.sweep.tuner import (
    TUNE_DIR,
    continued_searcher,
    extension_name,
    load_grid,
    make_tuner,
    restore_tuner,
    trainable_with,
    tune_dirs,
)
from raytune_ft.train.export import exported
from raytune_ft.train.failures import describe, root_cause
from raytune_ft.train.policies import check_device_settings
from raytune_ft.train.runner import build_trainer, evaluate_remote, preflight

DRIVER_CPUS = 0.01  # a trial driver only waits on its TorchTrainer


@dataclass(frozen=True)
class SweepOutcome:
    run_dir: Location
    summary: dict[str, Any]


def trial_driver(
    params: dict[str, Any],
    base_spec: dict[str, Any],
    sweep_dir: str,
    use_gpu: bool,
    prepared_dir: str,
    check_memory: bool = True,
) -> None:
    """One Tune trial: the sampled params applied to the spec, then trained.

    A one-worker trial trains right here, in the trial's process (`in_process`): no worker
    group to start. A multi-worker trial runs a TorchTrainer whose TuneReportCallback turns
    each rank-0 report into a Tune result (the Ray Train V2 pattern), so schedulers see every
    evaluation either way and can stop the trial early.
    """
    from ray import tune

    # Spaces too large to check every combination up front are checked here, per sample: the
    # trial fails at once with the reason (Optuna records it as failed) instead of training.
    spec = validate_spec(trial_spec(base_spec, params))
    check_device_settings(spec, use_gpu)
    # A sample that cannot fit in this device's memory is pruned now, with the numbers
    # (unless the pre-flight checked every corner of the space against a known memory).
    if check_memory:
        too_big = memory_problem(spec, use_gpu, here=spec.scaling.num_workers == 1)
        if too_big is not None:
            raise UserError(f"pruned: {too_big}")
    trial_id = tune.get_context().get_trial_id()
    trial_dir = location_of(sweep_dir, spec.storage) / "trials" / trial_id
    prepared = _prepared_for(spec, base_spec, Path(prepared_dir))

    def attempt(candidate: ExperimentSpec, oom_retries: int) -> None:
        # The spec the trial really runs with (an out-of-memory retry changes the batching).
        (trial_dir / "spec.yaml").write_text(spec_yaml(candidate))
        if candidate.scaling.num_workers == 1:
            from raytune_ft.sweep.in_process import train_in_trial
            from raytune_ft.train.loop import WorkerArgs

            args = WorkerArgs(
                spec=candidate.model_dump(mode="json"),
                run_dir=trial_dir.uri,
                use_gpu=use_gpu,
                prepared_dir=str(prepared),
                evaluate_test=False,
                oom_retries=oom_retries,
            )
            train_in_trial(args)
            return
        from ray.tune.integration.ray_train import TuneReportCallback

        trainer = build_trainer(
            candidate,
            use_gpu,
            trial_dir,
            # A retry is a new Train run, not a resume of the one that ran out of memory.
            "ray-train" if oom_retries == 0 else f"ray-train-oom{oom_retries}",
            prepared,
            callbacks=[TuneReportCallback()],
            evaluate_test=False,
            oom_retries=oom_retries,
        )
        trainer.fit()

    def note(record: dict[str, Any]) -> None:  # the retry, in the trial's own log
        log = StepLog(trial_dir / "steps.jsonl")
        log.append(record)
        log.flush()

    run_with_oom_retries(spec, attempt, spec.sweep.oom_retries, note)


def trial_resources(
    base_spec: dict[str, Any], use_gpu: bool
) -> Callable[[dict[str, Any]], dict[str, float]]:
    """What Tune reserves for a trial, from its sampled params: a one-worker trial trains in
    its own process, so it holds the worker's CPUs and GPU share; a multi-worker trial's
    process only waits on its worker group, which asks for its own resources."""

    def resources(params: dict[str, Any]) -> dict[str, float]:
        try:
            spec = validate_spec(trial_spec(base_spec, params))
        except UserError:  # the trial fails at once with the reason (trial_driver)
            return {"CPU": DRIVER_CPUS}
        if spec.scaling.num_workers == 1:
            return spec.scaling.worker_resources(use_gpu)
        return {"CPU": DRIVER_CPUS}

    return resources


def _prepared_for(spec: ExperimentSpec, base_spec: dict[str, Any], prepared: Path) -> Path:
    """The sweep's prepared data, unless this trial samples a data or task field: then its own
    (prepared once per distinct value; concurrent trials wait on the cache's file lock)."""
    base = ExperimentSpec.model_validate(base_spec)
    if spec.data == base.data and spec.task == base.task and spec.model == base.model:
        return prepared
    from raytune_ft.data.prepare import prepare, publish_prepared

    path = prepare(spec).path
    publish_prepared(spec, path)
    return path


def trial_concurrency(spec: ExperimentSpec, placement: Placement) -> int:
    """How many trials run at once: the spec's limit, else as many as the cluster can hold
    at its largest (declared node groups count at their maximum size)."""
    assert spec.sweep is not None
    if spec.sweep.max_concurrent_trials is not None:
        return spec.sweep.max_concurrent_trials
    return min(placement.trial_capacity(spec), spec.sweep.total_trials)


def run_sweep(spec: ExperimentSpec, resume: bool = False, extend: int = 0) -> SweepOutcome:
    """Run the spec's sweep; `resume` goes on with the latest one of this spec, `extend` adds
    that many trials to it (resuming it first if it was interrupted)."""
    if spec.sweep is None:
        raise UserError("sweep: the spec has no sweep section; use `raytune-ft train` instead")
    started = time.time()
    data = preflight(spec)
    checked = _check_space(spec, len(data["train"]))

    root = check_storage(spec.storage)
    continuing = resume or extend > 0
    sweep_dir = latest_run(root, spec.name, "tune") if continuing else None
    flag = "--resume" if resume else "--extend"
    if continuing and (sweep_dir is None or not tune_dirs(sweep_dir)):
        raise UserError(f"{flag}: no earlier sweep of {spec.name!r} under {spec.storage.path}")
    target = spec.sweep.num_samples
    absent: list[str] = []  # sections the sweep started without (`as_it_ran`)
    if continuing:
        stored = sweep_dir / "spec.yaml"
        stored_yaml = stored.read_text()
        budget = check_unchanged(spec, stored_yaml, stored.uri, flag)
        spec, absent = as_it_ran(spec, stored_yaml)
        for key in absent:
            print(absent_line(key), file=sys.stderr, flush=True)
        target = max(budget, spec.sweep.num_samples) + extend
        if target > budget:
            _check_extensible(spec, flag)

    with ray_session(spec.cluster, checked.most_cpus):
        placement = plan_placement(spec)
        checked.check_fits(placement)
        use_gpu = placement.use_gpu
        if sweep_dir is None:  # only now: a refused placement leaves no empty folder behind
            sweep_dir = new_run(root, spec.name, "tune")
        # The sweep's spec, with the budget it now has (an extension raises it first, so an
        # extension interrupted before its first trial is still owed on --resume).
        budgeted = _with_budget(spec, target)
        (sweep_dir / "spec.yaml").write_text(stored_form(budgeted, absent))
        interrupts.note_run_dir(sweep_dir)
        base_spec = spec.model_dump(mode="json")
        trainable = trainable_with(
            trial_driver,
            trial_resources(base_spec, placement.use_gpu),
            base_spec=base_spec,
            sweep_dir=sweep_dir.uri,
            use_gpu=use_gpu,
            prepared_dir=str(data.path),
            check_memory=not checked.every_point_fits,
        )
        capacity = trial_concurrency(spec, placement)
        pending = PendingReasons(spec, placement, capacity)
        retention = start_line(spec)
        if retention:
            print(retention, file=sys.stderr, flush=True)
        try:
            grids = _run_experiments(
                spec,
                trainable,
                sweep_dir,
                continuing,
                budgeted.sweep.total_trials,  # type: ignore[union-attr]
                capacity,
                checked.max_t,
                pending,
            )
            best = _best_result(grids, spec)
            summary = _summarize(spec, grids, best, sweep_dir, checked.max_t)
            retained = _retain_after_sweep(spec, sweep_dir, grids)
            if retained:
                print(retained, file=sys.stderr, flush=True)
            best_spec = validate_spec(
                apply_params(
                    spec.model_dump(mode="json"), summary["best_config"] | _batching_run(best)
                )
            )
            best_model = _publish_best_model(best, spec, sweep_dir)
            summary["test_metrics"] = (
                evaluate_remote(
                    best_spec,
                    best_model,
                    use_gpu,
                    _prepared_for(best_spec, spec.model_dump(mode="json"), data.path),
                )
                if len(data["test"])
                else {}
            )
        except KeyboardInterrupt:
            raise Interrupted(interrupts.received() or signal.SIGINT, sweep_dir) from None
        except Interrupted:
            raise
        except Exception as exc:  # e.g. every trial errored: one line and the folder
            raise RunFailed.from_exception(sweep_dir, exc) from exc
    (sweep_dir / "best-spec.yaml").write_text(spec_yaml(best_spec, drop={"sweep"}))
    summary["best_spec"] = (sweep_dir / "best-spec.yaml").uri
    summary["best_model"] = best_model.uri
    summary["storage"] = sweep_dir.uri
    summary["wall_time_s"] = round(time.time() - started, 1)
    (sweep_dir / "summary.json").write_json(summary)
    return SweepOutcome(sweep_dir, summary)


def _run_experiments(
    spec: ExperimentSpec,
    trainable: Any,
    sweep_dir: Location,
    continuing: bool,
    target_trials: int,
    capacity: int,
    max_t: float,
    pending: Any,
) -> list[Any]:
    """Each of the sweep's Tune experiments' results, oldest first: the earlier ones as they
    ended, the newest resumed (or a new sweep's first), then an extension for any trials the
    budget still owes."""
    grids = []
    experiments = tune_dirs(sweep_dir) if continuing else []
    for finished in experiments[:-1]:
        grids.append(load_grid(finished))
    if experiments:
        tuner = restore_tuner(spec, trainable, experiments[-1])
    else:
        assert spec.sweep is not None
        tuner = make_tuner(
            spec,
            trainable,
            sweep_dir,
            name=TUNE_DIR,
            num_samples=spec.sweep.samples,
            max_concurrent=capacity,
            max_t=max_t,
            callbacks=[pending],
        )
    grids.append(_fit(tuner, sweep_dir))
    owed = target_trials - sum(len(grid) for grid in grids)
    if owed > 0:
        index = len(experiments) or 1
        previous = experiments[-1] if experiments else sweep_dir / TUNE_DIR
        limit = min(capacity, owed)
        tuner = make_tuner(
            spec,
            trainable,
            sweep_dir,
            name=extension_name(index),
            num_samples=owed,
            max_concurrent=limit,
            max_t=max_t,
            searcher=continued_searcher(spec, previous, index, limit),
            callbacks=[pending],
        )
        grids.append(_fit(tuner, sweep_dir))
    return grids


def _fit(tuner: Any, sweep_dir: Location) -> Any:
    with interrupts.tune_running():
        grid = tuner.fit()
    if interrupts.received() is not None:  # Tune stopped gracefully and saved its state
        raise Interrupted(interrupts.received(), sweep_dir)
    return grid


def _with_budget(spec: ExperimentSpec, num_samples: int) -> ExperimentSpec:
    assert spec.sweep is not None
    if spec.sweep.num_samples == num_samples:
        return spec
    return spec.model_copy(
        update={"sweep": spec.sweep.model_copy(update={"num_samples": num_samples})}
    )


def _check_extensible(spec: ExperimentSpec, flag: str) -> None:
    """A grid has no more points to give; the rest can draw more trials."""
    assert spec.sweep is not None
    if spec.sweep.search.algorithm == "grid" or spec.sweep.grid_size > 1:
        raise UserError(
            f"{flag}: a grid sweep has no more points to add (sweep.num_samples repeats the "
            "whole grid); expected search.algorithm optuna, hyperopt, bohb or random without "
            "grid keys, or a new sweep"
        )


def _batching_run(result: Any) -> dict[str, Any]:
    """The micro-batch and accumulation a trial ended with, when out-of-memory retries
    changed them from what it sampled (the best spec must not run out of memory again)."""
    metrics = result.metrics or {}
    if not metrics.get("oom_retries"):
        return {}
    return {
        "train.micro_batch_size": int(metrics["micro_batch_size"]),
        "train.gradient_accumulation_steps": int(metrics["gradient_accumulation_steps"]),
    }


def _publish_best_model(best: Any, spec: ExperimentSpec, sweep_dir: Location) -> Location:
    """Copy the best trial's best export to the sweep's `best-model/` (the trial keeps its
    own: a later `--resume` may pick another trial)."""
    trial_dir = sweep_dir / "trials" / str(best.metrics["trial_id"])
    found = exported(trial_dir, "best")
    if found is None:
        raise RuntimeError(f"the best trial exported no model: {trial_dir.uri}")
    target = sweep_dir / "best-model"
    if target.exists():
        target.remove()
    found[0].copy_to(target)
    return target


MAX_CHECKED_COMBINATIONS = 4096


@dataclass(frozen=True)
class SpaceCheck:
    """What checking the space found: the most any trial runs in the scheduler's time unit
    (its max_t), the extreme trials (spec, label) for placement checks, and the most CPUs one
    trial asks for (a local Ray is sized to hold it)."""

    max_t: float
    candidates: list[tuple[ExperimentSpec, str]]
    # Every joint corner was validated against a known device memory: memory grows with
    # each numeric key and choices are corners themselves, so every sample fits too.
    every_point_fits: bool = False

    @property
    def most_cpus(self) -> int:
        return max(c.scaling.num_workers * c.scaling.cpus_per_worker for c, _ in self.candidates)

    def check_fits(self, placement: Placement) -> None:
        """Refuse a space whose extreme trials could never run whole on the cluster."""
        for candidate, label in self.candidates:
            check_trial_fits(candidate, placement, label)


def _check_space(spec: ExperimentSpec, num_train_examples: int) -> SpaceCheck:
    """Check that the space makes valid specs, before any trial starts.

    Each bound of each key alone first (the clearest message; a conditional key with its
    conditions met), then every combination of bounds and choices the searcher can produce
    (keys that are valid alone may not be valid together, e.g. zero_stage 0 with optimizer
    offload; keys whose conditions fail drop out). The most time any trial can run (ASHA's
    max_t) is over those joint combinations: a sampled batch size or epoch count changes it.
    """
    sweep = spec.sweep
    assert sweep is not None
    base = spec.model_dump(mode="json")
    unit = sweep.scheduler.time_unit
    corners = {key: dist.corners for key, dist in sweep.space.items()}
    alone = (
        (
            active_params(sweep, base, _with_conditions_met(sweep, key, value)),
            f'sweep.space."{key}" value {value!r}',
        )
        for key, values in corners.items()
        for value in values
    )
    points = (
        (active_params(sweep, base, point), f"sweep.points_to_evaluate[{i}]")
        for i, point in enumerate(sweep.points_to_evaluate)
    )
    found: list[tuple[ExperimentSpec, str]] = [(spec, "the spec")]
    _validated(base, itertools.chain(alone, points), found)
    joint = joint_corners(sweep, base, MAX_CHECKED_COMBINATIONS) if len(corners) >= 2 else None
    if joint is not None:
        combined = (
            (
                params,
                "sweep.space: " + ", ".join(f"{k}={v!r}" for k, v in params.items()) + " together",
            )
            for params in joint
        )
        _validated(base, combined, found, max_problems=5)
    # (Larger spaces: each trial validates its own sample, in trial_driver.)
    most = max(time_budget(c, num_train_examples, unit) for c, _ in found)
    every_point = len(corners) < 2 or joint is not None
    return SpaceCheck(most, found, every_point and memory_known(spec))


def _with_conditions_met(sweep: SweepSpec, key: str, value: Any) -> dict[str, Any]:
    """{key: value} plus, for each space key its `when` names, a value that meets it."""
    chosen = {key: value}
    pending = [key]
    while pending:
        for other, wanted in (sweep.space[pending.pop()].when or {}).items():
            if other in sweep.space and other not in chosen:
                chosen[other] = wanted[0] if isinstance(wanted, list) else wanted
                pending.append(other)
    return chosen


def time_budget(spec: ExperimentSpec, num_train_examples: int, unit: str) -> float:
    """How much of the scheduler's time unit one full trial of this spec runs."""
    schedule = spec.schedule(num_train_examples)
    if unit == "evaluations":
        return schedule.num_evaluations
    if unit == "steps":
        return schedule.total_steps
    if unit == "epochs":
        return schedule.total_steps / schedule.steps_per_epoch
    # tokens: every sequence at its longest (an upper bound; exact when packed)
    train = spec.train
    batch = train.micro_batch_size * train.gradient_accumulation_steps * spec.scaling.num_workers
    return schedule.total_steps * batch * spec.data.max_length


def _validated(
    base: dict[str, Any],
    candidates: Iterable[tuple[dict[str, Any], str]],
    found: list[tuple[ExperimentSpec, str]],
    max_problems: int | None = None,
) -> None:
    """Validate each (params, label) candidate into `found`, or raise every problem (up to
    `max_problems`) as UserError lines prefixed by the candidate's label."""
    problems: list[str] = []
    for params, label in candidates:
        try:
            candidate = validate_spec(apply_params(base, params))
            too_big = memory_problem(candidate)  # None where the device's memory is unknown
            if too_big is not None:
                raise UserError(too_big)
            found.append((candidate, label))
        except UserError as exc:
            problems += [f"{label}: {line}" for line in exc.problems]
            if max_problems is not None and len(problems) >= max_problems:
                break
    if problems:
        raise UserError(problems)


def _best_result(grids: list[Any], spec: ExperimentSpec) -> Any:
    """The trial whose best evaluation is best, over every evaluation of every experiment of
    the sweep, read from each trial's own history (as the summary reads it). Ray's
    `get_best_result(scope="all")` can name another trial under PBT/PB2, whose exploited
    trials change history mid-run (seen in our CI; reported upstream as ray#45021, #42628)."""
    reported = [
        result
        for grid in grids
        for result in grid
        if result.metrics_dataframe is not None
        and spec.metric in result.metrics_dataframe
        and result.metrics_dataframe[spec.metric].notna().any()
    ]
    if reported:
        pick = max if spec.metric_mode == "max" else min
        return pick(reported, key=lambda result: _best_value(result, spec))
    results = [result for grid in grids for result in grid]
    failed = [r.error for r in results if r.error is not None]
    if not failed:
        raise RuntimeError(f"no trial reported {spec.metric}")
    # Name the real cause, not the missing metric it led to.
    cause = root_cause(failed[0])
    reason = f"{len(failed)} of {len(results)} trials failed, the first with: {describe(cause)}"
    if isinstance(cause, UserError):
        raise UserError(f"no trial reported {spec.metric}: {reason}") from None
    raise RuntimeError(f"no trial reported {spec.metric}: {reason}") from None


def _retain_after_sweep(spec: ExperimentSpec, sweep_dir: Location, grids: list[Any]) -> str | None:
    """`sweep.retain` over the whole sweep; the line to say. Never fails the sweep."""
    try:
        ended = _ended_trials(grids, spec, sweep_dir)
    except Exception as exc:  # the results are read again here; any failure just keeps files
        return failed_line(exc)
    return prune_after_sweep(spec, sweep_dir, ended)


def _ended_trials(
    grids: list[Any], spec: ExperimentSpec, sweep_dir: Location
) -> dict[str, list[EndedTrial]]:
    """Each Tune experiment's trials that ended without an error, with their best values (what
    `_best_result` ranks by), by the experiment's folder name."""
    ended: dict[str, list[EndedTrial]] = {}
    for grid in grids:
        for result in grid:
            trial_id = (result.metrics or {}).get("trial_id")
            if result.error is not None or trial_id is None:
                continue
            reported = (
                result.metrics_dataframe is not None
                and spec.metric in result.metrics_dataframe
                and result.metrics_dataframe[spec.metric].notna().any()
            )
            value = _best_value(result, spec) if reported else None
            folder = Location(result.filesystem, result.path, sweep_dir.scheme)
            ended.setdefault(folder.parent.name, []).append(
                EndedTrial(str(trial_id), folder, value)
            )
    return ended


def _best_value(result: Any, spec: ExperimentSpec) -> float:
    values = result.metrics_dataframe[spec.metric]
    return float(values.max() if spec.metric_mode == "max" else values.min())


def _summarize(
    spec: ExperimentSpec, grids: list[Any], best: Any, sweep_dir: Location, max_t: float
) -> dict[str, Any]:
    import pandas as pd

    metric, sweep = spec.metric, spec.sweep
    assert sweep is not None
    # One row per trial at its best evaluation, plus how the trial ended (its last report).
    frames = [
        grid.get_dataframe(filter_metric=metric, filter_mode=spec.metric_mode) for grid in grids
    ]
    frame = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else frames[0]
    )
    counts = {"finished": 0, "stopped_early": 0, "errored": 0}
    ends = {}
    results = [result for grid in grids for result in grid]
    for result in results:
        last = result.metrics or {}
        if result.error is not None:
            ended = "errored"
        elif last.get("finished"):
            ended = "finished"
        else:
            ended = "stopped_early"
        counts[ended] += 1
        ends[last.get("trial_id")] = (ended, last.get("training_iteration"), last.get("step"))
    if len(frame):
        unknown = (None, None, None)
        rows = [ends.get(t, unknown) for t in frame["trial_id"]]
        frame["ended"], frame["evaluations"], frame["last_step"] = (
            list(c) for c in zip(*rows, strict=True)
        )
    (sweep_dir / "results.csv").write_text(frame.to_csv(index=False))
    return {
        "name": spec.name,
        "metric": metric,
        "mode": spec.metric_mode,
        "best_validation": _best_value(best, spec),
        # The spec fields the best trial set (section choices decoded, inactive keys left out).
        "best_config": {
            k: _plain(v)
            for k, v in trial_params(sweep, spec.model_dump(mode="json"), best.config).items()
        },
        "best_trial_path": best.path,
        "trials": counts | {"total": len(results)},
        # Tune experiments: the first, then one per extension (`--extend`).
        "experiments": len(grids),
        "time_unit": sweep.scheduler.time_unit,
        "max_t": max_t,
    }


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)
