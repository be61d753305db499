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
from raytune_ft.run_folder import spec_yaml
from raytune_ft.spec import validate_spec
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sections import Distribution
from raytune_ft.storage import Location, check_storage, latest_run, location_of, new_run
from raytune_ft.sweep.registry import make_scheduler, make_searcher
from raytune_ft.sweep.space import apply_params, param_space
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
    spec = validate_spec(apply_params(base_spec, params))
    check_device_settings(spec, use_gpu)
    trial_id = tune.get_context().get_trial_id()
    trial_dir = location_of(sweep_dir, spec.storage) / "trials" / trial_id
    spec_file = trial_dir / "spec.yaml"
    if not spec_file.exists():
        spec_file.write_text(spec_yaml(spec))
    prepared = _prepared_for(spec, base_spec, Path(prepared_dir))
    if spec.scaling.num_workers == 1:
        from raytune_ft.sweep.in_process import train_in_trial
        from raytune_ft.train.loop import WorkerArgs

        args = WorkerArgs(
            spec=spec.model_dump(mode="json"),
            run_dir=trial_dir.uri,
            use_gpu=use_gpu,
            prepared_dir=str(prepared),
            evaluate_test=False,
        )
        train_in_trial(args)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = build_trainer(
        spec,
        use_gpu,
        trial_dir,
        "ray-train",
        prepared,
        callbacks=[TuneReportCallback()],
        evaluate_test=False,
    )
    trainer.fit()


def trial_resources(
    base_spec: dict[str, Any], use_gpu: bool
) -> Callable[[dict[str, Any]], dict[str, float]]:
    """What Tune reserves for a trial, from its sampled params: a one-worker trial trains in
    its own process, so it holds the worker's CPUs and GPU share; a multi-worker trial's
    process only waits on its worker group, which asks for its own resources."""

    def resources(params: dict[str, Any]) -> dict[str, float]:
        try:
            spec = validate_spec(apply_params(base_spec, params))
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
    return min(placement.trial_capacity(spec), spec.sweep.num_samples)


def run_sweep(spec: ExperimentSpec, resume: bool = False) -> SweepOutcome:
    from ray import tune

    if spec.sweep is None:
        raise UserError("sweep: the spec has no sweep section; use `raytune-ft train` instead")
    started = time.time()
    data = preflight(spec)
    evaluations_per_trial = _check_space(spec, len(data["train"]))

    root = check_storage(spec.storage)
    sweep_dir = latest_run(root, spec.name, "tune") if resume else None
    if resume and (sweep_dir is None or not (sweep_dir / TUNE_DIR).exists()):
        raise UserError(f"--resume: no earlier sweep of {spec.name!r} under {spec.storage.path}")

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
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(spec.sweep.space),
                tune_config=tune.TuneConfig(
                    metric=spec.metric,
                    mode=spec.metric_mode,
                    search_alg=make_searcher(spec, trial_concurrency(spec, placement)),
                    scheduler=make_scheduler(spec, evaluations_per_trial),
                    num_samples=spec.sweep.num_samples,
                    # A warm trial process (imports done, CUDA up) takes the next trial;
                    # not when trials run worker groups, which a stopped trial may still hold.
                    reuse_actors=_one_worker_trials(spec),
                ),
                run_config=tune.RunConfig(
                    name=TUNE_DIR,
                    storage_path=sweep_dir.path,
                    storage_filesystem=sweep_dir.fs,
                    # A one-worker trial that dies restarts from its last checkpoint here
                    # (a worker group restarts inside its TorchTrainer instead).
                    failure_config=tune.FailureConfig(max_failures=spec.scaling.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.train.checkpoint.keep),
                ),
            )
        try:
            with interrupts.tune_running():
                grid = tuner.fit()
            if interrupts.received() is not None:  # Tune stopped gracefully and saved its state
                raise Interrupted(interrupts.received(), sweep_dir)
            best = _best_result(grid, spec)
            summary = _summarize(spec, grid, best, sweep_dir, evaluations_per_trial)
            best_spec = validate_spec(
                apply_params(spec.model_dump(mode="json"), summary["best_config"])
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


def _one_worker_trials(spec: ExperimentSpec) -> bool:
    assert spec.sweep is not None
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


def _check_space(spec: ExperimentSpec, num_train_examples: int) -> int:
    """Check that the space makes valid specs, before any trial starts.

    Each bound of each key alone first (the clearest message), then every combination of
    bounds and choices the searcher can produce (keys that are valid alone may not be valid
    together, e.g. zero_stage 0 with optimizer offload). Returns the most evaluations any
    trial can run (ASHA's max_t): a sampled batch size or epoch count changes it.
    """
    assert spec.sweep is not None
    base = spec.model_dump(mode="json")
    corners = {key: _corner_values(dist) for key, dist in spec.sweep.space.items()}
    alone = (
        ({key: value}, f'sweep.space."{key}" value {value!r}')
        for key, values in corners.items()
        for value in values
    )
    most = max(
        spec.schedule(num_train_examples).num_evaluations,
        _most_evaluations(base, alone, num_train_examples),
    )
    if len(corners) < 2 or math.prod(len(v) for v in corners.values()) > MAX_CHECKED_COMBINATIONS:
        return most  # too many to list: each trial validates its own sample (trial_driver)
    combinations = (
        dict(zip(corners, values, strict=True)) for values in itertools.product(*corners.values())
    )
    combined = (
        (params, "sweep.space: " + ", ".join(f"{k}={v!r}" for k, v in params.items()) + " together")
        for params in combinations
    )
    return max(most, _most_evaluations(base, combined, num_train_examples, max_problems=5))


def _most_evaluations(
    base: dict[str, Any],
    candidates: Iterable[tuple[dict[str, Any], str]],
    num_train_examples: int,
    max_problems: int | None = None,
) -> int:
    """Validate each (params, label) candidate; the most evaluations among them, or every
    problem (up to `max_problems`) as UserError lines prefixed by the candidate's label."""
    problems: list[str] = []
    most = 0
    for params, label in candidates:
        try:
            candidate = validate_spec(apply_params(base, params))
        except UserError as exc:
            problems += [f"{label}: {line}" for line in exc.problems]
            if max_problems is not None and len(problems) >= max_problems:
                break
            continue
        most = max(most, candidate.schedule(num_train_examples).num_evaluations)
    if problems:
        raise UserError(problems)
    return most


def _corner_values(dist: Distribution) -> list[Any]:
    """The values of a distribution that the checks try: its choices, or its two bounds."""
    return list(next(iter(dist.model_dump().values())))


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
    spec: ExperimentSpec, grid: Any, best: Any, sweep_dir: Location, evaluations_per_trial: int
) -> dict[str, Any]:
    metric = spec.metric
    frame = grid.get_dataframe(filter_metric=metric, filter_mode=spec.metric_mode)
    (sweep_dir / "results.csv").write_text(frame.to_csv(index=False))
    counts = {"finished": 0, "stopped_early": 0, "errored": 0}
    for result in grid:
        if result.error is not None:
            counts["errored"] += 1
        elif result.metrics and result.metrics.get("finished"):
            counts["finished"] += 1
        else:
            counts["stopped_early"] += 1
    best_value = best.metrics_dataframe[metric]
    best_value = best_value.max() if spec.metric_mode == "max" else best_value.min()
    return {
        "name": spec.name,
        "metric": metric,
        "mode": spec.metric_mode,
        "best_validation": float(best_value),
        "best_config": {k: _plain(v) for k, v in best.config.items()},
        "best_trial_path": best.path,
        "trials": counts | {"total": len(grid)},
        "evaluations_per_trial": evaluations_per_trial,
    }


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)
