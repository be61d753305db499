"""What ended trials keep (`sweep.retain`): the ranking, the saved-state check, the deletion."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.spec.loading import load_spec
from raytune_ft.storage import Location
from raytune_ft.sweep import retention
from raytune_ft.sweep.retention import (
    RECORD,
    EndedTrial,
    beaten_by,
    best_value,
    end_line,
    prune_after_sweep,
    start_line,
    stored_statuses,
)

SPACE = {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}


def local(path: Path) -> Location:
    from pyarrow import fs

    return Location(fs.LocalFileSystem(), str(path), "")


def sweep_spec(scheduler: str = "asha", **retain: object):
    search = {"algorithm": "random" if scheduler == "pbt" else "optuna"}
    return validate_spec(
        minimal_spec(
            sweep={
                "space": SPACE,
                "retain": retain,
                "scheduler": {"name": scheduler},
                "search": search,
            }
        )
    )


def test_a_trial_loses_its_files_only_when_enough_ended_trials_beat_it_strictly() -> None:
    values = {"a": 0.9, "b": 0.8, "c": 0.8, "d": 0.5, "e": None}
    assert beaten_by(values, 1, "max") == {"b", "c", "d", "e"}
    # Ties keep both: b and c are each beaten by a only.
    assert beaten_by(values, 2, "max") == {"d", "e"}
    assert beaten_by(values, 4, "max") == {"e"}  # no value: beaten by every trial with one
    assert beaten_by(values, None, "max") == set()
    assert beaten_by(values, 0, "max") == set(values)
    # A loss is better lower.
    assert beaten_by({"a": 0.1, "b": 0.3}, 1, "min") == {"b"}
    # The best never loses its files, however many keep.
    for keep in range(1, 6):
        assert "a" not in beaten_by(values, keep, "max")


def test_a_trials_best_skips_nan_as_the_sweeps_choice_of_its_best_does() -> None:
    """Ray's per-trial best takes a NaN for the best and then forgets the real one: with
    0.5, 0.3, NaN, 0.4 its min is 0.4, pandas' (which picks the sweep's best) 0.3."""
    import pandas as pd

    reported = [0.5, 0.3, math.nan, 0.4]
    assert best_value(reported, "min") == pd.Series(reported).min() == 0.3
    assert best_value(reported, "max") == 0.5
    assert best_value([None, math.nan], "max") is None


def test_the_sweep_says_what_it_will_delete_and_what_was_kept() -> None:
    assert start_line(sweep_spec()) == (
        "sweep: ended trials lose their exports unless among the best 3 and their "
        "resume checkpoints (sweep.retain)"
    )
    assert start_line(sweep_spec(exports=None, checkpoints=2)) == (
        "sweep: ended trials lose their resume checkpoints unless among the best 2 (sweep.retain)"
    )
    assert start_line(sweep_spec(exports=None, checkpoints=None)) is None
    assert end_line(sweep_spec(exports=2, checkpoints=0), 3) == (
        "sweep: 3 trials ended; exports kept: the best 2, checkpoints kept: none (sweep.retain; "
        "what the others lost is listed in their retention.json)"
    )
    assert "exports kept: every one" in str(end_line(sweep_spec(), 2))
    assert end_line(sweep_spec(exports=None, checkpoints=None), 5) is None


def test_a_bad_retain_value_names_its_field(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        json.dumps(minimal_spec(sweep={"space": SPACE, "retain": {"exports": 0, "keep": 1}}))
    )
    with pytest.raises(UserError) as error:
        load_spec(spec)
    text = str(error.value)
    assert "sweep.retain.exports" in text and "sweep.retain.keep" in text


def trial_folder(sweep: Path, trial_id: str, *, train_run: bool = False) -> Path:
    """A trial as a sweep leaves it: logs, an export, and checkpoints (Tune's folder for a
    one-worker trial, the trial's Ray Train run for a multi-worker one)."""
    trial = sweep / "trials" / trial_id
    (trial / "exports" / "best-00000010-abcd").mkdir(parents=True)
    (trial / "exports" / "best-00000010-abcd" / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (trial / "exports" / "best.json").write_text('{"folder": "exports/best-00000010-abcd"}')
    (trial / "steps.jsonl").write_text('{"step": 10}\n')
    (trial / "spec.yaml").write_text("name: x\n")
    tune = sweep / "ray-tune" / f"trial_driver_{trial_id}"
    tune.mkdir(parents=True)
    (tune / "result.json").write_text("{}\n")
    parent = trial / "ray-train" if train_run else tune
    for index in (1, 2):
        (parent / f"checkpoint_00000{index}").mkdir(parents=True)
        (parent / f"checkpoint_00000{index}" / "model.pt").write_bytes(b"c" * 1000)
    # Ray Train's own bookkeeping file, beside the checkpoints: not a checkpoint.
    (parent / "checkpoint_manager_snapshot.json").write_text("{}")
    return tune


def saved_state(experiment: Path, statuses: dict[str, str], name: str = "01-00-00") -> None:
    """Tune's experiment state file as Ray 2.60 writes it (the fields read here)."""
    experiment.mkdir(parents=True, exist_ok=True)
    rows = [[json.dumps({"trial_id": t, "status": s}), "{}"] for t, s in statuses.items()]
    (experiment / f"experiment_state-2026-11-30_{name}.json").write_text(
        json.dumps({"trial_data": rows, "runner_data": {}})
    )


def left(sweep: Path, tune: Path, trial_id: str) -> tuple[bool, int]:
    """(the trial still has its export, how many checkpoints it still has)."""
    checkpoints = [p for p in [*tune.iterdir(), *(sweep / "trials" / trial_id).rglob("*")]]
    found = [p for p in checkpoints if p.is_dir() and p.name.startswith("checkpoint_")]
    return (sweep / "trials" / trial_id / "exports").exists(), len(found)


def test_after_the_sweep_only_the_best_keep_their_export_and_checkpoints(tmp_path: Path) -> None:
    values = {"t1": 0.70, "t2": 0.95, "t3": 0.90, "t4": None}
    tune = {t: trial_folder(tmp_path, t, train_run=t == "t3") for t in values}
    saved_state(tmp_path / "ray-tune", dict.fromkeys(values, "TERMINATED"))
    ended = {"ray-tune": [EndedTrial(t, local(tune[t]), v) for t, v in values.items()]}

    line = prune_after_sweep(sweep_spec(exports=2, checkpoints=1), local(tmp_path), ended)

    trials = tmp_path / "trials"
    assert line == (
        "sweep: 4 trials ended; exports kept: the best 2, checkpoints kept: the best 1 "
        "(sweep.retain; what the others lost is listed in their retention.json)"
    )
    assert {t: left(tmp_path, tune[t], t) for t in values} == {
        "t1": (False, 0),
        "t2": (True, 2),
        "t3": (True, 0),
        "t4": (False, 0),
    }
    for trial in values:  # logs, specs and Ray's bookkeeping stay
        assert (trials / trial / "steps.jsonl").exists() and (trials / trial / "spec.yaml").exists()
        assert (tune[trial] / "result.json").exists()
    assert (trials / "t3" / "ray-train" / "checkpoint_manager_snapshot.json").exists()
    assert not (trials / "t2" / RECORD).exists()
    [t3] = json.loads((trials / "t3" / RECORD).read_text())["deleted"]
    assert [Path(c["path"]).name for c in t3["checkpoints"]] == [
        "checkpoint_000001",
        "checkpoint_000002",
    ]
    assert Path(t3["checkpoints"][0]["path"]).parent == trials / "t3" / "ray-train"
    assert t3["checkpoints"][0]["bytes"] == 1000 and "export" not in t3
    assert t3["when"] == "after the sweep"
    assert t3["why"] == (
        "ended with best eval_accuracy 0.9, and at least 1 ended trials beat it "
        "(sweep.retain: exports 2, checkpoints 1)"
    )
    [t1] = json.loads((trials / "t1" / RECORD).read_text())["deleted"]
    assert t1["export"]["bytes"] == 100 + len('{"folder": "exports/best-00000010-abcd"}')

    # A second pass (a resumed or extended sweep's end) finds nothing more to delete and
    # leaves the records as they are.
    before = (trials / "t1" / RECORD).read_text()
    prune_after_sweep(sweep_spec(exports=2, checkpoints=1), local(tmp_path), ended)
    assert (trials / "t1" / RECORD).read_text() == before


def test_after_the_sweep_a_trial_the_saved_state_does_not_record_as_ended_keeps_everything(
    tmp_path: Path,
) -> None:
    """HyperBand can stop a paused trial without the saved state ever saying so (Tune then
    resumes it on --resume), and an external stop saves the state before Tune marks running
    trials ended: such a trial neither loses files nor counts as a rival."""
    values = {"paused": 0.99, "a": 0.9, "b": 0.8}
    tune = {t: trial_folder(tmp_path, t) for t in values}
    saved_state(tmp_path / "ray-tune", {"paused": "PAUSED", "a": "TERMINATED", "b": "TERMINATED"})
    ended = {"ray-tune": [EndedTrial(t, local(tune[t]), v) for t, v in values.items()]}
    prune_after_sweep(sweep_spec(exports=1, checkpoints=1), local(tmp_path), ended)
    assert {t: left(tmp_path, tune[t], t) for t in values} == {
        "paused": (True, 2),
        "a": (True, 2),  # the best of the ended ones: the paused trial does not beat it
        "b": (False, 0),
    }


def test_after_a_population_sweep_checkpoints_stay_while_a_trial_may_go_on(
    tmp_path: Path,
) -> None:
    """Under PBT an errored trial (resumable) may go on from another trial's checkpoint:
    that experiment keeps every checkpoint; exports, each trial's own, go as usual."""
    values = {"a": 0.9, "b": 0.8}
    tune = {t: trial_folder(tmp_path, t) for t in values}
    saved_state(tmp_path / "ray-tune", {"a": "TERMINATED", "b": "TERMINATED", "c": "ERROR"})
    ended = {"ray-tune": [EndedTrial(t, local(tune[t]), v) for t, v in values.items()]}
    spec = sweep_spec("pbt", exports=1, checkpoints=0)
    prune_after_sweep(spec, local(tmp_path), ended)
    assert {t: left(tmp_path, tune[t], t) for t in values} == {"a": (True, 2), "b": (False, 2)}
    saved_state(
        tmp_path / "ray-tune", {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED"}, "02"
    )
    prune_after_sweep(spec, local(tmp_path), ended)  # all ended: now they go
    assert {t: left(tmp_path, tune[t], t) for t in values} == {"a": (True, 0), "b": (False, 0)}


def worse_and_better(tmp_path: Path) -> tuple[Path, dict[str, list[EndedTrial]]]:
    """Two ended trials: t1 with its files, beaten by t2 (whose folder is empty)."""
    tune = trial_folder(tmp_path, "t1")
    saved_state(tmp_path / "ray-tune", {"t1": "TERMINATED", "t2": "TERMINATED"})
    ended = [EndedTrial("t1", local(tune), 0.1), EndedTrial("t2", local(tmp_path / "no"), 0.9)]
    return tune, {"ray-tune": ended}


def test_keeping_everything_deletes_nothing(tmp_path: Path) -> None:
    tune, ended = worse_and_better(tmp_path)
    spec = sweep_spec(exports=None, checkpoints=None)
    assert prune_after_sweep(spec, local(tmp_path), ended) is None
    assert left(tmp_path, tune, "t1") == (True, 2)


def test_a_failed_pass_after_the_sweep_says_so_and_keeps_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune, ended = worse_and_better(tmp_path)

    def refuse(self: Location) -> None:
        raise PermissionError(f"{self.uri}: read-only")

    monkeypatch.setattr(Location, "remove", refuse)
    line = prune_after_sweep(sweep_spec(exports=1), local(tmp_path), ended)
    assert line is not None and line.startswith(
        "sweep: could not delete ended trials' files (PermissionError: "
    )
    assert line.endswith("read-only); those not yet deleted stay")
    assert left(tmp_path, tune, "t1") == (True, 2)


def test_the_saved_state_is_read_as_resume_reads_it(tmp_path: Path) -> None:
    """The newest experiment_state file by name (Ray's rule on restore); an unreadable one
    confirms nothing."""
    assert stored_statuses(local(tmp_path)) is None
    saved_state(tmp_path, {"a": "RUNNING"}, "01-00-00")
    saved_state(tmp_path, {"a": "TERMINATED", "b": "ERROR"}, "02-00-00")
    assert stored_statuses(local(tmp_path)) == {"a": "TERMINATED", "b": "ERROR"}
    (tmp_path / "experiment_state-2026-11-30_03-00-00.json").write_text('{"trial_data": [')
    assert stored_statuses(local(tmp_path)) is None


class FakeStorage:
    def __init__(self, experiment: Path, trial_folder: Path) -> None:
        from pyarrow import fs

        self.storage_filesystem = fs.LocalFileSystem()
        self.experiment_fs_path = str(experiment)
        self.trial_fs_path = str(trial_folder)


class FakeRunMetadata:
    def __init__(self, last_result: dict) -> None:
        self.last_result = last_result


class FakeTrial:
    """What the callback reads of a Tune trial."""

    def __init__(self, trial_id: str, experiment: Path, folder: Path, restored: bool) -> None:
        self.trial_id = trial_id
        self.storage = FakeStorage(experiment, folder)
        # A trial Tune brought back from its saved state holds its last result.
        self.run_metadata = FakeRunMetadata({"training_iteration": 7} if restored else {})


class Driver:
    """Feeds a Retention callback as Tune's controller would: results, ends, steps."""

    def __init__(self, tmp_path: Path, spec, names: list[str], restored: tuple = ()) -> None:
        self.sweep, self.experiment = tmp_path, tmp_path / "ray-tune"
        self.tune = {t: trial_folder(tmp_path, t) for t in names}
        self.trials = {t: FakeTrial(t, self.experiment, self.tune[t], t in restored) for t in names}
        self.callback = retention.Retention(spec, local(tmp_path))
        self.step = 0
        self.callback.on_step_begin(iteration=0, trials=list(self.trials.values()))

    def report(self, trial_id: str, values: list[float], first: int = 1) -> None:
        for iteration, value in enumerate(values, start=first):
            self.callback.on_trial_result(
                iteration=self.step,
                trials=list(self.trials.values()),
                trial=self.trials[trial_id],
                result={"eval_accuracy": value, "training_iteration": iteration},
            )

    def end(self, trial_id: str) -> None:
        self.callback.on_trial_complete(
            iteration=self.step, trials=list(self.trials.values()), trial=self.trials[trial_id]
        )

    def look(self) -> dict[str, tuple[bool, int]]:
        self.step += 1
        self.callback.on_step_begin(iteration=self.step, trials=list(self.trials.values()))
        self.callback.on_step_end(iteration=self.step, trials=list(self.trials.values()))
        return {t: left(self.sweep, self.tune[t], t) for t in self.trials}


@pytest.fixture
def at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "LOOK_EVERY_S", 0.0)
    monkeypatch.setattr(retention, "SETTLE_S", 0.0)
    monkeypatch.setattr(retention, "LOOK_SHARE", 0)


def test_during_the_sweep_files_go_only_once_the_saved_state_says_the_trial_ended(
    tmp_path: Path, at_once: None
) -> None:
    """A driver killed before Tune's snapshot records a trial as ended resumes that trial,
    which needs its checkpoint; and a trial the snapshot still has running is no rival (killed
    now, it would resume from an older checkpoint and its best result might be lost)."""
    driver = Driver(tmp_path, sweep_spec(exports=1, checkpoints=0), ["good", "bad", "runs"])
    driver.report("good", [0.7, 0.9])
    driver.report("bad", [0.5])
    driver.report("runs", [0.99])
    for trial in ("good", "bad"):
        driver.end(trial)
    everything = {"good": (True, 2), "bad": (True, 2), "runs": (True, 2)}
    assert driver.look() == everything  # no saved state yet

    saved_state(driver.experiment, {"good": "RUNNING", "bad": "TERMINATED", "runs": "RUNNING"})
    # bad has ended for the saved state, but no trial that has beats it: it keeps its export.
    assert driver.look() == everything | {"bad": (True, 0)}
    saved_state(
        driver.experiment, {"good": "TERMINATED", "bad": "TERMINATED", "runs": "RUNNING"}, "02"
    )
    assert driver.look() == everything | {"good": (True, 0), "bad": (False, 0)}
    # Two records: its checkpoints went first, its export once an ended trial beat it.
    first, then = json.loads((tmp_path / "trials" / "bad" / RECORD).read_text())["deleted"]
    assert len(first["checkpoints"]) == 2 and "export" not in first
    assert then["export"] and "checkpoints" not in then
    assert first["when"] == then["when"] == "during the sweep"


def test_during_the_sweep_a_trial_is_ranked_by_every_value_it_reported_nan_skipped(
    tmp_path: Path, at_once: None
) -> None:
    spec = validate_spec(
        minimal_spec(
            train={"metric": "eval_loss"},
            sweep={"space": SPACE, "retain": {"exports": 1, "checkpoints": None}},
        )
    )
    driver = Driver(tmp_path, spec, ["a", "b"])
    driver.callback.on_trial_result(
        iteration=0, trials=[], trial=driver.trials["a"], result={"training_iteration": 1}
    )
    for value in (0.5, 0.3, math.nan, 0.4):  # a's best loss is 0.3, Ray's own says 0.4
        driver.callback.on_trial_result(
            iteration=0,
            trials=[],
            trial=driver.trials["a"],
            result={"eval_loss": value, "training_iteration": 2},
        )
    driver.callback.on_trial_result(
        iteration=0,
        trials=[],
        trial=driver.trials["b"],
        result={"eval_loss": 0.35, "training_iteration": 1},
    )
    driver.end("a")
    driver.end("b")
    saved_state(driver.experiment, {"a": "TERMINATED", "b": "TERMINATED"})
    assert driver.look() == {"a": (True, 2), "b": (False, 2)}


def test_during_the_sweep_a_trial_a_restarted_driver_saw_only_in_part_is_left_alone(
    tmp_path: Path, at_once: None
) -> None:
    """A trial resumed by a restarted driver reports from its checkpoint on; one Tune brought
    back without a checkpoint of its own (a multi-worker trial, whose Train run resumes
    itself, or one sent back to step 0) starts again at iteration 1 with an earlier export.
    Either way this driver does not know its best: it neither loses files nor beats others
    until the pass after the sweep."""
    names = ["resumed", "restarted", "fresh", "low"]
    driver = Driver(tmp_path, sweep_spec(exports=1, checkpoints=0), names, ("restarted",))
    driver.report("resumed", [0.97], first=5)  # its 0.6 and 0.7 came before the restart
    driver.report("restarted", [0.98])
    driver.report("fresh", [0.9])
    driver.report("low", [0.5])
    for trial in names:
        driver.end(trial)
    saved_state(driver.experiment, dict.fromkeys(names, "TERMINATED"))
    assert driver.look() == {
        "resumed": (True, 2),
        "restarted": (True, 2),
        "fresh": (True, 0),  # the best of the trials seen whole: the others do not beat it
        "low": (False, 0),
    }


def test_during_a_population_sweep_nothing_goes(tmp_path: Path, at_once: None) -> None:
    driver = Driver(tmp_path, sweep_spec("pbt", exports=1, checkpoints=0), ["a", "b"])
    driver.report("a", [0.9])
    driver.report("b", [0.5])
    driver.end("a")
    driver.end("b")
    saved_state(driver.experiment, {"a": "TERMINATED", "b": "TERMINATED"})
    assert driver.look() == {"a": (True, 2), "b": (True, 2)}


def test_during_the_sweep_a_trial_settles_before_its_files_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped multi-worker trial's workers may still be writing when Tune marks it ended."""
    monkeypatch.setattr(retention, "LOOK_EVERY_S", 0.0)
    monkeypatch.setattr(retention, "SETTLE_S", 3600.0)
    driver = Driver(tmp_path, sweep_spec(exports=1, checkpoints=0), ["a"])
    driver.report("a", [0.9])
    driver.end("a")
    saved_state(driver.experiment, {"a": "TERMINATED"})
    assert driver.look() == {"a": (True, 2)}


def test_the_callback_survives_a_pruning_error_and_a_restored_driver_starts_afresh(
    tmp_path: Path, at_once: None, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import pickle

    import cloudpickle

    driver = Driver(tmp_path, sweep_spec(exports=1), ["a", "b"])
    driver.report("a", [0.9])
    driver.report("b", [0.5])
    driver.end("a")
    driver.end("b")
    saved_state(driver.experiment, {"a": "TERMINATED", "b": "TERMINATED"})

    def refuse(self: Location) -> None:
        raise PermissionError("read-only bucket")

    with monkeypatch.context() as patch:
        patch.setattr(Location, "remove", refuse)
        driver.look()
        driver.look()
    assert capsys.readouterr().err == (
        "sweep: could not delete ended trials' files (PermissionError: read-only bucket); the "
        "sweep goes on, and tries again after it\n"
    )  # said once
    # Pickled with the experiment as Tune does: a restored driver gets a new callback built
    # by the code it runs, not the pickled class's code.
    restored = pickle.loads(cloudpickle.dumps(driver.callback))
    assert type(restored) is not type(driver.callback)
    assert restored.__reduce__()[0] is retention.Retention
    assert restored.ended == {} and restored.best == {} and restored.restored is None


def test_a_slow_saved_state_makes_the_callback_look_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune's state file grows with the trials; reading it takes at most a twentieth of the
    driver's time."""
    monkeypatch.setattr(retention, "LOOK_EVERY_S", 0.0)
    monkeypatch.setattr(retention, "SETTLE_S", 0.0)
    driver = Driver(tmp_path, sweep_spec(exports=1), ["a", "b"])
    driver.report("a", [0.9])
    driver.end("a")
    reads = []

    def slow(experiment: Location) -> None:
        reads.append(experiment)
        time.sleep(0.05)

    monkeypatch.setattr(retention, "stored_statuses", slow)
    driver.look()
    assert len(reads) == 1 and driver.callback.look_every >= 20 * 0.05
    driver.look()  # too soon after a slow read
    assert len(reads) == 1


class FakeResult:
    """A Tune Result as the sweep's ResultGrid holds it (the fields read here)."""

    def __init__(self, path: str, trial_id: str | None, values: list[float], error=None) -> None:
        import pandas as pd
        from pyarrow import fs

        self.path, self.filesystem, self.error = path, fs.LocalFileSystem(), error
        self.metrics = {"trial_id": trial_id} if trial_id else {}
        self.metrics_dataframe = pd.DataFrame({"eval_accuracy": values}) if values else None


def test_the_pass_after_the_sweep_reads_each_experiments_ended_trials_from_the_results(
    tmp_path: Path,
) -> None:
    """Grouped by Tune folder (the first experiment's and an extension's), each trial's best
    as the sweep picks its best (NaN skipped), errored trials and trials that never reported
    left out."""
    from raytune_ft.sweep.runner import _ended_trials

    spec = sweep_spec()
    grids = [
        [
            FakeResult(f"{tmp_path}/ray-tune/trial_a", "a", [0.5, math.nan, 0.7]),
            FakeResult(f"{tmp_path}/ray-tune/trial_b", "b", [0.9], error=RuntimeError("x")),
            FakeResult(f"{tmp_path}/ray-tune/trial_c", None, []),
        ],
        [FakeResult(f"{tmp_path}/ray-tune-ext1/trial_d", "d", [])],
    ]
    ended = _ended_trials(grids, spec, local(tmp_path))
    assert {
        folder: [(t.trial_id, t.value) for t in trials] for folder, trials in ended.items()
    } == {
        "ray-tune": [("a", 0.7)],
        "ray-tune-ext1": [("d", None)],
    }
    assert ended["ray-tune"][0].tune_folder.path == f"{tmp_path}/ray-tune/trial_a"
