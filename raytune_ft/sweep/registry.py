"""Searchers and schedulers by name; each imports its library only when chosen."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.sweep.space import encode_point, optuna_space, to_tune_domain

# Result keys the trial reports at each evaluation, per scheduler time unit.
TIME_ATTRS = {
    "evaluations": "training_iteration",
    "steps": "step",
    "epochs": "epoch",
    "tokens": "tokens_seen",
}


def _missing(algorithm: str, package: str) -> UserError:
    return UserError(
        f"sweep.search.algorithm: {algorithm} needs the {package} package, which is not "
        f"installed here; pip install {package} (or pick optuna or random)"
    )


def _optuna(spec: ExperimentSpec, points: list[dict[str, Any]]) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sweep = spec.sweep
    assert sweep is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    conditional = sweep.has_conditions
    sampler = optuna.samplers.TPESampler(
        seed=spec.search_seed,
        n_startup_trials=sweep.tpe_startup_trials,
        multivariate=sweep.search.tpe_multivariate,
        # Keys that are only sometimes asked for are modelled per group of keys asked together.
        group=sweep.search.tpe_multivariate and conditional,
    )
    return OptunaSearch(
        space=optuna_space(sweep, spec.model_dump(mode="json")) if conditional else None,
        metric=spec.metric,
        mode=spec.metric_mode,
        sampler=sampler,
        points_to_evaluate=points or None,
    )


def _hyperopt(spec: ExperimentSpec, points: list[dict[str, Any]]) -> Any:
    try:  # Ray's module imports without it and fails only inside the constructor
        import hyperopt  # noqa: F401
    except ImportError:
        raise _missing("hyperopt", "hyperopt") from None
    from ray.tune.search.hyperopt import HyperOptSearch

    assert spec.sweep is not None
    return HyperOptSearch(
        metric=spec.metric,
        mode=spec.metric_mode,
        points_to_evaluate=points or None,
        random_state_seed=spec.search_seed,
        n_initial_points=spec.sweep.tpe_startup_trials,
    )


def _bohb(spec: ExperimentSpec, points: list[dict[str, Any]]) -> Any:
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError:
        raise _missing("bohb", "hpbandster and ConfigSpace") from None
    from ray.tune.search.bohb import TuneBOHB

    return TuneBOHB(
        metric=spec.metric,
        mode=spec.metric_mode,
        points_to_evaluate=points or None,
        seed=spec.search_seed,
    )


SEARCHERS: dict[str, Callable[[ExperimentSpec, list[dict[str, Any]]], Any]] = {
    "optuna": _optuna,
    "hyperopt": _hyperopt,
    "bohb": _bohb,
}


@dataclass(frozen=True)
class Searcher:
    algorithm: Any  # what TuneConfig.search_alg takes
    has_own_space: bool  # built with its space (Tuner's param_space must then be empty)


def startup_line(spec: ExperimentSpec, num_samples: int) -> str | None:
    """What a new TPE searcher does with this experiment's trials, said once at its start."""
    sweep = spec.sweep
    if sweep is None or sweep.tpe_startup_trials is None:
        return None
    startup, algorithm = sweep.tpe_startup_trials, sweep.search.algorithm
    given = len(sweep.points_to_evaluate)
    counting = f", counting the {given} given in points_to_evaluate" if given else ""
    if startup >= num_samples:
        return (
            f"sweep: {algorithm} TPE never models the results: its start-up of {startup} "
            f"trials{counting} covers all {num_samples} (sweep.search.startup_trials)"
        )
    if algorithm == "optuna":  # Optuna counts ended trials: with several at once, more are random
        return (
            f"sweep: optuna TPE draws at random until {startup} of {num_samples} trials have "
            f"ended{counting}, then models the results (sweep.search.startup_trials)"
        )
    return (
        f"sweep: {algorithm} TPE draws its first {startup} of {num_samples} trials at "
        f"random{counting}, then models the results (sweep.search.startup_trials)"
    )


def make_searcher(spec: ExperimentSpec, max_concurrent: int) -> Searcher:
    """The searcher, limited to `max_concurrent` running trials, seeded.

    The limit is applied here, not through TuneConfig.max_concurrent_trials, which Tune
    silently ignores (with a warning) for the random search generator.
    """
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    sweep = spec.sweep
    assert sweep is not None
    points = [encode_point(sweep, p) for p in sweep.points_to_evaluate]
    name = sweep.search.algorithm
    if name in ("random", "grid"):
        generator = BasicVariantGenerator(
            points_to_evaluate=points or None,
            random_state=spec.search_seed,
            max_concurrent=max_concurrent,
        )
        return Searcher(generator, has_own_space=False)
    if name not in SEARCHERS:
        raise ValueError(f"unknown search algorithm {name!r}")
    limited = ConcurrencyLimiter(SEARCHERS[name](spec, points), max_concurrent=max_concurrent)
    return Searcher(limited, has_own_space=name == "optuna" and sweep.has_conditions)


def make_scheduler(spec: ExperimentSpec, max_t: float) -> Any:
    """The scheduler, in the spec's time unit; `max_t` is the most any trial in the space can
    run in that unit (over joint combinations of the space: see runner._check_space)."""
    sweep = spec.sweep
    assert sweep is not None
    chosen = sweep.scheduler
    time_attr = TIME_ATTRS[chosen.time_unit]
    max_t = max(max_t, chosen.grace_period)
    if chosen.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr=time_attr,
            max_t=max_t,
            grace_period=chosen.grace_period,
            reduction_factor=chosen.reduction_factor,
        )
    if chosen.name == "hyperband":
        if sweep.search.algorithm == "bohb":
            from ray.tune.schedulers import HyperBandForBOHB as HyperBand
        else:
            from ray.tune.schedulers import HyperBandScheduler as HyperBand
        # HyperBand's max_t is an integer count of its time unit.
        return HyperBand(
            time_attr=time_attr,
            max_t=math.ceil(max_t),
            reduction_factor=chosen.reduction_factor,
        )
    if chosen.name == "median":
        from ray.tune.schedulers import MedianStoppingRule

        return MedianStoppingRule(
            time_attr=time_attr,
            grace_period=chosen.grace_period,
            min_samples_required=3,
        )
    if chosen.name == "pbt":
        from ray.tune.schedulers import PopulationBasedTraining

        return PopulationBasedTraining(
            time_attr=time_attr,
            perturbation_interval=chosen.perturbation_interval,
            hyperparam_mutations={k: to_tune_domain(sweep.space[k]) for k in sweep.mutable_keys},
            quantile_fraction=chosen.quantile_fraction,
            resample_probability=chosen.resample_probability,
            synch=chosen.synch,
        )
    if chosen.name == "pb2":
        from ray.tune.schedulers.pb2 import PB2

        return PB2(
            time_attr=time_attr,
            perturbation_interval=chosen.perturbation_interval,
            hyperparam_bounds={k: sweep.space[k].corners for k in sweep.mutable_keys},
            quantile_fraction=chosen.quantile_fraction,
            synch=chosen.synch,
        )
    if chosen.name == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {chosen.name!r}")
