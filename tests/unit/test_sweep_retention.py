"""What ended trials keep (`sweep.retain`): the ranking, the saved-state check, the deletion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.spec.loading import load_spec
from raytune_ft.storage import Location
from raytune_ft.sweep.retention import (
    RECORD,
    EndedTrial,
    beaten_by,
    kept_line,
    prune_after_sweep,
    start_line,
    stored_statuses,
)

SPACE = {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}


def local(path: Path) -> Location:
    from pyarrow import fs

    return Location(fs.LocalFileSystem(), str(path), "")


def sweep_spec(**retain: object):
    return validate_spec(minimal_spec(sweep={"space": SPACE, "retain": retain}))


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


def test_the_sweep_says_what_it_will_delete_and_what_was_kept() -> None:
    assert start_line(sweep_spec()) == (
        "sweep: ended trials lose their best-model export unless among the best 3 and their "
        "resume checkpoints (sweep.retain)"
    )
    assert start_line(sweep_spec(exports=None, checkpoints=2)) == (
        "sweep: ended trials lose their resume checkpoints unless among the best 2 (sweep.retain)"
    )
    assert start_line(sweep_spec(exports=None, checkpoints=None)) is None
    line = kept_line(sweep_spec(exports=2, checkpoints=0), {"a": 0.9, "b": 0.8, "c": 0.7})
    assert line is not None and "of 3 ended trials, 2 keep their best-model export and 0 " in line


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
    return tune


def test_after_the_sweep_only_the_best_keep_their_export_and_checkpoints(tmp_path: Path) -> None:
    values = {"t1": 0.70, "t2": 0.95, "t3": 0.90, "t4": None}
    tune = {t: trial_folder(tmp_path, t, train_run=t == "t3") for t in values}
    ended = [EndedTrial(t, local(tune[t]), v) for t, v in values.items()]

    line = prune_after_sweep(sweep_spec(exports=2, checkpoints=1), local(tmp_path), ended)

    trials = tmp_path / "trials"
    assert line == (
        "sweep: of 4 ended trials, 2 keep their best-model export and 1 their resume "
        "checkpoints (sweep.retain; what the others had is listed in their retention.json)"
    )
    assert {t for t in values if (trials / t / "exports").exists()} == {"t2", "t3"}
    checkpointed = {
        t for t in values if list(tune[t].glob("checkpoint_*")) or list(trials.glob(f"{t}/*/ch*"))
    }
    assert checkpointed == {"t2"}
    for trial in values:  # logs and specs stay
        assert (trials / trial / "steps.jsonl").exists() and (trials / trial / "spec.yaml").exists()
        assert (tune[trial] / "result.json").exists()
    assert not (trials / "t2" / RECORD).exists()
    t3 = json.loads((trials / "t3" / RECORD).read_text())["deleted"]
    assert [Path(c["path"]).name for c in t3[0]["checkpoints"]] == [
        "checkpoint_000001",
        "checkpoint_000002",
    ]
    assert "ray-train" in t3[0]["checkpoints"][0]["path"]  # the multi-worker trial's own run
    assert t3[0]["checkpoints"][0]["bytes"] == 1000 and "export" not in t3[0]
    assert t3[0]["when"] == "after the sweep"
    t1 = json.loads((trials / "t1" / RECORD).read_text())["deleted"]
    assert t1[0]["export"]["bytes"] == 100 + len('{"folder": "exports/best-00000010-abcd"}')
    assert t1[0]["why"].startswith("ended with best eval_accuracy 0.7; sweep.retain keeps the ")

    # A second pass (a resumed or extended sweep's end) finds nothing more to delete and
    # leaves the records as they are.
    before = (trials / "t1" / RECORD).read_text()
    prune_after_sweep(sweep_spec(exports=2, checkpoints=1), local(tmp_path), ended)
    assert (trials / "t1" / RECORD).read_text() == before


def test_keeping_everything_deletes_nothing(tmp_path: Path) -> None:
    tune = trial_folder(tmp_path, "t1")
    ended = [EndedTrial("t1", local(tune), 0.1), EndedTrial("t2", local(tmp_path / "no"), 0.9)]
    spec = sweep_spec(exports=None, checkpoints=None)
    assert prune_after_sweep(spec, local(tmp_path), ended) is None
    assert (tmp_path / "trials" / "t1" / "exports").exists() and list(tune.glob("checkpoint_*"))


def test_the_saved_state_is_read_as_resume_reads_it(tmp_path: Path) -> None:
    """The newest experiment_state file by name (Ray's rule on restore); an unreadable one
    confirms nothing."""
    assert stored_statuses(local(tmp_path)) is None

    def state(name: str, statuses: dict[str, str]) -> None:
        trials = [
            [json.dumps({"trial_id": t, "status": s, "config": {}}), "{}"]
            for t, s in statuses.items()
        ]
        (tmp_path / name).write_text(json.dumps({"trial_data": trials, "runner_data": {}}))

    state("experiment_state-2026-11-30_01-00-00.json", {"a": "RUNNING"})
    state("experiment_state-2026-11-30_02-00-00.json", {"a": "TERMINATED", "b": "ERROR"})
    assert stored_statuses(local(tmp_path)) == {"a": "TERMINATED", "b": "ERROR"}
    (tmp_path / "experiment_state-2026-11-30_03-00-00.json").write_text('{"trial_data": [')
    assert stored_statuses(local(tmp_path)) is None


class FakeStorage:
    def __init__(self, experiment: Path, trial_folder: Path) -> None:
        from pyarrow import fs

        self.storage_filesystem = fs.LocalFileSystem()
        self.experiment_fs_path = str(experiment)
        self.trial_fs_path = str(trial_folder)


class FakeTrial:
    """What the callback reads of a Tune trial."""

    def __init__(self, trial_id: str, value: float, experiment: Path, folder: Path) -> None:
        self.trial_id = trial_id
        self.metric_analysis = {"eval_accuracy": {"max": value, "min": value, "last": value}}
        self.storage = FakeStorage(experiment, folder)


def test_during_the_sweep_files_go_only_once_the_saved_state_says_the_trial_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver killed before Tune's snapshot records a trial as ended resumes that trial,
    which needs its checkpoint: nothing of it may go before the snapshot says TERMINATED."""
    from raytune_ft.sweep import retention

    monkeypatch.setattr(retention, "CONFIRM_EVERY_S", 0.0)
    experiment = tmp_path / "ray-tune"
    tune = {t: trial_folder(tmp_path, t) for t in ("good", "bad")}
    trials = [
        FakeTrial("good", 0.9, experiment, tune["good"]),
        FakeTrial("bad", 0.5, experiment, tune["bad"]),
    ]

    def saved(statuses: dict[str, str], name: str) -> None:
        rows = [[json.dumps({"trial_id": t, "status": s}), "{}"] for t, s in statuses.items()]
        (experiment / f"experiment_state-{name}.json").write_text(json.dumps({"trial_data": rows}))

    callback = retention.Retention(sweep_spec(exports=1, checkpoints=0), local(tmp_path))
    for trial in trials:
        callback.on_trial_complete(iteration=1, trials=trials, trial=trial)

    def left(trial_id: str) -> tuple[bool, int]:
        export = (tmp_path / "trials" / trial_id / "exports").exists()
        return export, len(list(tune[trial_id].glob("checkpoint_*")))

    callback.on_step_end(iteration=2, trials=trials)  # no saved state yet
    assert left("good") == (True, 2) and left("bad") == (True, 2)
    saved({"good": "TERMINATED", "bad": "RUNNING"}, "2026-11-30_01-00-00")
    callback.on_step_end(iteration=3, trials=trials)
    # good lost its checkpoints (checkpoints: 0) but keeps its export (the best); bad keeps
    # everything while the saved state says it runs, though it is beaten.
    assert left("good") == (True, 0) and left("bad") == (True, 2)
    saved({"good": "TERMINATED", "bad": "TERMINATED"}, "2026-11-30_01-00-10")
    callback.on_step_end(iteration=4, trials=trials)
    assert left("good") == (True, 0) and left("bad") == (False, 0)
    [record] = json.loads((tmp_path / "trials" / "bad" / RECORD).read_text())["deleted"]
    assert record["when"] == "during the sweep" and record["export"] and record["checkpoints"]

    # Pickled with the experiment and restored by a resumed driver: it starts afresh.
    import pickle

    import cloudpickle

    restored = pickle.loads(cloudpickle.dumps(callback))
    assert restored.ended == {} and not restored.waiting


def test_a_pruning_error_does_not_stop_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from raytune_ft.sweep import retention

    monkeypatch.setattr(retention, "CONFIRM_EVERY_S", 0.0)

    def broken(_: Location) -> None:
        raise PermissionError("read-only bucket")

    monkeypatch.setattr(retention, "stored_statuses", broken)
    callback = retention.Retention(sweep_spec(), local(tmp_path))
    trial = FakeTrial("t", 0.5, tmp_path / "ray-tune", tmp_path / "ray-tune" / "t")
    callback.on_trial_complete(iteration=1, trials=[trial], trial=trial)
    callback.on_step_end(iteration=2, trials=[trial])
    assert capsys.readouterr().err == (
        "sweep: could not delete ended trials' files (PermissionError: read-only bucket); the "
        "sweep goes on and tries again at its end\n"
    )


def test_a_failed_pass_after_the_sweep_says_so_and_keeps_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune = trial_folder(tmp_path, "t1")
    ended = [EndedTrial("t1", local(tune), 0.1), EndedTrial("t2", local(tmp_path / "no"), 0.9)]

    def refuse(self: Location) -> None:
        raise PermissionError(f"{self.uri}: read-only")

    monkeypatch.setattr(Location, "remove", refuse)
    line = prune_after_sweep(sweep_spec(exports=1), local(tmp_path), ended)
    assert line is not None and line.startswith(
        "sweep: could not delete ended trials' files (PermissionError: "
    )
    assert line.endswith("read-only); they stay")
    assert (tmp_path / "trials" / "t1" / "exports").exists()
