"""What `tune --resume` and `--extend` accept: the spec the sweep started with, unchanged but
for its budget (`sweep.num_samples`). Tune restores its own experiment state and keeps feeding
the remaining trials the stored spec's values; any other change would silently not apply (or
apply to half the trials)."""

from __future__ import annotations

from collections.abc import Mapping
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.loading import validate_spec
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
    spec lacks and the current one has at the schema's default is no change: it was added
    since the sweep started (`as_it_ran` sets those whose default would change what an older
    sweep does)."""
    old, new = flatten(stored), flatten(current)
    return [
        (key, old.get(key, MISSING), new.get(key, MISSING))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, MISSING) != new.get(key, MISSING)
        and not (key not in old and new[key] == schema_default(key, new))
    ]


def schema_default(key: str, current: Mapping[str, Any] | None = None) -> Any:
    """The schema's default of a dotted spec field (JSON form), MISSING if it has none. In a
    union of sections (the task), the member the spec's `type` in `current` (flat) names."""
    *parents, name = key.split(".")
    members: tuple[Any, ...] = (ExperimentSpec,)
    for depth, part in enumerate(parents):
        found = [field_type(m, part) for m in _chosen(members, parents[:depth], current)]
        node = next((f for f in found if f is not None), None)
        if node is None:
            return MISSING
        members = _members(node)
    for member in _chosen(members, parents, current):
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


def _chosen(
    members: tuple[Any, ...], path: list[str], current: Mapping[str, Any] | None
) -> tuple[Any, ...]:
    """The members whose `type` is the spec's at `path` (a task section), else all."""
    kind = (current or {}).get(".".join([*path, "type"]))
    picked = tuple(
        m
        for m in members
        if is_section(m) and "type" in m.model_fields and m.model_fields["type"].default == kind
    )
    return picked or members


BUDGET = "sweep.num_samples"
# Sections added since a sweep may have started, and the values that match how such a sweep
# ran (before `sweep.retain`, every trial kept all its files).
ADDED_SINCE = {"sweep.retain": {"exports": None, "checkpoints": None}}


def as_it_ran(spec: ExperimentSpec, stored_yaml: str) -> tuple[ExperimentSpec, list[str]]:
    """The spec with each section the stored spec lacks (`ADDED_SINCE`) set as the sweep ran
    without it, and the keys so set: going on must not change what the sweep does."""
    stored = flatten(yaml.safe_load(stored_yaml) or {})
    data, absent = spec.model_dump(mode="json"), []
    for key, value in ADDED_SINCE.items():
        if any(k == key or k.startswith(f"{key}.") for k in stored):
            continue
        section, name = _parent(data, key)
        section[name] = value
        absent.append(key)
    return (validate_spec(data) if absent else spec), absent


def absent_line(key: str) -> str:
    value = yaml.safe_dump(ADDED_SINCE[key], default_flow_style=True).strip()
    return f"sweep: {key}: absent when this sweep started; it goes on as it ran ({value})"


def stored_form(spec: ExperimentSpec, absent: list[str]) -> str:
    """The spec as the sweep folder keeps it: without the sections it started without (a
    later resume compares the user's spec with this one)."""
    data = spec.model_dump(mode="json")
    for key in absent:
        section, name = _parent(data, key)
        section.pop(name, None)
    return yaml.safe_dump(data, sort_keys=False)


def _parent(data: dict[str, Any], key: str) -> tuple[dict[str, Any], str]:
    """The mapping that holds dotted `key` in nested `data`, and the key's last part."""
    *parents, name = key.split(".")
    for part in parents:
        data = data[part]
    return data, name


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
