"""What `tune --resume` and `--extend` accept: the spec the sweep started with, unchanged but
for its budget (`sweep.num_samples`). Tune restores its own experiment state and keeps feeding
the remaining trials the stored spec's values; any other change would silently not apply (or
apply to half the trials)."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sections import field_type, is_section


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and scalars are leaves."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


MISSING = object()


def changes(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, stored value, current value) for every field that differs. A field the stored
    spec lacks and the current one has at the schema's default is no change: a sweep started
    before the field existed ran as that default says."""
    old, new = flatten(stored), flatten(current)
    return [
        (key, old.get(key, MISSING), new.get(key, MISSING))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, MISSING) != new.get(key, MISSING)
        and not (key not in old and new[key] == schema_default(key))
    ]


def schema_default(key: str) -> Any:
    """The schema's default of a dotted spec field (JSON form), MISSING if it has none."""
    *parents, name = key.split(".")
    node: Any = ExperimentSpec
    for part in parents:
        node = field_type(node, part)
        if node is None:
            return MISSING
    for member in _members(node):
        field = member.model_fields.get(name) if is_section(member) else None
        if field is not None and not field.is_required():
            value = field.get_default(call_default_factory=True)
            return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return MISSING


def _members(node: Any) -> tuple[Any, ...]:
    """A section class, or the classes of a (discriminated) union of sections."""
    if get_origin(node) is Annotated:
        node = get_args(node)[0]
    if get_origin(node) in (Union, UnionType):
        return tuple(m for member in get_args(node) for m in _members(member))
    return (node,)


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
