"""What ended trials keep on storage (`sweep.retain`).

A trial keeps its spec, step log and runtime record for good. Its best-model export and its
resume checkpoints are deleted once two things hold:

- **the sweep's saved state records it as ended** (Tune's newest `experiment_state-*.json` on
  storage, the file `--resume` reads, lists it TERMINATED): a driver killed before that
  snapshot resumes the trial, which needs its checkpoint;
- **enough trials the saved state records as ended beat it strictly** by their best value of
  the sweep's metric (`exports` for the export, `checkpoints` for the checkpoints): their
  values never change and new trials only add rivals, so a trial that N of them beat can never
  become the sweep's best (whose export becomes `best-model/`). Ties keep both.

During a sweep the `Retention` callback prunes as trials end: it looks at the saved state at
most every `LOOK_EVERY_S` (less often when reading it is slow), and only at trials that ended
`SETTLE_S` ago or more (a stopped multi-worker trial's workers may still be writing). After
the sweep, `prune_after_sweep` goes over every trial of every experiment once more, with the
same two conditions and the values the sweep picks its best by. Under PBT/PB2 a live trial
may go on from another trial's checkpoint, and a trial's recorded best is what Ray has
misreported there, so nothing goes before the sweep ends, and checkpoints not even then while
a trial of the experiment has not ended (an errored one may be resumed from another's
checkpoint).
"""

from __future__ import annotations

import json
import math
import sys
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sweep_sections import RetainSpec
from raytune_ft.storage import Location
from raytune_ft.train.export import EXPORTS_DIR

RECORD = "retention.json"
LOOK_EVERY_S = 30.0
LOOK_SHARE = 20
SETTLE_S = 30.0
ENDED = "TERMINATED"
# Where a trial's resume checkpoints live: Tune's trial folder (one-worker trials) and the
# trial's own Ray Train runs (multi-worker trials; an out-of-memory retry is a new run).
TRAIN_RUNS_PREFIX = "ray-train"
CHECKPOINT_PREFIX = "checkpoint_"


def retain_of(spec: ExperimentSpec) -> RetainSpec:
    assert spec.sweep is not None
    return spec.sweep.retain


def beaten_by(values: Mapping[str, float | None], keep: int | None, mode: str) -> set[str]:
    """The trials at least `keep` others beat strictly (a trial with no value is beaten by
    every trial with one); `keep` None beats no one. O(n log n): a big sweep ranks often."""
    if keep is None:
        return set()
    sign = 1.0 if mode == "max" else -1.0
    scores = sorted(sign * v for v in values.values() if v is not None)
    with_value = len(scores)
    beaten = set()
    for trial, value in values.items():
        better = with_value if value is None else with_value - bisect_right(scores, sign * value)
        if better >= keep:
            beaten.add(trial)
    return beaten


@dataclass(frozen=True)
class TrialFiles:
    """One ended trial's deletable files: its export folder and checkpoint folders."""

    trial_id: str
    folder: Location  # the sweep's trials/<id>/
    tune_folder: Location  # Tune's folder of the trial (one-worker trials' checkpoints)

    def export(self) -> Location | None:
        exports = self.folder / EXPORTS_DIR
        return exports if exports.exists() else None

    def checkpoints(self) -> list[Location]:
        runs = [r for r in self.folder.children() if r.name.startswith(TRAIN_RUNS_PREFIX)]
        return [
            checkpoint
            for parent in [*runs, self.tune_folder]
            for checkpoint in parent.children()
            if checkpoint.name.startswith(CHECKPOINT_PREFIX)
        ]


@dataclass
class Pruner:
    """Deletes what `sweep.retain` does not keep, trial by trial (each trial's files once)."""

    spec: ExperimentSpec
    when: str  # "during the sweep" or "after the sweep", in each record
    exports_done: set[str] = field(default_factory=set)
    checkpoints_done: set[str] = field(default_factory=set)

    def prune(
        self,
        candidates: Iterable[TrialFiles],
        rivals: Mapping[str, float | None],
        checkpoints: bool = True,
    ) -> None:
        """Delete the files of `candidates` that enough `rivals` beat (both: trials the saved
        state records as ended, by their best value); `checkpoints` False keeps those."""
        retain, mode = retain_of(self.spec), self.spec.metric_mode
        lose_export = beaten_by(rivals, retain.exports, mode)
        lose_checkpoints = beaten_by(rivals, retain.checkpoints, mode) if checkpoints else set()
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
                self._record(trial, gone, rivals[trial.trial_id])

    def _record(self, trial: TrialFiles, gone: dict[str, Any], value: float | None) -> None:
        target = trial.folder / RECORD
        records = json.loads(target.read_text()) if target.exists() else {"deleted": []}
        retain = retain_of(self.spec)
        records["deleted"].append(
            gone
            | {
                "when": self.when,
                "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "why": f"ended with best {self.spec.metric} {value}, and at least "
                f"{retain.exports if 'export' in gone else retain.checkpoints} ended trials "
                f"beat it (sweep.retain: exports {_count(retain.exports)}, checkpoints "
                f"{_count(retain.checkpoints)})",
            }
        )
        target.write_json(records)


def _count(keep: int | None) -> str:
    return "all" if keep is None else str(keep)


def start_line(spec: ExperimentSpec) -> str | None:
    """What the sweep will delete, said once at its start (nothing a user trained goes
    silently)."""
    retain = retain_of(spec)
    parts = []
    if retain.exports is not None:
        parts.append(f"their exports unless among the best {retain.exports}")
    if retain.checkpoints is not None:
        parts.append(
            "their resume checkpoints"
            + (f" unless among the best {retain.checkpoints}" if retain.checkpoints else "")
        )
    if not parts:
        return None
    return f"sweep: ended trials lose {' and '.join(parts)} (sweep.retain)"


def end_line(spec: ExperimentSpec, ended: int) -> str | None:
    """The policy as it applied, once all trials have ended (None if it keeps everything)."""
    retain = retain_of(spec)
    if retain.exports is None and retain.checkpoints is None:
        return None

    def best(keep: int | None) -> str:
        if keep is None or keep >= ended:
            return "every one"
        return f"the best {keep}" if keep else "none"

    return (
        f"sweep: {ended} trials ended; exports kept: {best(retain.exports)}, checkpoints "
        f"kept: {best(retain.checkpoints)} (sweep.retain; what the others lost is listed in "
        f"their {RECORD})"
    )


def stored_statuses(experiment: Location) -> dict[str, str] | None:
    """Trial id -> status in the newest experiment state on storage (the file `--resume`
    reads: the newest by name); None if there is none or it cannot be read."""
    name = experiment.newest("experiment_state-", ".json")
    if name is None:
        return None
    try:
        state = json.loads((experiment / name).read_text())
        statuses = {}
        for trial_json, _ in state["trial_data"]:
            trial = json.loads(trial_json)
            statuses[str(trial["trial_id"])] = str(trial["status"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return statuses


def best_value(values: Iterable[Any], mode: str) -> float | None:
    """A trial's best reported value, NaN skipped (as pandas' max and min skip it, which the
    sweep's choice of its best reads)."""
    numbers = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not numbers:
        return None
    return max(numbers) if mode == "max" else min(numbers)


class Retention:
    """A Tune callback (built lazily so this module imports without Ray) that prunes ended
    trials' files while the sweep runs; see the module's docstring."""

    def __new__(cls, spec: ExperimentSpec, sweep_dir: Location) -> Any:
        from ray.tune import Callback

        assert spec.sweep is not None
        # Ray's own per-trial best (`metric_analysis`) takes a NaN for a best and forgets
        # the real one: the callback keeps the best of the values each trial reported.
        metric, mode = spec.metric, spec.metric_mode
        active = not spec.sweep.scheduler.is_population

        class _Callback(Callback):
            def __init__(self) -> None:
                self._reset()

            def _reset(self) -> None:
                self.best: dict[str, float | None] = {}
                # Trials whose every result this driver did not see (from their first): one
                # resumed by a restarted driver has an earlier best this one never heard of.
                self.partial: set[str] = set()
                # Trials the saved state brought back with results (a multi-worker trial, or
                # one sent back to step 0, starts again at iteration 1 with an earlier export).
                self.restored: set[str] | None = None
                self.ended: dict[str, tuple[float, TrialFiles]] = {}
                self.confirmed: set[str] = set()  # ended in the saved state, and settled
                self.looked = 0.0
                self.look_every = LOOK_EVERY_S
                self.warned = False
                self.pruner = Pruner(spec, when="during the sweep")

            def on_step_begin(self, iteration: int, trials: list[Any], **_: Any) -> None:
                if self.restored is None:  # the driver's first step: Tune's restored trials
                    self.restored = {
                        t.trial_id
                        for t in trials
                        if "training_iteration" in (t.run_metadata.last_result or {})
                    }

            def on_trial_result(
                self, iteration: int, trials: list[Any], trial: Any, result: dict, **_: Any
            ) -> None:
                trial_id = trial.trial_id
                if trial_id not in self.best and (
                    result.get("training_iteration") != 1 or trial_id in (self.restored or ())
                ):
                    self.partial.add(trial_id)
                self.best[trial_id] = best_value(
                    [self.best.get(trial_id), result.get(metric)], mode
                )

            def on_trial_complete(
                self, iteration: int, trials: list[Any], trial: Any, **_: Any
            ) -> None:
                if active and trial.trial_id not in self.partial:
                    self.ended[trial.trial_id] = (time.monotonic(), _files(trial, sweep_dir))

            def on_step_end(self, iteration: int, trials: list[Any], **_: Any) -> None:
                now = time.monotonic()
                waiting = len(self.ended) > len(self.confirmed)
                if not waiting or not trials or now - self.looked < self.look_every:
                    return
                self.looked = now
                try:
                    self._prune(trials[0], now)
                    # The state file grows with the trials (27 KB each in the quickstart; 1.3 s
                    # to read at 10,000 here): looking takes at most 1/LOOK_SHARE of the driver.
                    self.look_every = max(LOOK_EVERY_S, LOOK_SHARE * (time.monotonic() - now))
                # Pruning saves disk; it must never stop the sweep (the pass after it retries).
                except Exception as exc:
                    if not self.warned:
                        self.warned = True
                        print(
                            f"sweep: could not delete ended trials' files ({type(exc).__name__}"
                            f": {exc}); the sweep goes on, and tries again after it",
                            file=sys.stderr,
                            flush=True,
                        )

            def _prune(self, any_trial: Any, now: float) -> None:
                storage = any_trial.storage
                experiment = Location(
                    storage.storage_filesystem, storage.experiment_fs_path, sweep_dir.scheme
                )
                statuses = stored_statuses(experiment)
                if statuses is None:
                    return
                self.confirmed |= {
                    trial_id
                    for trial_id, (ended_at, _) in self.ended.items()
                    if statuses.get(trial_id) == ENDED and now - ended_at >= SETTLE_S
                }
                # Rivals and candidates alike: trials whose end the saved state holds (one
                # still running there could resume from an older checkpoint and lose its best).
                rivals = {trial_id: self.best.get(trial_id) for trial_id in self.confirmed}
                self.pruner.prune([self.ended[i][1] for i in self.confirmed], rivals)

            def __reduce__(self) -> tuple[Any, ...]:
                # Pickled with the experiment: a restored driver starts afresh, with the code
                # it runs (cloudpickle would keep this class's code as the sweep started).
                return (Retention, (spec, sweep_dir))

        return _Callback()


def _files(trial: Any, sweep_dir: Location) -> TrialFiles:
    storage = trial.storage
    return TrialFiles(
        trial.trial_id,
        sweep_dir / "trials" / trial.trial_id,
        Location(storage.storage_filesystem, storage.trial_fs_path, sweep_dir.scheme),
    )


@dataclass(frozen=True)
class EndedTrial:
    """A trial of the finished sweep as its results show it (errored ones are not ended)."""

    trial_id: str
    tune_folder: Location
    value: float | None


def prune_after_sweep(
    spec: ExperimentSpec, sweep_dir: Location, experiments: Mapping[str, list[EndedTrial]]
) -> str | None:
    """Once the sweep has ended (Tune saved its state on the way out): rank the trials of
    every experiment (Tune folder -> its trials that ended without an error) that the saved
    state records as ended, and delete what `sweep.retain` does not keep; the line to say."""
    assert spec.sweep is not None
    population = spec.sweep.scheduler.is_population
    try:
        files: list[TrialFiles] = []
        rivals: dict[str, float | None] = {}
        checkpoints_ok: set[str] = set()
        for tune_dir, trials in experiments.items():
            statuses = stored_statuses(sweep_dir / tune_dir) or {}
            confirmed = [t for t in trials if statuses.get(t.trial_id) == ENDED]
            files += [
                TrialFiles(t.trial_id, sweep_dir / "trials" / t.trial_id, t.tune_folder)
                for t in confirmed
            ]
            rivals |= {t.trial_id: t.value for t in confirmed}
            # Under PBT/PB2 a trial that has not ended (errored: it may be resumed) may go on
            # from another trial's checkpoint.
            if not population or all(s == ENDED for s in statuses.values()):
                checkpoints_ok |= {t.trial_id for t in confirmed}
        pruner = Pruner(spec, when="after the sweep")
        pruner.prune([f for f in files if f.trial_id in checkpoints_ok], rivals)
        pruner.prune([f for f in files if f.trial_id not in checkpoints_ok], rivals, False)
    # Pruning saves disk; the sweep's results and best model matter more.
    except Exception as exc:
        return failed_line(exc)
    return end_line(spec, len(rivals))


def failed_line(exc: Exception) -> str:
    return (
        f"sweep: could not delete ended trials' files ({type(exc).__name__}: {exc}); those not "
        "yet deleted stay"
    )
