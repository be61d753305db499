"""What `tune --resume` accepts: the spec the sweep started with, unchanged. Tune restores
its own experiment state and keeps feeding the remaining trials the stored spec's values;
a changed spec would silently not apply (or apply to half the trials)."""

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


def check_unchanged(spec: ExperimentSpec, stored_yaml: str, where: str) -> None:
    """Refuse to resume a sweep under a spec that differs from the one it started with; one
    line per changed field, naming both values."""
    stored = yaml.safe_load(stored_yaml) or {}
    found = changes(stored, spec.model_dump(mode="json"))
    if not found:
        return
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
            f"--resume: {key}: the sweep started with {show(old)}, the spec now says {show(new)}; "
            f"resume with the spec in {where} (a different spec is a new sweep: drop --resume)"
            for key, old, new in found
        ]
    )
