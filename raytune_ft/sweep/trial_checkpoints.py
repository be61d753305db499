"""A resumed trial goes on from the newest whole checkpoint it persisted.

Tune names each trial's latest checkpoint in its experiment snapshot, taken at most every
~10 s, and deletes checkpoints beyond `num_to_keep` as soon as a newer one is registered. A
sweep driver killed between the two leaves a snapshot naming a checkpoint that is gone (the
resumed trial errors: "Could not recover from checkpoint as it does not exist on storage
anymore") or half deleted (DeepSpeed's `assert len(self.ckpt_list) > 0`). Killed before any
snapshot named one, the trial restarts from step 0 though its checkpoints are on storage.

`ResumeFromNewest` looks at each resumed trial before Tune starts it: when the named
checkpoint is not whole, none is named, or (without a population scheduler, whose trials go
on from other trials' checkpoints) a newer whole one of its own is on storage, the trial goes
on from its newest whole checkpoint that has a logged result, else from the start, with a
line saying which. Its checkpoint numbering moves past every folder on storage, so a new
checkpoint never lands in an old one's folder.

Whole: every rank's manifest is there and its files have its sizes (`train/manifest.py`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from raytune_ft.train.manifest import is_whole

_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
# The result a trial reported with a checkpoint, written into it (`sweep/in_process.py`):
# Tune's own record of it reaches storage only with the next snapshot.
RESULT_FILE = "tune-result.json"
KEEP = "keep"  # go on from the checkpoint Tune names


@dataclass(frozen=True)
class Persisted:
    """A whole checkpoint in a trial's folder, with the result Tune logged with it."""

    index: int
    path: str
    metrics: dict[str, Any]


def checkpoint_index(path: str) -> int | None:
    match = _CHECKPOINT.match(path.rstrip("/").rsplit("/", 1)[-1])
    return int(match[1]) if match else None


def persisted(fs: Any, trial_path: str) -> tuple[list[Persisted], dict[int, str]]:
    """The trial's whole checkpoints whose result is known, oldest first, and every
    checkpoint folder on storage (index -> path, whole or not).

    A checkpoint's result is Tune's logged row (`result.json`, uploaded with each snapshot,
    so it lags like the snapshot), else the copy the trial wrote into the checkpoint
    (RESULT_FILE)."""
    from pyarrow import fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_path))
    except (FileNotFoundError, OSError):
        return [], {}
    folders = {
        index: info.path
        for info in infos
        if info.type == pafs.FileType.Directory
        and (index := checkpoint_index(info.path)) is not None
    }
    if not folders:
        return [], {}
    rows = _logged_results(fs, f"{trial_path}/result.json")
    found = []
    for index in sorted(folders):
        path = folders[index]
        if not is_whole(fs, path):
            continue
        metrics = rows.get(path.rsplit("/", 1)[-1]) or _read_json(fs, f"{path}/{RESULT_FILE}")
        if isinstance(metrics, dict) and isinstance(metrics.get("training_iteration"), int):
            found.append(Persisted(index, path, metrics))
    return found, folders


def _read_json(fs: Any, path: str) -> Any:
    try:
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.readall())
    except (FileNotFoundError, OSError, ValueError):
        return None


def _logged_results(fs: Any, path: str) -> dict[str, dict[str, Any]]:
    """checkpoint folder name -> the result row Tune logged with it."""
    try:
        with fs.open_input_stream(path) as stream:
            lines = stream.readall().decode(errors="replace").splitlines()
    except (FileNotFoundError, OSError):
        return {}
    rows = {}
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # the last line, cut by the kill
            continue
        if isinstance(row, dict) and isinstance(row.get("checkpoint_dir_name"), str):
            rows[row["checkpoint_dir_name"]] = row
    return rows


def choose(
    named: str | None,
    named_whole: bool,
    own: list[Persisted],
    trial_path: str,
    prefer_newest: bool,
) -> Persisted | str | None:
    """Where a resumed trial goes on from: KEEP (what Tune names), a checkpoint of
    its own, or None (the start).

    A named checkpoint outside the trial's folder is another trial's (a population
    scheduler's exploit): kept when whole. With `prefer_newest` (no population scheduler),
    a newer whole checkpoint of its own wins over the one a lagging snapshot names.
    """
    newest = own[-1] if own else None
    if named is None:
        return newest if newest is not None else KEEP
    if not named_whole:
        return newest
    if not named.startswith(trial_path.rstrip("/") + "/"):
        return KEEP
    named_index = checkpoint_index(named)
    if prefer_newest and newest is not None and named_index is not None:
        return newest if newest.index > named_index else KEEP
    return KEEP


class ResumeFromNewest:
    """A Tune callback (built lazily so this module imports without Ray) that points each
    resumed trial at its newest whole checkpoint before Tune starts it; see the module's
    docstring."""

    def __new__(cls, prefer_newest: bool) -> Any:
        from ray.tune import Callback

        class _Callback(Callback):
            def __init__(self) -> None:
                self.looked = False

            def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
                # The first step of a driver: the trials there are the ones Tune restored
                # from its snapshot, not yet given a process (which copies their numbering).
                if self.looked:
                    return
                self.looked = True
                named = _named_checkpoints(trials)
                for trial in trials:
                    if trial.status not in ("PENDING", "PAUSED"):
                        continue
                    try:
                        repair(trial, prefer_newest, named)
                    except Exception as exc:  # Tune's own restore goes on as it would have
                        print(
                            f"sweep: trial {trial.trial_id}: could not check its checkpoints "
                            f"({type(exc).__name__}: {exc}); resuming as Tune saved it",
                            file=sys.stderr,
                            flush=True,
                        )

            def __reduce__(self) -> tuple[Any, ...]:
                # Pickled with the experiment: a restored driver builds it anew from the code
                # it runs (cloudpickle would keep this class's code as the sweep started).
                return (ResumeFromNewest, (prefer_newest,))

        return _Callback()


def _named_checkpoints(trials: list[Any]) -> set[str]:
    """Every checkpoint some trial's latest result names (under PBT, another trial's)."""
    named = set()
    for trial in trials:
        latest = trial.latest_checkpoint_result
        if latest is not None:
            named.add(latest.checkpoint.path.rstrip("/"))
    return named


def repair(trial: Any, prefer_newest: bool, named_elsewhere: set[str] | None = None) -> str | None:
    """Point a Tune trial at where it should go on from; returns the line said, if any."""
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    storage = trial.storage
    fs, trial_path = storage.storage_filesystem, storage.trial_fs_path.rstrip("/")
    own, folders = persisted(fs, trial_path)
    # New checkpoints get folders of their own (a lagging snapshot's numbering would write
    # into folders already on storage).
    highest = max(folders, default=-1)
    storage.current_checkpoint_index = max(storage.current_checkpoint_index, highest)
    trial.invalidate_json_state()
    latest = trial.latest_checkpoint_result
    named = latest.checkpoint.path if latest is not None else None
    named_whole = named is not None and is_whole(latest.checkpoint.filesystem, named)
    choice = choose(named, named_whole, own, trial_path, prefer_newest)
    line = None
    if choice != KEEP:
        # Tune's checkpoint bookkeeping has no public setter: a fresh manager holding the
        # trial's whole checkpoints up to the chosen one (its retention deletes older ones).
        old = trial.run_metadata.checkpoint_manager
        manager = _CheckpointManager(checkpoint_config=old.checkpoint_config)
        if isinstance(choice, Persisted):
            for found in own:
                if found.index <= choice.index:
                    checkpoint = Checkpoint(path=found.path, filesystem=fs)
                    manager.register_checkpoint(_TrainingResult(checkpoint, found.metrics))
        trial.run_metadata.checkpoint_manager = manager
        trial.run_metadata.invalidate_cache()
        chosen = choice if isinstance(choice, Persisted) else None
        line = _line(trial.trial_id, named, named_whole, chosen)
        print(line, file=sys.stderr, flush=True)
    _drop_leftovers(trial, fs, folders, named_elsewhere or set())
    return line


def _drop_leftovers(trial: Any, fs: Any, folders: dict[int, str], named: set[str]) -> None:
    """Delete the trial's checkpoint folders Tune no longer tracks (written after the point
    it goes on from, or half written or deleted): its retention never would."""
    from ray.train._internal.storage import _delete_fs_path

    tracked = {
        result.checkpoint.path
        for result in trial.run_metadata.checkpoint_manager.best_checkpoint_results
    }
    latest = trial.latest_checkpoint_result
    if latest is not None:
        tracked.add(latest.checkpoint.path)
    # By folder name: a path spelled differently must never make a kept one look untracked.
    kept = {_name(path) for path in tracked | named}
    for path in folders.values():
        if _name(path) not in kept:
            _delete_fs_path(fs, path)


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _line(trial_id: str, named: str | None, named_whole: bool, choice: Persisted | None) -> str:
    name = named.rstrip("/").rsplit("/", 1)[-1] if named else None
    if named is None:
        why = "the sweep's last state named no checkpoint"
    elif named_whole:
        why = f"the sweep's last state named an older one ({name})"
    else:
        why = f"its checkpoint {name} is gone or incomplete on storage"
    where = (
        f"goes on from {choice.path.rsplit('/', 1)[-1]}"
        if choice is not None
        else "starts again from step 0 (no whole checkpoint of it is left)"
    )
    return f"sweep: trial {trial_id}: {why}; it {where}"
