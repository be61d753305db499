"""What ended trials keep on storage (`sweep.retain`).

A trial keeps its spec, step log and runtime record for good. Its best-model export and its
resume checkpoints are deleted once two things hold:

- **the sweep's saved state records it as ended** (Tune's newest `experiment_state-*.json` on
  storage, the file `--resume` reads, lists it TERMINATED): a driver killed before that
  snapshot resumes the trial, which needs its checkpoint;
- **enough ended trials rank strictly above it** by their best value of the sweep's metric
  (`exports` for the export, `checkpoints` for the checkpoints): ended trials' values never
  change and new trials only add rivals, so a trial that N ended trials beat can never become
  the sweep's best (whose export becomes `best-model/`). Ties keep both.

During a sweep the `Retention` callback prunes as trials end (checking the saved state at most
every `CONFIRM_EVERY_S`); after it, `prune_after_sweep` goes over every trial once more, from
the results the sweep ranks its best by. Under PBT/PB2 a trial's checkpoint may be the one
another trial goes on from, so their checkpoints go only after the sweep.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.storage import Location
from raytune_ft.train.export import EXPORTS_DIR

RECORD = "retention.json"
CONFIRM_EVERY_S = 30.0
ENDED = "TERMINATED"
# Where a trial's resume checkpoints live: Tune's trial folder (one-worker trials) and the
# trial's own Ray Train runs (multi-worker trials; an out-of-memory retry is a new run).
TRAIN_RUNS_PREFIX = "ray-train"
CHECKPOINT_PREFIX = "checkpoint_"


def beaten_by(values: Mapping[str, float | None], keep: int | None, mode: str) -> set[str]:
    """The trials at least `keep` others beat strictly (a trial with no value is beaten by
    every trial with one); `keep` None beats no one."""
    if keep is None:
        return set()

    def better(a: float | None, b: float | None) -> bool:
        if a is None:
            return False
        if b is None:
            return True
        return a > b if mode == "max" else a < b

    return {
        trial
        for trial, value in values.items()
        if sum(better(other, value) for name, other in values.items() if name != trial) >= keep
    }


@dataclass
class TrialFiles:
    """One ended trial's deletable files: its export folder and checkpoint folders."""

    trial_id: str
    folder: Location  # the sweep's trials/<id>/
    tune_folder: Location | None  # Tune's folder of the trial (one-worker checkpoints)
    value: float | None

    def export(self) -> Location | None:
        exports = self.folder / EXPORTS_DIR
        return exports if exports.exists() else None

    def checkpoints(self) -> list[Location]:
        found = []
        runs = [r for r in self.folder.children() if r.name.startswith(TRAIN_RUNS_PREFIX)]
        for parent in [*runs, *([self.tune_folder] if self.tune_folder else [])]:
            found += [c for c in parent.children() if c.name.startswith(CHECKPOINT_PREFIX)]
        return found


@dataclass
class Pruner:
    """Deletes what `sweep.retain` does not keep, trial by trial (each trial's files once)."""

    spec: ExperimentSpec
    when: str = "after the sweep"  # or "during the sweep", in each record
    exports_done: set[str] = field(default_factory=set)
    checkpoints_done: set[str] = field(default_factory=set)

    def prune(
        self,
        candidates: Iterable[TrialFiles],
        rivals: Mapping[str, float | None],
        checkpoints_now: bool = True,
    ) -> None:
        """Delete the files of `candidates` (trials the saved state records as ended) that
        enough `rivals` (every ended trial, by its best value) beat."""
        retain = self.spec.sweep.retain  # type: ignore[union-attr]
        mode = self.spec.metric_mode
        lose_export = beaten_by(rivals, retain.exports, mode)
        lose_checkpoints = beaten_by(rivals, retain.checkpoints, mode) if checkpoints_now else set()
        for trial in candidates:
            gone: dict[str, Any] = {}
            if trial.trial_id in lose_export and trial.trial_id not in self.exports_done:
                export = trial.export()
                if export is not None:
                    gone["export"] = {"path": export.uri, "bytes": export.size_bytes()}
                    export.remove()
                self.exports_done.add(trial.trial_id)
            if trial.trial_id in lose_checkpoints and trial.trial_id not in self.checkpoints_done:
                folders = trial.checkpoints()
                if folders:
                    gone["checkpoints"] = [
                        {"path": c.uri, "bytes": c.size_bytes()} for c in folders
                    ]
                    for checkpoint in folders:
                        checkpoint.remove()
                self.checkpoints_done.add(trial.trial_id)
            if gone:
                _record(trial, gone | {"when": self.when}, self.spec)


def kept_line(spec: ExperimentSpec, rivals: Mapping[str, float | None]) -> str | None:
    """What the sweep's ended trials keep, once all have ended (None if `sweep.retain`
    keeps everything)."""
    retain = spec.sweep.retain  # type: ignore[union-attr]
    if retain.exports is None and retain.checkpoints is None:
        return None
    mode, ended = spec.metric_mode, len(rivals)

    def kept(keep: int | None) -> int:
        return ended - len(beaten_by(rivals, keep, mode))

    return (
        f"sweep: of {ended} ended trials, {kept(retain.exports)} keep their best-model export "
        f"and {kept(retain.checkpoints)} their resume checkpoints (sweep.retain; what the "
        f"others had is listed in their {RECORD})"
    )


def _record(trial: TrialFiles, gone: dict[str, Any], spec: ExperimentSpec) -> None:
    target = trial.folder / RECORD
    earlier = json.loads(target.read_text()) if target.exists() else {"deleted": []}
    retain = spec.sweep.retain  # type: ignore[union-attr]
    earlier["deleted"].append(
        gone
        | {
            "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "why": f"ended with best {spec.metric} {trial.value}; sweep.retain keeps the "
            f"export of the best {retain.exports} and the checkpoints of the best "
            f"{retain.checkpoints} ended trials, and enough ended trials beat it",
        }
    )
    target.write_json(earlier)


def start_line(spec: ExperimentSpec) -> str | None:
    """What the sweep will delete, said once at its start (nothing a user trained goes
    silently)."""
    retain = spec.sweep.retain  # type: ignore[union-attr]
    parts = []
    if retain.exports is not None:
        parts.append(f"their best-model export unless among the best {retain.exports}")
    if retain.checkpoints is not None:
        parts.append(
            "their resume checkpoints"
            + (f" unless among the best {retain.checkpoints}" if retain.checkpoints else "")
        )
    if not parts:
        return None
    return f"sweep: ended trials lose {' and '.join(parts)} (sweep.retain)"


def stored_statuses(experiment: Location) -> dict[str, str] | None:
    """Trial id -> status in the newest experiment state on storage (what `--resume` reads);
    None if there is none or it cannot be read."""
    from pyarrow import fs

    selector = fs.FileSelector(experiment.path, allow_not_found=True)
    names = sorted(
        info.base_name
        for info in experiment.fs.get_file_info(selector)
        if info.base_name.startswith("experiment_state-") and info.base_name.endswith(".json")
    )
    if not names:
        return None
    try:
        state = json.loads((experiment / names[-1]).read_text())
        statuses = {}
        for trial_json, _ in state["trial_data"]:
            trial = json.loads(trial_json)
            statuses[str(trial["trial_id"])] = str(trial["status"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return statuses


class Retention:
    """A Tune callback (built lazily so this module imports without Ray) that prunes ended
    trials' files while the sweep runs; see the module's docstring."""

    def __new__(cls, spec: ExperimentSpec, sweep_dir: Location) -> Any:
        from ray.tune import Callback

        assert spec.sweep is not None
        population = spec.sweep.scheduler.is_population

        class _Callback(Callback):
            def __init__(self) -> None:
                self._reset()

            def _reset(self) -> None:
                self.ended: dict[str, TrialFiles] = {}
                self.waiting = False
                self.looked = 0.0
                self.pruner = Pruner(spec, when="during the sweep")

            def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **_: Any):
                self.ended[trial.trial_id] = _files(trial, spec, sweep_dir)
                self.waiting = True

            def on_step_end(self, iteration: int, trials: list[Any], **_: Any) -> None:
                if not self.waiting or time.monotonic() - self.looked < CONFIRM_EVERY_S:
                    return
                self.looked = time.monotonic()
                try:
                    self._prune(trials)
                # Pruning saves disk; it must never stop the sweep (the pass after it retries).
                except Exception as exc:
                    print(
                        f"sweep: could not delete ended trials' files ({type(exc).__name__}: "
                        f"{exc}); the sweep goes on and tries again at its end",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.waiting = False

            def _prune(self, trials: list[Any]) -> None:
                experiment = _experiment_of(trials, sweep_dir.scheme)
                statuses = stored_statuses(experiment) if experiment is not None else None
                if statuses is None:
                    return
                confirmed = [t for i, t in self.ended.items() if statuses.get(i) == ENDED]
                self.waiting = len(confirmed) < len(self.ended)
                rivals = {i: t.value for i, t in self.ended.items()}
                self.pruner.prune(confirmed, rivals, checkpoints_now=not population)

            def __getstate__(self) -> dict[str, Any]:  # a restored driver starts afresh
                return {}

            def __setstate__(self, state: dict[str, Any]) -> None:
                self._reset()

        return _Callback()


def _files(trial: Any, spec: ExperimentSpec, sweep_dir: Location) -> TrialFiles:
    metric = trial.metric_analysis.get(spec.metric, {})
    value = metric.get(spec.metric_mode)
    tune_folder = Location(
        trial.storage.storage_filesystem, trial.storage.trial_fs_path, sweep_dir.scheme
    )
    return TrialFiles(
        trial.trial_id,
        sweep_dir / "trials" / trial.trial_id,
        tune_folder,
        None if value is None else float(value),
    )


def _experiment_of(trials: list[Any], scheme: str) -> Location | None:
    for trial in trials:
        storage = trial.storage
        return Location(storage.storage_filesystem, storage.experiment_fs_path, scheme)
    return None


@dataclass(frozen=True)
class EndedTrial:
    """A trial of the finished sweep as its results show it (errored ones are not ended)."""

    trial_id: str
    tune_folder: Location
    value: float | None


def prune_after_sweep(
    spec: ExperimentSpec, sweep_dir: Location, ended: list[EndedTrial]
) -> str | None:
    """Once every trial has ended (Tune saved its state on the way out): rank every ended
    trial of every experiment of the sweep and delete what `sweep.retain` does not keep;
    the line to say, if anything went."""
    files = [
        TrialFiles(t.trial_id, sweep_dir / "trials" / t.trial_id, t.tune_folder, t.value)
        for t in ended
    ]
    rivals = {t.trial_id: t.value for t in ended}
    try:
        Pruner(spec).prune(files, rivals)
    # Pruning saves disk; the sweep's results and best model matter more.
    except Exception as exc:
        return (
            f"sweep: could not delete ended trials' files ({type(exc).__name__}: {exc}); they stay"
        )
    return kept_line(spec, rivals)
