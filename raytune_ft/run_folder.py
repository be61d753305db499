"""Run folders: created fresh (never reused silently), files written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec

if TYPE_CHECKING:
    from raytune_ft.storage import Location


def new_run_dir(storage: str, name: str, kind: str) -> Path:
    """storage/name-kind-YYYYmmdd-HHMMSS[-N]: a folder that did not exist before."""
    root = Path(storage).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise UserError(f"storage.path: {root} is a file; expected a folder for run folders")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"storage.path: cannot create {root}: {exc.strerror}; expected a folder you can write"
        ) from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = (
            root / f"{name}-{kind}-{stamp}" if n == 0 else root / f"{name}-{kind}-{stamp}-{n}"
        )
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(
                f"storage.path: cannot create a run folder in {root}: {exc.strerror}; "
                "expected a folder you can write"
            ) from None
        return candidate
    raise UserError(f"storage.path: could not find a free run folder name under {root}")


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (threads may write)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def resumable_run_dir(spec: ExperimentSpec, kind: str) -> Location:
    """The latest unfinished run folder of this spec, refusing one started from another spec."""
    from raytune_ft.storage import latest_run, storage_root

    run_dir = latest_run(storage_root(spec.storage), spec.name, kind)
    if run_dir is None or not (run_dir / "spec.yaml").exists():
        raise UserError(
            f"--resume: no earlier {kind} run of {spec.name!r} under {spec.storage.path}"
        )
    if (run_dir / "summary.json").exists():
        raise UserError(
            f"--resume: {run_dir} has already finished; run again without --resume for a new run"
        )
    saved = yaml.safe_load((run_dir / "spec.yaml").read_text())
    changes = spec_changes(saved, spec.model_dump(mode="json"))
    if changes:
        raise UserError(
            [f"--resume: {change} since {run_dir.name} started" for change in changes]
            + ["--resume: resume with the spec the run started with, or start a new run"]
        )
    return run_dir


def spec_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """'train.epochs changed 3 -> 4' lines for every field that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            lines += spec_changes(old.get(key), new.get(key), f"{prefix}.{key}".lstrip("."))
        return lines
    return [] if old == new else [f"{prefix or 'spec'} changed {old!r} -> {new!r}"]


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp makes 0600 files; give the file the mode open() would (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def spec_yaml(spec: ExperimentSpec, drop: set[str] | None = None) -> str:
    data = spec.model_dump(mode="json", exclude=drop)
    return yaml.safe_dump(data, sort_keys=False)


def copy_tree_atomic(src: Path, dst: Path) -> None:
    """Copy a folder beside its destination, then rename it into place."""
    if dst.exists():
        raise FileExistsError(f"{dst} exists; refusing to overwrite it")
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.replace(tmp, dst)
