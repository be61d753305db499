"""What `raytune-ft submit` uploads: the working directory as git would keep it, plus every file
the spec reads, staged in a folder of our own so Ray sends exactly that."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from raytune_ft.errors import UserError
from raytune_ft.spec import ExperimentSpec
from raytune_ft.submit.ignore import NEVER_UPLOADED, exclude_spec, kept_files
from raytune_ft.submit.spec_files import job_overrides, needed_files

MIB = 1 << 20
# Ray packs a working_dir as a zip of stored (uncompressed) entries: per file, a local header
# (30 bytes) and a central directory entry (46 bytes), each with the name; 22 bytes at the end.
_ZIP_ENTRY_BYTES = 76
_ZIP_END_BYTES = 22


def ray_upload_cap() -> int:
    """The largest working_dir a Ray Job accepts through the dashboard, in bytes.

    Two limits apply to the zip: the dashboard reads the upload with aiohttp's client_max_size
    (DASHBOARD_CLIENT_MAX_SIZE, 100 MiB in Ray 2.60; a larger body is refused with HTTP 413),
    and the GCS stores at most GCS_STORAGE_MAX_SIZE (the gRPC message cap, 512 MiB).
    """
    from ray._private.ray_constants import DASHBOARD_CLIENT_MAX_SIZE
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    return min(DASHBOARD_CLIENT_MAX_SIZE, GCS_STORAGE_MAX_SIZE)


@dataclass
class UploadPlan:
    root: Path  # the working directory, resolved
    files: dict[str, Path]  # posix path inside the upload -> the file to send
    spec_name: str  # the spec, relative to root: what the job's entrypoint names
    overrides: list[str]  # --set for the job: the user's, then path corrections
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes of the zip Ray builds from the staged folder."""
        entries = sum(
            _ZIP_ENTRY_BYTES + 2 * len(name.encode()) + path.stat().st_size
            for name, path in self.files.items()
        )
        return entries + _ZIP_END_BYTES

    def largest(self, count: int = 5) -> list[tuple[str, int]]:
        """The biggest top-level folders (with a trailing /) and files, by bytes."""
        totals: dict[str, int] = {}
        for name, path in self.files.items():
            top, sep, _ = name.partition("/")
            key = top + "/" if sep else top
            totals[key] = totals.get(key, 0) + path.stat().st_size
        return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:count]

    def check_size(self, cap: int) -> None:
        size = self.size
        if size < cap:
            return
        largest = ", ".join(f"{name} {_mib(n)}" for name, n in self.largest())
        raise UserError(
            f"--working-dir {self.root}: the upload is {_mib(size)} ({len(self.files)} files), "
            f"over Ray's {_mib(cap)} limit for a job's working_dir; largest: {largest}; "
            "leave out what the job does not need with --exclude PATTERN (or a .gitignore "
            "entry), or read large data and models from remote storage (hub: or s3://)"
        )

    def stage(self, dest: Path) -> None:
        """Hard links (copies across file systems) of every planned file under `dest`."""
        for name, source in self.files.items():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def _inside(path: Path, root: Path) -> str | None:
    """`path` relative to `root` (posix), or None when it lies outside."""
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return None


def check_storage(spec: ExperimentSpec) -> None:
    """A relative storage.path would be written inside the job's temporary working directory
    on the cluster, and deleted with it."""
    storage = spec.storage
    if storage.scheme or Path(storage.path).is_absolute():
        return
    raise UserError(
        f"storage.path: {storage.path!r} is relative: on the cluster it would be inside the "
        "job's temporary working directory and lost when the job ends; expected "
        "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or an absolute path mounted on the cluster's "
        "nodes (e.g. --set storage.path=/mnt/shared/runs)"
    )


def plan_upload(
    spec: ExperimentSpec,
    spec_path: Path,
    overrides: list[str],
    working_dir: Path,
    excludes: list[str],
) -> UploadPlan:
    """The files to upload, or a UserError naming each file the job would miss."""
    from raytune_ft.spec.bounded_yaml import load_yaml, read_spec_text
    from raytune_ft.spec.loading import apply_overrides

    root = working_dir.resolve()
    if not root.is_dir():
        raise UserError(f"--working-dir {working_dir}: not a folder; expected the folder to upload")
    walk = kept_files(root, exclude_spec(excludes))
    files = dict(walk.files)
    notes = [f"{name}/: a symlinked folder, not uploaded" for name in walk.skipped_links]
    problems = []
    away = "run from a folder that contains it (or pass --working-dir)"

    spec_name = _inside(spec_path, root)
    if spec_name is None:
        problems.append(f"{spec_path}: the spec is outside the working directory {root}; {away}")
    else:
        files[spec_name] = spec_path.resolve()

    for needed in needed_files(spec):
        forced = []
        for file in needed.files:
            name = _inside(file, root)
            if name is None:
                remote = "a hub model id" if needed.folder else "remote data (hub: or s3://)"
                problems.append(
                    f"{needed.field}: {file} is outside the working directory {root}; "
                    f"{away}, or use {remote}"
                )
                break
            if Path(name).name in NEVER_UPLOADED:
                continue
            if name not in files:
                forced.append(name)
                files[name] = file.resolve()
        if forced:
            shown = ", ".join(forced[:3]) + (
                f" and {len(forced) - 3} more" if len(forced) > 3 else ""
            )
            notes.append(
                f"{needed.field}: uploading {shown} although .gitignore or --exclude leaves "
                f"{'it' if len(forced) == 1 else 'them'} out (the job reads "
                f"{'it' if len(forced) == 1 else 'them'})"
            )

    raw = load_yaml(read_spec_text(spec_path), str(spec_path))[0]
    fixes, fix_notes, fix_problems = job_overrides(
        spec, apply_overrides(raw, overrides)[0], spec_path.resolve().parent
    )
    if problems or fix_problems:
        raise UserError(problems + fix_problems)
    return UploadPlan(root, files, spec_name or "", [*overrides, *fixes], notes + fix_notes)
