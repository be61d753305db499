"""YAML file + `--set` overrides -> a validated ExperimentSpec, or one error line per problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec


def load_spec(path: str | Path, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read, override and validate a spec file. Raises UserError naming every problem."""
    path = Path(path)
    text = _read_text(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raise UserError(f"{path}: the file is empty; expected a mapping with name, model, data")
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: top level is a {type(raw).__name__}; expected a mapping of sections"
        )
    data, overridden = apply_overrides(raw, overrides or [])
    lines = _line_index(text)
    return validate_spec(
        data,
        base_dir=path.resolve().parent,
        describe=lambda loc: _where(path, loc, lines, overridden),
    )


def validate_spec(
    data: dict[str, Any],
    base_dir: Path | None = None,
    describe: Any = None,
) -> ExperimentSpec:
    """Validate a spec mapping. `describe(loc)` names where a field came from, for messages."""
    try:
        return ExperimentSpec.model_validate(
            data, context={"base_dir": str(base_dir) if base_dir else None}
        )
    except ValidationError as exc:
        describe = describe or (lambda loc: _dotted(loc) or "spec")
        raise UserError([_format_error(err, describe) for err in exc.errors()]) from None


def apply_overrides(
    raw: dict[str, Any], overrides: list[str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Apply `a.b.c=value` strings. Values are YAML scalars; pydantic coerces them to the field."""
    data = copy.deepcopy(raw)
    applied: dict[tuple[str, ...], str] = {}
    problems = []
    for item in overrides:
        key, sep, value_text = item.partition("=")
        parts = tuple(p for p in key.strip().split("."))
        if not sep or not all(parts):
            problems.append(
                f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. train.epochs=2"
            )
            continue
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError:
            value = value_text
        try:
            set_dotted(data, parts, value)
        except ValueError as exc:
            problems.append(f"--set {key}: {exc}")
            continue
        applied[parts] = item
    if problems:
        raise UserError(problems)
    return data, applied


def set_dotted(data: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """Set data[a][b][c] = value for parts (a, b, c), creating absent or null sections."""
    node = data
    for part in parts[:-1]:
        if node.get(part) is None:  # e.g. an optional section the spec left out
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ValueError(f"{part!r} is a value, not a section")
        node = node[part]
    node[parts[-1]] = value


# ----------------------------------------------------------------------------- messages


def _read_text(path: Path) -> str:
    if not path.exists():
        raise UserError(f"{path}: no such spec file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a YAML spec file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}); expected a YAML file"
        ) from None


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif "." in str(part):
            parts.append(f'."{part}"')
        else:
            parts.append(f".{part}")
    return "".join(parts).lstrip(".")


def _format_error(err: dict[str, Any], describe: Any) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown field"
    elif kind == "missing":
        msg = "required field is missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if kind not in {"value_error", "assertion_error"} and "input" in err:
            got = err["input"]
            if not isinstance(got, dict):
                msg += f" (got {got!r})"
    return f"{describe(loc)}: {msg}"


def _where(
    path: Path,
    loc: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    overridden: dict[tuple[str, ...], str],
) -> str:
    field = _dotted(loc) or "spec"
    for key, item in overridden.items():
        if loc[: len(key)] == key:
            return f"--set {item}: {field}"
    # The deepest key that exists in the file gives the line.
    for depth in range(len(loc), -1, -1):
        if loc[:depth] in lines:
            return f"{path}:{lines[loc[:depth]]}: {field}"
    return f"{path}: {field}"


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path in the YAML document to its 1-based line number."""
    index: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, prefix: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*prefix, key_node.value)
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index[(*prefix, i)] = item.start_mark.line + 1
                walk(item, (*prefix, i))

    if root is not None:
        walk(root, ())
    return index
