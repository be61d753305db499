"""YAML for specs with hard limits: size, nesting, alias expansion, no repeated keys.

A spec is a small, hand-written file. PyYAML alone accepts "billion laughs" alias bombs,
recursive aliases and nesting deep enough to overflow Python's stack, and lets a key written
twice silently win. Every document is first streamed as parser events (no recursion, no
expansion) to enforce the limits, then composed, checked for repeated keys, and constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from raytune_ft.errors import UserError

MAX_SPEC_BYTES = 1 << 20  # 1 MiB: a spec is a page of YAML, not a data file
MAX_DEPTH = 32  # mappings and lists nested in each other
MAX_NODES = 100_000  # scalars, mappings and lists once every alias is expanded

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LineIndex = dict[tuple[Any, ...], int]


def read_spec_text(path: Path) -> str:
    """The spec file's text, refusing folders, devices that never end and non-UTF-8 bytes."""
    if not path.exists():
        raise UserError(f"{path}: no such spec file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a YAML spec file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the spec: {exc.strerror}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise UserError(
            f"{path}: larger than {MAX_SPEC_BYTES // 1024} KiB; expected a YAML spec "
            "(data belongs in data files the spec names)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}); expected a YAML file"
        ) from None


def load_yaml(text: str, source: str) -> tuple[Any, LineIndex]:
    """(value, line of each key path). `source` names the text in messages (file or --set)."""
    try:
        _check_events(text, source)
        root = yaml.compose(text, Loader=_Loader)
        if root is None:
            return None, {}
        lines = _index_lines_refusing_repeats(root, source)
        value = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        if "nesting depth" in str(exc.problem):  # libyaml's own limit, met while looking ahead
            raise UserError(f"{where}: nested too deep; expected a spec") from None
        raise UserError(f"{where}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # Building a value failed: a date that does not exist, an integer of 5,000 digits...
        raise UserError(f"{source}: a value YAML cannot build: {exc}") from None
    return value, lines


def _check_events(text: str, source: str) -> None:
    """Depth and expanded size from the event stream, before anything is built.

    Each open node accumulates the expanded size and the height of what it holds; an alias
    counts as a full copy of its anchor's node, at the depth where it is used.
    """
    open_nodes: list[list[Any]] = []  # [expanded size, height below, anchor or None]
    sizes: dict[str, int] = {}  # anchor -> expanded size of its node
    heights: dict[str, int] = {}  # anchor -> levels of nesting inside its node (itself included)
    total = 0

    def fail(event: yaml.Event, problem: str) -> UserError:
        return UserError(f"{source}:{event.start_mark.line + 1}: {problem}")

    def add(size: int, height: int, event: yaml.Event) -> None:
        nonlocal total
        total += size
        if total > MAX_NODES:
            raise fail(
                event,
                f"expands to more than {MAX_NODES:,} values through aliases; "
                "expected a plain spec (no alias bombs)",
            )
        if len(open_nodes) + height > MAX_DEPTH:
            raise fail(event, f"nested too deep (over {MAX_DEPTH} levels); expected a spec")

    def close(size: int, height: int) -> None:
        if open_nodes:
            open_nodes[-1][0] += size
            open_nodes[-1][1] = max(open_nodes[-1][1], height)

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            add(1, 1, event)
            open_nodes.append([1, 0, event.anchor])
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            size, below, anchor = open_nodes.pop()
            if anchor is not None:
                sizes[anchor], heights[anchor] = size, below + 1
            close(size, below + 1)
        elif isinstance(event, yaml.ScalarEvent):
            add(1, 0, event)
            if event.anchor is not None:
                sizes[event.anchor], heights[event.anchor] = 1, 0
            close(1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if any(node[2] == event.anchor for node in open_nodes):
                raise fail(event, f"alias *{event.anchor} refers to a node that contains it")
            if event.anchor not in sizes:
                raise fail(event, f"alias *{event.anchor} has no anchor &{event.anchor} before it")
            # The aliased node counts again in full: that is what construction will build.
            add(sizes[event.anchor], heights[event.anchor], event)
            close(sizes[event.anchor], heights[event.anchor])


def _index_lines_refusing_repeats(root: yaml.Node, source: str) -> LineIndex:
    """Map each key path to its 1-based line, refusing a key written twice in one mapping.

    Iterative, and each node is visited once: an aliased node is indexed where it is defined.
    """
    index: LineIndex = {}
    problems: list[tuple[int, str]] = []  # (line, message): reported in document order
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                key, line = str(key_node.value), key_node.start_mark.line + 1
                if key in first_line:
                    problems.append(
                        (
                            line,
                            f"{source}:{line}: {_dotted((*prefix, key))}: written twice in one "
                            f"mapping (lines {first_line[key]} and {line}); keep one",
                        )
                    )
                    continue
                first_line[key] = line
                index.setdefault((*prefix, key_node.value), line)
                stack.append((value_node, (*prefix, key_node.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index.setdefault((*prefix, i), item.start_mark.line + 1)
                stack.append((item, (*prefix, i)))
    if problems:
        raise UserError([message for _, message in sorted(problems)])
    return index


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path)
