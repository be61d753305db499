"""YAML file + `--set` overrides -> a validated ExperimentSpec, or one error line per problem."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, get_origin

from pydantic import ValidationError

from raytune_ft.errors import UserError
from raytune_ft.spec.bounded_yaml import LineIndex, load_yaml, read_spec_text
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sections import field_type, is_section
from raytune_ft.spec.task_sections import TASK_SECTIONS


def load_spec(
    path: str | Path,
    overrides: list[str] | None = None,
    cluster_file: str | Path | None = None,
) -> ExperimentSpec:
    """Read, override and validate a spec file. Raises UserError naming every problem.

    `cluster_file`: a YAML file whose one key, `cluster`, replaces the spec's cluster section
    (the same spec on another cluster); `--set` overrides apply after it. Problems in it are
    named by its own file and line.
    """
    path = Path(path)
    raw, lines = load_yaml(read_spec_text(path), str(path))
    if raw is None:
        raise UserError(f"{path}: the file is empty; expected a mapping with name, model, data")
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: top level is a {type(raw).__name__}; expected a mapping of sections"
        )
    sources: dict[str, tuple[Path, LineIndex]] = {}
    if cluster_file is not None:
        cluster_path = Path(cluster_file)
        cluster, cluster_lines = load_cluster_file(cluster_path)
        raw = {**raw, "cluster": cluster}
        sources["cluster"] = (cluster_path, cluster_lines)
    data, overridden = apply_overrides(raw, overrides or [])

    def describe(loc: tuple[Any, ...]) -> str:
        file, file_lines = sources.get(str(loc[0]) if loc else "", (path, lines))
        return _where(file, loc, file_lines, overridden)

    return validate_spec(data, base_dir=path.resolve().parent, describe=describe)


def load_cluster_file(path: Path) -> tuple[Any, LineIndex]:
    """(the cluster section, line of each key path) of a cluster file: `cluster:` and nothing
    else, so the file reads like the section it replaces. Its fields are checked with the spec."""
    if not path.exists():
        raise UserError(f"{path}: no such cluster file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a YAML file with a cluster: section")
    raw, lines = load_yaml(read_spec_text(path), str(path))
    expected = "expected a mapping with one key, cluster (the spec's cluster section)"
    if not isinstance(raw, dict):
        got = "empty" if raw is None else f"a {type(raw).__name__}"
        raise UserError(f"{path}: the file is {got}; {expected}")
    extra = [key for key in raw if key != "cluster"]
    if extra:
        raise UserError(
            [
                f"{path}:{lines.get((key,), 1)}: {key}: unknown top-level key; {expected}"
                for key in extra
            ]
        )
    if "cluster" not in raw:
        raise UserError(f"{path}: no cluster key; {expected}")
    return raw["cluster"], lines


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
    except RecursionError:  # a self-containing value built outside YAML (YAML refuses those)
        raise UserError("spec: a value contains itself; expected plain data") from None


def apply_overrides(
    raw: dict[str, Any], overrides: list[str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Apply `a.b.c=value` strings; returns the new mapping and which --set wrote each path.

    Values are YAML (pydantic coerces them to the field). A mapping value merges into the
    section it names (`--set 'train={epochs: 2}'` changes only the epochs); anything else
    replaces. Under `sweep.space` the rest of the key is one dotted spec field.
    """
    data = copy.deepcopy(raw)
    applied: dict[tuple[str, ...], str] = {}
    problems = []
    for item in overrides:
        key, sep, value_text = item.partition("=")
        parts = tuple(p.strip() for p in key.strip().split("."))
        if not sep or not all(parts):
            problems.append(
                f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. train.epochs=2"
            )
            continue
        try:
            value = load_yaml(value_text, f"--set {key}")[0] if value_text.strip() else ""
        except UserError as exc:
            problems += exc.problems
            continue
        parts, schema = override_target(parts)
        try:
            written = set_dotted(data, parts, value, schema=schema)
        except ValueError as exc:
            problems.append(f"--set {key}: {exc}")
            continue
        applied.update(dict.fromkeys(written, item))
    if problems:
        raise UserError(problems)
    return data, applied


def override_target(parts: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    """(path in the spec mapping, the schema type there or None) for a dotted --set key.

    Walks the schema: inside a mapping field such as sweep.space, the rest of the key is one
    entry (`sweep.space.train.learning_rate` is the space key "train.learning_rate").
    """
    node: Any = ExperimentSpec
    for i, part in enumerate(parts):
        node = field_type(node, part)
        if node is None:
            return parts, None  # not a spec field: validation names it as unknown
        if get_origin(node) is dict and i + 1 < len(parts):
            return (*parts[: i + 1], ".".join(parts[i + 1 :])), None
    return parts, node


def set_dotted(
    data: dict[str, Any], parts: tuple[str, ...], value: Any, schema: Any = None
) -> list[tuple[str, ...]]:
    """Set data[a][b][c] = value for parts (a, b, c), creating absent or null sections.

    When `schema` is a section and both the old and new values are mappings, the new one is
    merged in field by field. Returns the paths written (to blame them in messages).
    """
    node = data
    for part in parts[:-1]:
        if node.get(part) is None:  # e.g. an optional section the spec left out
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ValueError(f"{part!r} is a value, not a section")
        node = node[part]
    old = node.get(parts[-1])
    if is_section(schema) and isinstance(value, dict) and isinstance(old, dict):
        node[parts[-1]], written = _merged(old, value, schema, parts)
        return written
    node[parts[-1]] = value
    return [parts]


def _merged(
    old: dict[str, Any], new: dict[str, Any], section: Any, prefix: tuple[str, ...]
) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """`new` merged into `old` along the schema: sections merge, other values replace."""
    out = dict(old)
    written: list[tuple[str, ...]] = []
    for key, value in new.items():
        sub = field_type(section, key)
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            if is_section(sub):
                out[key], more = _merged(out[key], value, sub, path)
                written += more
                continue
            if get_origin(sub) is dict:  # sweep.space: each entry is replaced whole
                out[key] = {**out[key], **value}
                written += [(*path, entry) for entry in value]
                continue
        out[key] = value
        written.append(path)
    return out, written


# ----------------------------------------------------------------------------- messages


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = []
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif "." in str(part):
            parts.append(f'."{part}"')
        else:
            parts.append(f".{part}")
    return "".join(parts).lstrip(".")


def _format_error(err: dict[str, Any], describe: Any) -> str:
    # pydantic puts a discriminated union's tag in the path (task.causal-lm-sft.x): drop it.
    loc = tuple(
        part
        for i, part in enumerate(err["loc"])
        if not (i and err["loc"][i - 1] == "task" and part in TASK_TYPES)
    )
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
        field = _LEADING_FIELD.match(msg)
        if not loc and field:  # a whole-spec check names the field it is about: place it there
            loc = tuple(int(p) if p.isdigit() else p for p in field["path"].split("."))
            msg = field["rest"]
    return f"{describe(loc)}: {msg}"


_LEADING_FIELD = re.compile(r"(?P<path>[a-z_]+(?:\.[A-Za-z0-9_]+)+): (?P<rest>.*)", re.S)
TASK_TYPES = {section.model_fields["type"].default for section in TASK_SECTIONS}


def _where(
    path: Path,
    loc: tuple[Any, ...],
    lines: LineIndex,
    overridden: dict[tuple[str, ...], str],
) -> str:
    loc = tuple(part for part in loc if part != "[key]")  # pydantic's marker for a dict key
    field = _dotted(loc) or "spec"
    # The deepest key that exists in the file gives the line.
    in_file = next((loc[:d] for d in range(len(loc), -1, -1) if loc[:d] in lines), None)
    for key, item in overridden.items():
        if loc[: len(key)] == key:  # the --set wrote this field or the section holding it
            return f"--set {item}: {field}"
        if loc and key[: len(loc)] == loc:  # a check of the section the --set wrote into
            if in_file != loc:
                return f"--set {item}: {field}"
            return f"{path}:{lines[loc]} (with --set {item}): {field}"
    if in_file is not None:
        return f"{path}:{lines[in_file]}: {field}"
    return f"{path}: {field}"
