"""sweep.space (dotted spec fields -> distributions) as a Ray Tune param space."""

from __future__ import annotations

import copy
from typing import Any

from raytune_ft.spec.loading import set_dotted
from raytune_ft.spec.sections import Choice, Distribution, IntRange, LogUniform, Uniform


def to_tune_domain(dist: Distribution) -> Any:
    from ray import tune

    if isinstance(dist, LogUniform):
        return tune.loguniform(*dist.loguniform)
    if isinstance(dist, Uniform):
        return tune.uniform(*dist.uniform)
    if isinstance(dist, IntRange):
        return tune.randint(dist.int[0], dist.int[1] + 1)  # spec ranges are inclusive
    if isinstance(dist, Choice):
        return tune.choice(dist.choice)
    raise TypeError(f"unknown distribution {dist!r}")


def param_space(space: dict[str, Distribution]) -> dict[str, Any]:
    return {key: to_tune_domain(dist) for key, dist in space.items()}


def apply_params(spec_dict: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of a dumped spec with each dotted key set to its sampled value."""
    data = copy.deepcopy(spec_dict)
    for dotted, value in params.items():
        plain = value.item() if hasattr(value, "item") else value  # numpy scalars from searchers
        set_dotted(data, tuple(dotted.split(".")), plain)
    return data
