"""sweep.space (dotted spec fields -> distributions) as what Ray Tune's searchers take, and a
trial's sampled values back as spec fields."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

from raytune_ft.spec.loading import set_dotted
from raytune_ft.spec.sweep_sections import (
    Distribution,
    Grid,
    IntRange,
    LogInt,
    LogUniform,
    QUniform,
    SweepSpec,
    Uniform,
)


def _by_index(dist: Distribution) -> bool:
    """Choices that hold mappings (whole sections) are sampled as their index: searchers
    such as Optuna take only scalar categories."""
    return bool(dist.values) and any(isinstance(v, dict) for v in dist.values)


def to_tune_domain(dist: Distribution, as_grid: bool = False) -> Any:
    from ray import tune

    if dist.values is not None:
        values = list(range(len(dist.values))) if _by_index(dist) else dist.values
        return (
            tune.grid_search(values) if as_grid or isinstance(dist, Grid) else tune.choice(values)
        )
    if isinstance(dist, LogUniform):
        return tune.loguniform(*dist.loguniform)
    if isinstance(dist, Uniform):
        return tune.uniform(*dist.uniform)
    if isinstance(dist, QUniform):
        return tune.quniform(*dist.quniform)
    if isinstance(dist, IntRange):
        return tune.randint(dist.int[0], dist.int[1] + 1)  # spec ranges are inclusive
    if isinstance(dist, LogInt):
        return tune.lograndint(dist.logint[0], dist.logint[1] + 1)
    raise TypeError(f"unknown distribution {dist!r}")


def param_space(sweep: SweepSpec) -> dict[str, Any]:
    """Every key as a Tune domain (a conditional key too: it is dropped from the trial's spec
    when its condition does not hold, see `trial_params`)."""
    as_grid = sweep.search.algorithm == "grid"
    return {key: to_tune_domain(dist, as_grid) for key, dist in sweep.space.items()}


def encode_point(sweep: SweepSpec, point: dict[str, Any]) -> dict[str, Any]:
    """A points_to_evaluate entry in the searcher's terms (section choices as indexes)."""
    return {
        key: sweep.space[key].values.index(value) if _by_index(sweep.space[key]) else value
        for key, value in point.items()
    }


def decode_params(sweep: SweepSpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as spec values: plain Python scalars, section choices decoded."""
    decoded = {}
    for key, value in sampled.items():
        if key not in sweep.space:
            continue
        value = value.item() if hasattr(value, "item") else value  # numpy scalars
        dist = sweep.space[key]
        if _by_index(dist):
            value = dist.values[int(value)]
        elif isinstance(dist, QUniform):  # BOHB drops the step; round it back
            low, _, q = dist.quniform
            value = low + round((value - low) / q) * q
        elif isinstance(dist, IntRange | LogInt):
            value = round(value)
        decoded[key] = value
    return decoded


def active_params(sweep: SweepSpec, base: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """The chosen values whose `when` holds (the others leave the spec's value alone)."""
    return {key: v for key, v in chosen.items() if sweep.active(key, chosen, base)}


def joint_corners(
    sweep: SweepSpec, base: dict[str, Any], limit: int
) -> list[dict[str, Any]] | None:
    """Every distinct combination of the keys' corners (bounds and choices), conditions
    applied; None when there are more than `limit` (then each trial is checked alone)."""
    corners = {key: dist.corners for key, dist in sweep.space.items()}
    if math.prod(len(v) for v in corners.values()) > limit:
        return None
    seen: list[dict[str, Any]] = []
    for values in itertools.product(*corners.values()):
        params = active_params(sweep, base, dict(zip(corners, values, strict=True)))
        if params not in seen:
            seen.append(params)
    return seen


def trial_params(sweep: SweepSpec, base: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """The spec fields a trial sets, from what its searcher sampled."""
    return active_params(sweep, base, decode_params(sweep, sampled))


def trial_spec(base: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """A trial's spec (dumped) from the sweep's spec (dumped) and its sampled values."""
    sweep = SweepSpec.model_validate(base["sweep"])
    params = trial_params(sweep, base, sampled)
    if sweep.scheduler.pauses_trials:
        # A paused trial resumes, and a PBT round hands a lagging trial a leader's state, from
        # the newest checkpoint: one at every evaluation.
        params["train.checkpoint.every_evals"] = 1
    return apply_params(base, params)


def optuna_distribution(dist: Distribution) -> Any:
    """The distribution in Optuna's terms (section choices as indexes)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if dist.values is not None:
        return CategoricalDistribution(
            list(range(len(dist.values))) if _by_index(dist) else dist.values
        )
    if isinstance(dist, LogUniform):
        return FloatDistribution(*dist.loguniform, log=True)
    if isinstance(dist, Uniform):
        return FloatDistribution(*dist.uniform)
    if isinstance(dist, QUniform):
        low, high, q = dist.quniform
        return FloatDistribution(low, high, step=q)
    if isinstance(dist, IntRange):
        return IntDistribution(*dist.int)
    if isinstance(dist, LogInt):
        return IntDistribution(*dist.logint, log=True)
    raise TypeError(f"unknown distribution {dist!r}")


def optuna_space(sweep: SweepSpec, base: dict[str, Any]) -> Callable[[Any], None]:
    """Optuna's define-by-run space: a conditional key is asked for only when its condition
    holds, so TPE models it only where it means something. Public `suggest_*` calls only:
    Ray records the trial's config from them."""
    return OptunaSpace(sweep, base)


class OptunaSpace:
    """The define-by-run space as a picklable object (not a closure): Ray's OptunaSearch
    saves itself, space included, with plain pickle, and `--extend` restores it."""

    def __init__(self, sweep: SweepSpec, base: dict[str, Any]):
        self.sweep = sweep
        self.base = base

    def __call__(self, trial: Any) -> None:
        chosen: dict[str, Any] = {}
        for key in self.sweep.sampling_order():
            dist = self.sweep.space[key]
            if self.sweep.active(key, chosen, self.base):
                value = _suggest(trial, key, dist)
                chosen[key] = dist.values[value] if _by_index(dist) else value


def _suggest(trial: Any, key: str, dist: Distribution) -> Any:
    if dist.values is not None:
        indexes = list(range(len(dist.values)))
        return trial.suggest_categorical(key, indexes if _by_index(dist) else dist.values)
    if isinstance(dist, LogUniform):
        return trial.suggest_float(key, *dist.loguniform, log=True)
    if isinstance(dist, Uniform):
        return trial.suggest_float(key, *dist.uniform)
    if isinstance(dist, QUniform):
        low, high, q = dist.quniform
        return trial.suggest_float(key, low, high, step=q)
    if isinstance(dist, IntRange):
        return trial.suggest_int(key, *dist.int)
    if isinstance(dist, LogInt):
        return trial.suggest_int(key, *dist.logint, log=True)
    raise TypeError(f"unknown distribution {dist!r}")


def apply_params(spec_dict: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of a dumped spec with each dotted key set to its value; a mapping value
    replaces the whole section the key names."""
    data = copy.deepcopy(spec_dict)
    for dotted, value in params.items():
        plain = value.item() if hasattr(value, "item") else value  # numpy scalars from searchers
        set_dotted(data, tuple(dotted.split(".")), copy.deepcopy(plain))
    return data
