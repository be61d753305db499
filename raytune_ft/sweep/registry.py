"""Searchers and schedulers by name; imports happen only for the one chosen."""

from __future__ import annotations

from typing import Any

from raytune_ft.spec.experiment import ExperimentSpec


def make_searcher(spec: ExperimentSpec, max_concurrent: int) -> Any:
    """The searcher, limited to `max_concurrent` running trials.

    The limit is applied here, not through TuneConfig.max_concurrent_trials, which Tune
    silently ignores (with a warning) for the random search generator.
    """
    assert spec.sweep is not None
    name = spec.sweep.search.algorithm
    if name == "optuna":
        import optuna
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        searcher = OptunaSearch(
            sampler=optuna.samplers.TPESampler(seed=spec.search_seed),
            metric=spec.metric,
            mode=spec.metric_mode,
        )
        return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    if name == "random":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=spec.search_seed, max_concurrent=max_concurrent)
    raise ValueError(f"unknown search algorithm {name!r}")


def make_scheduler(spec: ExperimentSpec, evaluations_per_trial: int) -> Any:
    assert spec.sweep is not None
    chosen = spec.sweep.scheduler
    if chosen.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # One training_iteration per evaluation report; max_t = a full trial's evaluations.
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max(evaluations_per_trial, chosen.grace_period),
            grace_period=chosen.grace_period,
            reduction_factor=chosen.reduction_factor,
        )
    if chosen.name == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {chosen.name!r}")
