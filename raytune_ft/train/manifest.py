"""Each rank's list of the files it wrote into a checkpoint, written last.

A checkpoint is whole when every rank's manifest is there and its files have the sizes it
lists: a folder half deleted or half copied (a process killed meanwhile) is not. Older
checkpoints without a manifest count as whole when they hold any file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MANIFEST = "manifest-rank{rank}.json"
_MANIFEST = re.compile(r"^manifest-rank(\d+)\.json$")


def write_manifest(folder: Path, rank: int, world: int) -> None:
    """Record this rank's files (relative path -> bytes) in `folder`, after them."""
    files = {
        str(path.relative_to(folder)): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not _MANIFEST.match(path.name)
    }
    body = json.dumps({"rank": rank, "world": world, "files": files})
    (folder / MANIFEST.format(rank=rank)).write_text(body)


def is_whole(fs: Any, path: str) -> bool:
    """Whether the checkpoint folder at `path` (a pyarrow filesystem path) is complete."""
    from pyarrow import fs as pafs

    path = path.rstrip("/")
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except (FileNotFoundError, OSError):
        return False
    sizes = {
        info.path[len(path) :].lstrip("/"): info.size
        for info in infos
        if info.type == pafs.FileType.File
    }
    manifests = [name for name in sizes if _MANIFEST.match(name)]
    if not manifests:
        return bool(sizes)
    worlds, ranks = set(), set()
    for name in manifests:
        try:
            with fs.open_input_stream(f"{path}/{name}") as stream:
                manifest = json.loads(stream.readall())
            world, rank, files = manifest["world"], manifest["rank"], dict(manifest["files"])
        except (OSError, ValueError, KeyError, TypeError):  # cut short, or not a manifest
            return False
        if not (isinstance(world, int) and isinstance(rank, int)):
            return False
        worlds.add(world)
        ranks.add(rank)
        if any(sizes.get(file) != size for file, size in files.items()):
            return False
    return len(worlds) == 1 and ranks == set(range(worlds.pop()))
