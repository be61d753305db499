"""`raytune-ft tune`: a Ray Tune sweep whose trials each run their own TorchTrainer."""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_ft.errors import Interrupted, RunFailed, UserError
from raytune_ft.launch import interrupts
from raytune_ft.launch.local_ray import ray_session
from raytune_ft.launch.resources import Placement, plan_placement
from raytune_ft.modeling.estimate import memory_problem
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
from raytune_ft.sweep.registry import make_scheduler, make_searcher
from raytune_ft.sweep.resume import check_unchanged
from raytune_ft.sweep.space import (
    active_params,
    apply_params,
    param_space,
    trial_params,
    trial_spec,
)
from raytune_ft.sweep.trackers import tracker_callbacks
from raytune_ft.train.export import exported
from raytune_ft.train.failures import describe, root_cause
from raytune_ft.train.policies import check_device_settings
from raytune_ft.train.runner import build_trainer, evaluate_remote, preflight

TUNE_DIR = "ray-tune"
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
    # A sample that cannot fit in this device's memory is pruned now, with the numbers.
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


def run_sweep(spec: ExperimentSpec, resume: bool = False) -> SweepOutcome:
    from ray import tune

    if spec.sweep is None:
        raise UserError("sweep: the spec has no sweep section; use `raytune-ft train` instead")
    started = time.time()
    data = preflight(spec)
    max_t = _check_space(spec, len(data["train"]))

    root = check_storage(spec.storage)
    sweep_dir = latest_run(root, spec.name, "tune") if resume else None
    if resume and (sweep_dir is None or not (sweep_dir / TUNE_DIR).exists()):
        raise UserError(f"--resume: no earlier sweep of {spec.name!r} under {spec.storage.path}")
    if resume:
        stored = sweep_dir / "spec.yaml"
        check_unchanged(spec, stored.read_text(), stored.uri)

    cpus = spec.scaling.num_workers * spec.scaling.cpus_per_worker
    with ray_session(spec.cluster, cpus):
        placement = plan_placement(spec)
        use_gpu = placement.use_gpu
        if sweep_dir is None:  # only now: a refused placement leaves no empty folder behind
            sweep_dir = new_run(root, spec.name, "tune")
            (sweep_dir / "spec.yaml").write_text(spec_yaml(spec))
        interrupts.note_run_dir(sweep_dir)
        base_spec = spec.model_dump(mode="json")
        trainable = tune.with_resources(
            tune.with_parameters(
                trial_driver,
                base_spec=base_spec,
                sweep_dir=sweep_dir.uri,
                use_gpu=use_gpu,
                prepared_dir=str(data.path),
            ),
            _as_placement(trial_resources(base_spec, use_gpu)),
        )
        if resume:
            tuner = tune.Tuner.restore(
                (sweep_dir / TUNE_DIR).path,
                trainable=trainable,
                resume_errored=True,
                storage_filesystem=sweep_dir.fs,
            )
        else:
            searcher = make_searcher(spec, trial_concurrency(spec, placement))
            tuner = tune.Tuner(
                trainable,
                # A searcher that holds its own space (Optuna's conditional one) gets none here.
                param_space={} if searcher.has_own_space else param_space(spec.sweep),
                tune_config=tune.TuneConfig(
                    metric=spec.metric,
                    mode=spec.metric_mode,
                    search_alg=searcher.algorithm,
                    scheduler=make_scheduler(spec, max_t),
                    num_samples=spec.sweep.samples,
                    # A warm trial process (imports done, CUDA up) takes the next trial;
                    # not when trials run worker groups, which a stopped trial may still hold.
                    reuse_actors=_reuse_trial_processes(spec),
                ),
                run_config=tune.RunConfig(
                    name=TUNE_DIR,
                    storage_path=sweep_dir.path,
                    storage_filesystem=sweep_dir.fs,
                    # A one-worker trial that dies restarts from its last checkpoint here
                    # (a worker group restarts inside its TorchTrainer instead).
                    failure_config=tune.FailureConfig(max_failures=spec.scaling.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=_checkpoints_kept(spec)),
                    callbacks=tracker_callbacks(spec, sweep_dir),
                ),
            )
        try:
            with interrupts.tune_running():
                grid = tuner.fit()
            if interrupts.received() is not None:  # Tune stopped gracefully and saved its state
                raise Interrupted(interrupts.received(), sweep_dir)
            best = _best_result(grid, spec)
            summary = _summarize(spec, grid, best, sweep_dir, max_t)
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


# PBT copies another trial's checkpoint a moment after that trial reported it, and HyperBand
# resumes a paused trial from its own: with too few kept, Tune deletes them first (its warning
# says <= 2 is unsafe).
KEPT_FOR_PAUSED_TRIALS = 4


def _checkpoints_kept(spec: ExperimentSpec) -> int:
    assert spec.sweep is not None
    keep = spec.train.checkpoint.keep
    return max(keep, KEPT_FOR_PAUSED_TRIALS) if spec.sweep.scheduler.pauses_trials else keep


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


def _reuse_trial_processes(spec: ExperimentSpec) -> bool:
    """One-worker trials reuse a warm process; not under PBT/PB2, which restart trials under
    new configs from other trials' checkpoints."""
    assert spec.sweep is not None
    if spec.sweep.scheduler.is_population:
        return False
    return spec.scaling.num_workers == 1 and "scaling.num_workers" not in spec.sweep.space


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


def _as_placement(resources: Callable[[dict[str, Any]], dict[str, float]]) -> Any:
    """Tune takes per-trial resources as a function returning a PlacementGroupFactory."""
    from ray.tune import PlacementGroupFactory

    return lambda params: PlacementGroupFactory([resources(params)])


MAX_CHECKED_COMBINATIONS = 4096


def _check_space(spec: ExperimentSpec, num_train_examples: int) -> float:
    """Check that the space makes valid specs, before any trial starts.

    Each bound of each key alone first (the clearest message; a conditional key with its
    conditions met), then every combination of bounds and choices the searcher can produce
    (keys that are valid alone may not be valid together, e.g. zero_stage 0 with optimizer
    offload; keys whose conditions fail drop out). Returns the most any trial can run in the
    scheduler's time unit (its max_t), over those joint combinations: a sampled batch size or
    epoch count changes it.
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
    most = max(
        time_budget(spec, num_train_examples, unit),
        _most_time(base, itertools.chain(alone, points), num_train_examples, unit),
    )
    if len(corners) < 2 or math.prod(len(v) for v in corners.values()) > MAX_CHECKED_COMBINATIONS:
        return most  # too many to list: each trial validates its own sample (trial_driver)
    seen: list[dict[str, Any]] = []
    for values in itertools.product(*corners.values()):
        params = active_params(sweep, base, dict(zip(corners, values, strict=True)))
        if params not in seen:
            seen.append(params)
    combined = (
        (params, "sweep.space: " + ", ".join(f"{k}={v!r}" for k, v in params.items()) + " together")
        for params in seen
    )
    return max(most, _most_time(base, combined, num_train_examples, unit, max_problems=5))


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


def _most_time(
    base: dict[str, Any],
    candidates: Iterable[tuple[dict[str, Any], str]],
    num_train_examples: int,
    unit: str,
    max_problems: int | None = None,
) -> float:
    """Validate each (params, label) candidate; the most time among them, or every problem
    (up to `max_problems`) as UserError lines prefixed by the candidate's label."""
    problems: list[str] = []
    most = 0.0
    for params, label in candidates:
        try:
            candidate = validate_spec(apply_params(base, params))
            too_big = memory_problem(candidate)  # None where the device's memory is unknown
            if too_big is not None:
                raise UserError(too_big)
        except UserError as exc:
            problems += [f"{label}: {line}" for line in exc.problems]
            if max_problems is not None and len(problems) >= max_problems:
                break
            continue
        most = max(most, time_budget(candidate, num_train_examples, unit))
    if problems:
        raise UserError(problems)
    return most


def _best_result(grid: Any, spec: ExperimentSpec) -> Any:
    """The trial whose best evaluation is best (scope='all': over every evaluation)."""
    try:
        return grid.get_best_result(metric=spec.metric, mode=spec.metric_mode, scope="all")
    except RuntimeError as exc:
        failed = [r.error for r in grid if r.error is not None]
        if not failed:
            raise RuntimeError(f"no trial reported {spec.metric}: {exc}") from None
        # Name the real cause, not the missing metric it led to.
        cause = root_cause(failed[0])
        reason = f"{len(failed)} of {len(grid)} trials failed, the first with: {describe(cause)}"
        if isinstance(cause, UserError):
            raise UserError(f"no trial reported {spec.metric}: {reason}") from None
        raise RuntimeError(f"no trial reported {spec.metric}: {reason}") from None


def _summarize(
    spec: ExperimentSpec, grid: Any, best: Any, sweep_dir: Location, max_t: float
) -> dict[str, Any]:
    metric, sweep = spec.metric, spec.sweep
    assert sweep is not None
    # One row per trial at its best evaluation, plus how the trial ended (its last report).
    frame = grid.get_dataframe(filter_metric=metric, filter_mode=spec.metric_mode)
    counts = {"finished": 0, "stopped_early": 0, "errored": 0}
    ends = {}
    for result in grid:
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
    best_value = best.metrics_dataframe[metric]
    best_value = best_value.max() if spec.metric_mode == "max" else best_value.min()
    return {
        "name": spec.name,
        "metric": metric,
        "mode": spec.metric_mode,
        "best_validation": float(best_value),
        # The spec fields the best trial set (section choices decoded, inactive keys left out).
        "best_config": {
            k: _plain(v)
            for k, v in trial_params(sweep, spec.model_dump(mode="json"), best.config).items()
        },
        "best_trial_path": best.path,
        "trials": counts | {"total": len(grid)},
        "time_unit": sweep.scheduler.time_unit,
        "max_t": max_t,
    }


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)
