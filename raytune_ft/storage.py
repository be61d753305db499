"""Where run folders live: a local folder or a bucket (s3://, gs://), through pyarrow.

Ray Train and Tune write checkpoints through the same pyarrow filesystems, so one `Location`
type serves the driver (spec, summaries, best model), the workers (step log, runtime record)
and Ray itself (`storage_path` + `storage_filesystem`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from raytune_ft.errors import UserError
from raytune_ft.spec.sections import StorageSpec


@dataclass(frozen=True)
class Location:
    """A folder (or file) in storage: `path` inside `fs`, shown to people as `uri`."""

    fs: Any  # pyarrow.fs.FileSystem (picklable: workers and Ray tasks receive it)
    path: str  # absolute local path, or BUCKET/KEY for a bucket
    scheme: str  # '' for the local disk, else 's3' or 'gs'

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, name: str) -> Location:
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", self.scheme)

    @property
    def parent(self) -> Location:
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], self.scheme)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def local_path(self) -> Path:
        assert self.is_local, f"{self.uri} is not on this machine's disk"
        return Path(self.path)

    # ------------------------------------------------------------------ reading

    def exists(self) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.path).type != fs.FileType.NotFound

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read().decode("utf-8")

    def children(self) -> list[Location]:
        """The folders directly inside this one, by name."""
        from pyarrow import fs

        selector = fs.FileSelector(self.path, allow_not_found=True)
        found = [
            info for info in self.fs.get_file_info(selector) if info.type == fs.FileType.Directory
        ]
        return [self / info.base_name for info in sorted(found, key=lambda i: i.base_name)]

    def newest(self, prefix: str, suffix: str) -> str | None:
        """The last by name of the files here named `prefix...suffix` (Tune's state files
        carry their session's timestamp), or None."""
        from pyarrow import fs

        selector = fs.FileSelector(self.path, allow_not_found=True)
        names = [
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.base_name.startswith(prefix) and info.base_name.endswith(suffix)
        ]
        return max(names, default=None)

    # ------------------------------------------------------------------ writing

    def write_text(self, text: str) -> None:
        """Whole or not at all: a local file goes through a temp file and a rename; an object
        store PUT is already atomic (readers see the old object or the new one)."""
        if self.is_local:
            from raytune_ft.run_folder import write_atomic

            write_atomic(self.local_path, text)
            return
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(text.encode("utf-8"))

    def write_json(self, data: Any) -> None:
        self.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def upload(self, local_dir: Path) -> None:
        """Copy a local folder here. Refuses to replace an existing folder."""
        if self.exists():
            raise FileExistsError(f"{self.uri} exists; refusing to overwrite it")
        if self.is_local:
            from raytune_ft.run_folder import copy_tree_atomic

            copy_tree_atomic(local_dir, self.local_path)
            return
        from pyarrow import fs

        fs.copy_files(str(local_dir), self.path, destination_filesystem=self.fs, use_threads=True)

    def copy_to(self, target: Location) -> None:
        """Copy this folder to `target` in the same storage. Refuses to replace a folder."""
        if target.exists():
            raise FileExistsError(f"{target.uri} exists; refusing to overwrite it")
        if self.is_local:
            target.upload(self.local_path)
            return
        from pyarrow import fs

        fs.copy_files(
            self.path, target.path, source_filesystem=self.fs, destination_filesystem=target.fs
        )

    def move_to(self, target: Location) -> None:
        """Move this folder to `target` (a rename on a local disk; copy, then delete, in a
        bucket, which has no rename). Refuses to replace a folder."""
        if self.is_local and target.is_local:
            if target.exists():
                raise FileExistsError(f"{target.uri} exists; refusing to overwrite it")
            self.local_path.rename(target.local_path)
            return
        self.copy_to(target)
        self.remove()

    def size_bytes(self) -> int:
        """Total bytes of the files under this folder."""
        from pyarrow import fs

        selector = fs.FileSelector(self.path, recursive=True, allow_not_found=True)
        return sum(
            i.size or 0 for i in self.fs.get_file_info(selector) if i.type == fs.FileType.File
        )

    def remove_file(self) -> None:
        if self.is_local:
            self.local_path.unlink(missing_ok=True)
        else:
            self.fs.delete_file(self.path)

    def remove(self) -> None:
        """Delete this folder and everything in it."""
        if self.is_local:
            shutil.rmtree(self.local_path)
        else:
            self.fs.delete_dir(self.path)

    def download(self, local_dir: Path) -> None:
        """Copy this folder to a new local folder (temp beside it, then renamed into place)."""
        from pyarrow import fs

        tmp = local_dir.with_name(f".{local_dir.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        # Made here: pyarrow creates the subfolders it lists, but not the top one when the
        # bucket has no marker object for it (folders copied within a bucket have none).
        tmp.mkdir(parents=True)
        fs.copy_files(self.path, str(tmp), source_filesystem=self.fs, use_threads=True)
        tmp.replace(local_dir)


# GCS retries a failing request for 15 minutes by default (google-cloud-cpp), uninterruptibly.
GCS_RETRY_LIMIT_S = 60.0


def storage_root(storage: StorageSpec, retry_limit_s: float = GCS_RETRY_LIMIT_S) -> Location:
    """The spec's storage as a Location (the bucket is not contacted)."""
    from pyarrow import fs

    scheme = storage.scheme
    if scheme in ("", "file"):
        path = storage.path.removeprefix("file://")
        return Location(fs.LocalFileSystem(), str(Path(path).expanduser().resolve()), "")
    bucket_path = storage.path.split("://", 1)[1].strip("/")
    options: dict[str, Any] = {}
    if storage.endpoint_url:
        endpoint_scheme, _, host = storage.endpoint_url.partition("://")
        options |= {"endpoint_override": host.rstrip("/"), "scheme": endpoint_scheme}
    if scheme == "s3":
        if storage.region:
            options["region"] = storage.region
        return Location(fs.S3FileSystem(**options), bucket_path, "s3")
    options["retry_time_limit"] = timedelta(seconds=retry_limit_s)
    return Location(fs.GcsFileSystem(**options), bucket_path, "gs")


def location_of(uri: str, storage: StorageSpec) -> Location:
    """A location inside the spec's storage, from the uri a Location printed."""
    root = storage_root(storage)
    path = uri.split("://", 1)[1] if root.scheme else uri
    return Location(root.fs, path, root.scheme)


def check_storage(storage: StorageSpec) -> Location:
    """The storage root, after one request to it: a wrong bucket, endpoint or credentials
    fail here in seconds with the field named, not in a worker an hour later."""
    root = storage_root(storage)
    if root.is_local:
        return root
    probe = storage_root(storage, retry_limit_s=10.0)  # an answer in seconds, not minutes
    bucket = root.path.split("/", 1)[0]
    where = f" at {storage.endpoint_url}" if storage.endpoint_url else ""
    try:
        from pyarrow import fs

        info = probe.fs.get_file_info(bucket)
    except OSError as exc:
        reason = _first_line(str(exc))
        raise UserError(
            f"storage.path: cannot reach {root.scheme}://{bucket}{where}: {reason}; expected a "
            "bucket this machine's credentials can read and write"
        ) from None
    if info.type == fs.FileType.NotFound:
        raise UserError(
            f"storage.path: bucket {bucket!r} does not exist{where}; expected an existing bucket"
        )
    return root


def _first_line(text: str) -> str:
    # pyarrow's S3 errors carry a multi-line AWS dump; the first sentence says what failed.
    line = text.strip().splitlines()[0] if text.strip() else "no answer"
    return re.sub(r"\s+", " ", line)[:300]


# --------------------------------------------------------------------------- run folders


def new_run(root: Location, name: str, kind: str) -> Location:
    """root/name-kind-YYYYmmdd-HHMMSS[-N]: a folder that did not exist before.

    Locally `mkdir` makes the name ours atomically. A bucket has no such operation: the name is
    checked free and claimed by writing a marker; two runs of one spec started in the same
    second on two machines could still meet, which the timestamp makes unlikely.
    """
    if root.is_local:
        from raytune_ft.run_folder import new_run_dir

        local = new_run_dir(root.path, name, kind)
        return Location(root.fs, str(local), "")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = root / (f"{name}-{kind}-{stamp}" if n == 0 else f"{name}-{kind}-{stamp}-{n}")
        if not candidate.exists():
            (candidate / ".created").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
            return candidate
    raise UserError(f"storage.path: could not find a free run folder name under {root.uri}")


def latest_run(root: Location, name: str, kind: str) -> Location | None:
    """The newest run folder of this spec and kind (names carry their start time)."""
    pattern = re.compile(rf"^{re.escape(name)}-{re.escape(kind)}-(\d{{8}}-\d{{6}})(?:-(\d+))?$")
    runs = []
    for child in root.children():
        match = pattern.match(child.name)
        if match:
            runs.append(((match[1], int(match[2] or 0)), child))
    return max(runs, key=lambda r: r[0])[1] if runs else None


class StepLog:
    """The run's steps.jsonl, one record per line, written by rank 0.

    On a local disk each record is appended at once. An object store cannot append, so
    records are kept and the whole file is written again at each flush (every evaluation and
    at the end): a crash loses at most the records since the last evaluation.
    """

    def __init__(self, location: Location):
        self.location = location
        self._lines: list[str] = []
        if not location.is_local and location.exists():  # resumed: continue the log
            self._lines = location.read_text().splitlines(keepends=True)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        if self.location.is_local:
            path = self.location.local_path
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)
        else:
            self._lines.append(line)

    def flush(self) -> None:
        if not self.location.is_local and self._lines:
            self.location.write_text("".join(self._lines))
