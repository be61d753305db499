"""What `tune --resume` and `--extend` accept: the spec the sweep started with, unchanged but
for its budget (`sweep.num_samples`). Tune restores its own experiment state and keeps feeding
the remaining trials the stored spec's values; any other change would silently not apply (or
apply to half the trials)."""

from __future__ import annotations

from typing import Any

import yaml

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and scalars are leaves."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def changes(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, stored value, current value) for every field that differs."""
    old, new = flatten(stored), flatten(current)
    missing = object()
    return [
        (key, old.get(key, missing), new.get(key, missing))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
    ]


BUDGET = "sweep.num_samples"


def check_unchanged(
    spec: ExperimentSpec, stored_yaml: str, where: str, flag: str = "--resume"
) -> int:
    """Refuse to go on with a sweep under a spec that differs from the one it started with
    (the budget aside); one line per changed field, naming both values. Returns the stored
    budget (its num_samples)."""
    stored = yaml.safe_load(stored_yaml) or {}
    found = [c for c in changes(stored, spec.model_dump(mode="json")) if c[0] != BUDGET]
    budget = int((stored.get("sweep") or {}).get("num_samples", 0))
    if not found:
        return budget
    absent = "(absent)"

    def show(value: Any) -> str:
        return (
            absent
            if not isinstance(value, str | int | float | bool | list | type(None))
            else (
                yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            )
        )

    raise UserError(
        [
            f"{flag}: {key}: the sweep started with {show(old)}, the spec now says {show(new)}; "
            f"go on with the spec in {where} (only sweep.num_samples may change; a different "
            f"spec is a new sweep: drop {flag})"
            for key, old, new in found
        ]
    )
