"""Ray Tune sweep: Optuna TPE + ASHA, each trial a driver with its own TorchTrainer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from raytune_ft.spec import load_spec, validate_spec
from raytune_ft.sweep.runner import run_sweep
from raytune_ft.train.runner import run_training

pytestmark = pytest.mark.integration


def test_three_trial_asha_optuna_sweep_writes_results(
    ray_local: None,
    tiny_bert: Path,
    keyword_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tune saves its state at every step and the sweep looks at it at once: ended trials'
    # files go while the sweep runs, not only after it.
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    monkeypatch.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    monkeypatch.setattr("raytune_ft.sweep.retention.LOOK_EVERY_S", 0.0)
    monkeypatch.setattr("raytune_ft.sweep.retention.SETTLE_S", 0.0)
    spec = validate_spec(
        {
            "name": "kw-sweep",
            "model": {"name_or_path": str(tiny_bert)},
            "data": {"train": {"path": str(keyword_data)}, "max_length": 16},
            "train": {
                "epochs": 1,
                "micro_batch_size": 16,
                "eval_every": 5,
                "checkpoint": {"every_evals": 4},
            },
            "deepspeed": {"zero_stage": 2},
            "scaling": {"num_workers": 1},
            "sweep": {
                "num_samples": 3,
                "retain": {"exports": 1, "checkpoints": 1},
                # One at a time, a good trial first: the bad one meets its result at ASHA's
                # first rung and is cut there.
                "max_concurrent_trials": 1,
                "points_to_evaluate": [
                    {"train.learning_rate": 5e-3, "train.micro_batch_size": 8},
                    {"train.learning_rate": 1e-6, "train.micro_batch_size": 8},
                ],
                "search": {"algorithm": "optuna", "seed": 0},
                "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
                "trackers": {"mlflow": True},
                "space": {
                    "train.learning_rate": {"loguniform": [1e-6, 5e-3]},
                    "train.micro_batch_size": {"choice": [8, 16]},
                },
            },
            "storage": {"path": str(tmp_path)},
        }
    )
    outcome = run_sweep(spec)
    run_dir, summary = outcome.run_dir.local_path, outcome.summary

    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) == 3
    bad = results[results["config/train.learning_rate"] == 1e-6].iloc[0]
    good = results[results["config/train.learning_rate"] == 5e-3].iloc[0]
    assert (good["ended"], good["evaluations"]) == ("finished", 16)  # 80 steps, every 5
    assert bad["ended"] == "stopped_early" and bad["evaluations"] < 16  # cut by ASHA
    assert summary["trials"]["stopped_early"] >= 1
    assert summary["trials"]["total"] == 3 and summary["trials"]["errored"] == 0
    assert summary["trials"]["finished"] + summary["trials"]["stopped_early"] == 3
    assert summary["best_validation"] == pytest.approx(results["eval_accuracy"].max())
    assert summary["best_validation"] > 0.9
    assert summary["test_metrics"]["test_accuracy"] > 0.9

    # sweep.retain: the best trial keeps its export and checkpoint, the other two lose both,
    # the bad one (ended second, before the third began) while the sweep ran.
    best_id = results.loc[results["eval_accuracy"].idxmax(), "trial_id"]
    trials = run_dir / "trials"
    exported = {p.parent.parent.name for p in trials.glob("*/exports/best.json")}
    assert exported == {best_id}
    checkpointed = {
        p.name.split("_")[2]
        for p in (run_dir / "ray-tune").glob("trial_driver_*")
        if list(p.glob("checkpoint_*"))
    }
    assert checkpointed == {best_id}
    records = {
        p.parent.name: json.loads(p.read_text())["deleted"] for p in trials.glob("*/retention.json")
    }
    assert set(records) == set(results["trial_id"]) - {best_id}
    bad_id = bad["trial_id"]
    assert records[bad_id][0]["when"] == "during the sweep"
    assert "export" in records[bad_id][0] and records[bad_id][0]["checkpoints"]
    assert all((trials / t / "steps.jsonl").exists() for t in results["trial_id"])

    # MLflow (the default store: SQLite in the sweep folder) has a run per trial, with its
    # sampled values as params and its evaluations as metric history.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kw-sweep")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    by_lr = {float(r.data.params["train.learning_rate"]): r for r in runs}
    assert set(by_lr) == set(results["config/train.learning_rate"])
    for lr, run in by_lr.items():
        history = client.get_metric_history(run.info.run_id, "eval_accuracy")
        evaluations = results.loc[results["config/train.learning_rate"] == lr, "evaluations"]
        assert len(history) == int(evaluations.iloc[0]), (lr, len(history))
        assert run.info.status == "FINISHED"

    # What a user looks at afterwards: the table best first, and the report's page.
    from typer.testing import CliRunner

    from raytune_ft.cli import app

    shown = CliRunner().invoke(app, ["results", str(run_dir)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    first_row = next(line for line in shown.output.splitlines() if line.startswith("│ 1 "))
    assert f"{summary['best_validation']:.4f}" in first_row
    page = CliRunner().invoke(app, ["report", str(run_dir)])
    assert page.exit_code == 0 and (run_dir / "report" / "learning_curves.png").exists()

    best = load_spec(run_dir / "best-spec.yaml")
    assert best.sweep is None
    assert best.train.learning_rate == pytest.approx(summary["best_config"]["train.learning_rate"])
    assert best.train.micro_batch_size == summary["best_config"]["train.micro_batch_size"]
    # The README's claim: the best spec trains unchanged, and as well as its trial did.
    retrained = run_training(best).summary
    assert retrained["best_validation"] > 0.9
    # ... to the metric its trial recorded, within one of the 80 validation examples.
    assert abs(retrained["best_validation"] - summary["best_validation"]) <= 1 / 80
    assert retrained["test_metrics"]["test_accuracy"] > 0.9
    # The data was prepared once, in the sweep's pre-flight: every trial's workers, the test
    # evaluation and the retrained best spec memory-mapped that one folder.
    prepared = list((tmp_path / "prepared").glob("*/meta.json"))
    assert len(prepared) == 1
    assert retrained["prepared_data"] == str(prepared[0].parent)


def test_a_sweep_whose_every_trial_is_invalid_names_the_cause(
    ray_local: None,
    tiny_bert: Path,
    keyword_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spaces too large to check up front: each trial validates its sample and fails at once."""
    import raytune_ft.sweep.runner as sweep_runner
    from raytune_ft.errors import RunFailed

    monkeypatch.setattr(sweep_runner, "MAX_CHECKED_COMBINATIONS", 0)
    spec = validate_spec(
        {
            "name": "kw-invalid",
            "model": {"name_or_path": str(tiny_bert)},
            "data": {"train": {"path": str(keyword_data)}, "max_length": 16},
            "sweep": {
                "num_samples": 2,
                "search": {"algorithm": "random"},
                "space": {
                    "deepspeed.zero_stage": {"choice": [0]},
                    "deepspeed.offload_optimizer": {"choice": ["cpu"]},
                },
            },
            "storage": {"path": str(tmp_path)},
        }
    )
    with pytest.raises(RunFailed) as info:
        run_sweep(spec)
    assert info.value.bad_input
    assert info.value.reason == (
        "no trial reported eval_accuracy: 2 of 2 trials failed, the first with: "
        "deepspeed: offload_optimizer needs zero_stage >= 1"
    )


def test_a_killed_one_worker_trial_resumes_in_a_new_process_from_its_checkpoint(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    """A one-worker trial trains inside its Tune trial's process (no worker group); when that
    process dies, Tune starts the trial again from its last checkpoint."""
    import json
    import os
    import signal
    import threading
    import time

    import psutil

    spec = validate_spec(
        {
            "name": "kw-kill",
            "model": {"name_or_path": str(tiny_bert)},
            "data": {"train": {"path": str(keyword_data)}, "max_length": 16},
            "train": {
                "epochs": 2,
                "micro_batch_size": 8,
                "learning_rate": 3e-3,
                "eval_every": 10,
                "checkpoint": {"every_evals": 1},
            },
            "scaling": {"num_workers": 1},
            "sweep": {
                "num_samples": 1,
                "errored_trials": {"retries": 1},  # the policy that brings it back
                "search": {"algorithm": "random", "seed": 0},
                "scheduler": {"name": "fifo"},
                "space": {"train.learning_rate": {"choice": [3e-3]}},
            },
            "storage": {"path": str(tmp_path)},
        }
    )

    def trial_processes() -> set[int]:
        return {
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if any("ImplicitFunc" in part for part in (p.info["cmdline"] or []))
        }

    before = trial_processes()
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_sweep(spec)))
    thread.start()
    killed = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and thread.is_alive():
        logs = [p.read_text() for p in tmp_path.glob("kw-kill-tune-*/trials/*/steps.jsonl")]
        # Two checkpoints logged: the first is surely persisted by Tune.
        if logs and logs[0].count('"event": "checkpoint"') >= 2:
            [killed] = sorted(trial_processes() - before)
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.1)
    thread.join(timeout=300)
    assert killed is not None, "no trial process to kill before the sweep ended"
    assert "result" in outcome, "the sweep did not finish after its trial was killed"

    summary = outcome["result"].summary
    assert summary["trials"] == {"finished": 1, "stopped_early": 0, "errored": 0, "total": 1}
    [trial_dir] = (outcome["result"].run_dir.local_path / "trials").iterdir()
    steps = [json.loads(line) for line in (trial_dir / "steps.jsonl").read_text().splitlines()]
    [resumed] = [s for s in steps if s.get("event") == "resumed"]
    assert resumed["step"] >= 10  # from its checkpoint, not from scratch
    assert max(s["step"] for s in steps if "loss" in s) == 160  # 640 / 8 x 2 epochs
    assert not (trial_dir / "ray-train").exists()  # trained in the trial's own process
    assert summary["best_validation"] > 0.9
    assert (outcome["result"].run_dir.local_path / "best-model" / "config.json").exists()


def test_a_sweep_of_two_worker_zero2_trials_runs_each_trial_whole_and_extends(
    ray_local: None,
    tiny_bert: Path,
    keyword_data: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Each trial a gang-scheduled group of two ZeRO-2 workers: the local cluster (2 cores)
    holds one such trial at a time, and the sweep says so. Then the finished sweep gets one
    more trial (`--resume` with a larger num_samples, the path `--extend` takes too): a new
    Tune experiment in the same folder whose TPE starts from the earlier results; the
    finished trials are not run again."""
    import glob
    import json
    import pickle

    def gang(num_samples: int):
        return validate_spec(
            {
                "name": "kw-gang",
                "model": {"name_or_path": str(tiny_bert)},
                "data": {"train": {"path": str(keyword_data)}, "max_length": 16},
                # 80 steps of 2 x 8: what the two-worker training test needs to learn the task.
                "train": {
                    "epochs": 2,
                    "micro_batch_size": 8,
                    "eval_every": 20,
                    "checkpoint": {"every_evals": 2},
                },
                "deepspeed": {"zero_stage": 2},
                "scaling": {"num_workers": 2},
                "sweep": {
                    "num_samples": num_samples,
                    "search": {"algorithm": "optuna", "seed": 0},
                    "scheduler": {"name": "fifo"},
                    "space": {"train.learning_rate": {"loguniform": [3e-3, 6e-3]}},
                },
                "storage": {"path": str(tmp_path)},
            }
        )

    outcome = run_sweep(gang(2))
    summary, run_dir = outcome.summary, outcome.run_dir.local_path
    assert summary["trials"] == {"finished": 2, "stopped_early": 0, "errored": 0, "total": 2}
    for trial_dir in (run_dir / "trials").iterdir():
        runtime = json.loads((trial_dir / "runtime.json").read_text())
        assert (runtime["world_size"], runtime["zero_stage"]) == (2, 2)
        assert (trial_dir / "ray-train").is_dir()  # its own TorchTrainer run
    assert summary["best_validation"] > 0.9
    assert (run_dir / "best-model" / "config.json").exists()
    err = capfd.readouterr().err
    assert (
        "sweep: 1 of 2 trials at a time (the cluster holds 1 trial of 2 workers of 1 CPU at "
        "once); the other 1 wait their turn"
    ) in err
    # sweep.retain's defaults: ended trials keep their exports (2 of at most 3) and lose their
    # resume checkpoints, which a multi-worker trial's own Train run wrote (ZeRO shards).
    assert (
        "sweep: ended trials lose their exports unless among the best 3 and their "
        "resume checkpoints (sweep.retain)"
    ) in err
    assert "sweep: 2 trials ended; exports kept: every one, checkpoints kept: none " in err
    assert not [p for p in run_dir.rglob("checkpoint_*") if p.is_dir()]
    for trial_dir in (run_dir / "trials").iterdir():
        [record] = json.loads((trial_dir / "retention.json").read_text())["deleted"]
        assert "export" not in record and (trial_dir / "exports" / "best.json").exists()
        deleted = [Path(c["path"]) for c in record["checkpoints"]]
        assert len(deleted) >= 1 and all(p.parent == trial_dir / "ray-train" for p in deleted)
        assert all(c["bytes"] > 0 for c in record["checkpoints"])

    logs = {p.parent.name: p.read_text() for p in run_dir.glob("trials/*/steps.jsonl")}
    raised = run_sweep(gang(3), resume=True)  # only the budget changed
    assert raised.run_dir.local_path == run_dir
    assert raised.summary["trials"]["total"] == 3 and raised.summary["experiments"] == 2
    assert load_spec(run_dir / "spec.yaml").sweep.num_samples == 3  # the budget it now has
    # The extension's TPE was told the first two results before it suggested the third.
    [state] = glob.glob(str(run_dir / "ray-tune-ext1" / "searcher-state-*.pkl"))
    with open(state, "rb") as f:
        study = pickle.load(f)["_ot_study"]
    assert len(study.trials) == 3 and all(t.value is not None for t in study.trials)
    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) == 3 and set(results["trial_id"]) > set(logs)
    for trial_id, text in logs.items():  # the first trials were not run again
        assert (run_dir / "trials" / trial_id / "steps.jsonl").read_text() == text
