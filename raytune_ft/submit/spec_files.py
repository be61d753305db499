"""The local files a spec reads (data, a model folder), and how the job on the cluster must
name them: it sees only the uploaded folder, so a path of this machine would not resolve."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_ft.spec import ExperimentSpec

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Needed:
    """Files one spec field reads; `folder` marks a model folder (uploaded whole)."""

    field: str
    files: tuple[Path, ...]
    folder: Path | None = None


def _is_url(value: str) -> bool:
    return "://" in value


def _absolute(written: Any) -> bool:
    """A path as written in the spec that names a place on this machine, not a URL."""
    return (
        isinstance(written, str)
        and not _is_url(written)
        and Path(written).expanduser().is_absolute()
    )


def needed_files(spec: ExperimentSpec) -> list[Needed]:
    """Every local data file (globs resolved as the loader does) and a local model folder."""
    from raytune_ft.data.loading import resolve_files  # raises "matches no files", exit 2

    needed = []
    sections = [("data", spec.data)]
    sections += [(f"stages.{i}.data", s.data) for i, s in enumerate(spec.stages or []) if s.data]
    for prefix, data in sections:
        for split in SPLITS:
            source = getattr(data, split)
            if source is None or source.path is None or _is_url(source.path):
                continue
            files = resolve_files(source, f"{prefix}.{split}")  # it adds ".path" itself
            needed.append(Needed(f"{prefix}.{split}.path", tuple(files)))
    model = Path(spec.model.name_or_path).expanduser()
    if model.is_dir():
        files = tuple(p for p in sorted(model.rglob("*")) if p.is_file() and ".git" not in p.parts)
        needed.append(Needed("model.name_or_path", files, folder=model))
    return needed


def _dig(raw: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(raw, dict):
            return None
        raw = raw.get(key)
    return raw


def _resolve_glob(pattern: str) -> str:
    """The pattern with symlinks resolved in its fixed leading part (the part before any
    wildcard), so that a path relative to the spec's resolved folder can be computed."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    head = Path(*parts[:fixed]).resolve() if fixed else Path()
    return str(head.joinpath(*parts[fixed:]))


def job_overrides(
    spec: ExperimentSpec, raw: dict[str, Any], spec_dir: Path
) -> tuple[list[str], list[str], list[str]]:
    """`--set`s that make the job find local paths inside the uploaded folder.

    `raw` is the spec mapping as written (with the user's --set applied). Data paths written
    relative to the spec and a model folder beside it travel as they are; an absolute path (or
    a model folder named from the current directory) becomes a path relative to the spec.
    Returns (overrides, notes, problems).
    """
    overrides: list[str] = []
    notes: list[str] = []
    problems: list[str] = []
    for split in SPLITS:
        written = _dig(raw, "data", split, "path")
        source = getattr(spec.data, split)
        if not isinstance(written, str) or source is None or source.path is None:
            continue
        if _absolute(written):
            rel = os.path.relpath(_resolve_glob(source.path), spec_dir)
            overrides.append(f"data.{split}.path={rel}")
            notes.append(f"data.{split}.path: {written} is read as {rel} (next to the spec)")
    for i, stage in enumerate(_dig(raw, "stages") or []):
        for split in SPLITS:
            written = _dig(stage, "data", split, "path")
            if _absolute(written):
                problems.append(
                    f"stages.{i}.data.{split}.path: {written} is a path of this machine; "
                    "expected it relative to the spec file, so the job finds it in the "
                    "uploaded folder"
                )
    model = Path(spec.model.name_or_path).expanduser()
    written = _dig(raw, "model", "name_or_path")
    if model.is_dir() and isinstance(written, str):
        beside_spec = not Path(written).is_absolute() and (spec_dir / written).is_dir()
        if not beside_spec:
            rel = os.path.relpath(model.resolve(), spec_dir)
            overrides.append(f"model.name_or_path={rel}")
            notes.append(f"model.name_or_path: {written} is read as {rel} (next to the spec)")
    return overrides, notes, problems
