"""Every searcher and scheduler the spec names, run by real Ray Tune through the sweep's own
tuner (`raytune_ft/sweep/tuner.py`), with a stand-in trainable: a seeded learning curve per
configuration, checkpointed at every report so schedulers that pause trials (HyperBand) or
copy them (PB2) can bring them back. What the real recipe adds is tested in test_sweep.py."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import minimal_spec

from raytune_ft.spec import validate_spec
from raytune_ft.storage import Location
from raytune_ft.sweep.runner import _best_result, _check_space, _summarize
from raytune_ft.sweep.tuner import make_tuner, trainable_with

pytestmark = pytest.mark.integration

EVALUATIONS = 6


def stand_in(config: dict[str, Any]) -> None:
    """Accuracy that grows with each evaluation, faster near a learning rate of 1e-3."""
    from pathlib import Path

    from ray import tune

    lr = config["train.learning_rate"]
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "state.json").read_text())["evaluation"]
    speed = 1.0 / (1.0 + abs(math.log10(lr) + 3.0))
    for evaluation in range(start + 1, EVALUATIONS + 1):
        accuracy = 0.5 + 0.45 * speed * (1 - math.exp(-evaluation / 2))
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.json").write_text(json.dumps({"evaluation": evaluation}))
            tune.report(
                {
                    "eval_accuracy": accuracy,
                    "step": evaluation * 10,
                    "epoch": evaluation / EVALUATIONS,
                    "tokens_seen": evaluation * 1000,
                    "trial_id": tune.get_context().get_trial_id(),
                    "finished": evaluation == EVALUATIONS,
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


CASES = {
    "hyperopt+median": {
        "search": {"algorithm": "hyperopt", "seed": 0},
        "scheduler": {"name": "median", "grace_period": 2},
    },
    "bohb+hyperband": {
        "search": {"algorithm": "bohb", "seed": 0},
        "scheduler": {"name": "hyperband", "reduction_factor": 2},
    },
    "grid+fifo": {
        "search": {"algorithm": "grid"},
        "scheduler": {"name": "fifo"},
        "space": {"train.learning_rate": {"choice": [1e-5, 1e-3, 1e-1]}},
    },
    "random+pb2": {
        "search": {"algorithm": "random", "seed": 0},
        # Synchronous rounds: the stand-in reports every few milliseconds, so an asynchronous
        # leader can run past the checkpoint a lagging trial is about to restore from, and
        # its retention delete it ("Could not recover from checkpoint", seen in a full run).
        "scheduler": {"name": "pb2", "perturbation_interval": 3, "synch": True},
    },
    "optuna+asha in steps": {
        "search": {"algorithm": "optuna", "seed": 0},
        "scheduler": {
            "name": "asha",
            "time_unit": "steps",
            "grace_period": 20,
            "reduction_factor": 2,
        },
        # One at a time, a good point first: the bad one meets it at the rung of step 20.
        "max_concurrent_trials": 1,
        "points_to_evaluate": [{"train.learning_rate": 1e-3}, {"train.learning_rate": 1e-5}],
    },
}


@pytest.mark.parametrize("case", CASES)
def test_each_searcher_and_scheduler_runs_a_real_sweep(
    ray_local: None, tmp_path: Path, case: str
) -> None:
    import sys

    from pyarrow import fs
    from ray import cloudpickle

    # Trial processes cannot import this test module: the stand-in travels by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sweep = {
        "max_concurrent_trials": 2,
        "space": {"train.learning_rate": {"loguniform": [1e-5, 1e-1]}},
    } | CASES[case]
    if case != "grid+fifo":  # a grid runs once unless num_samples repeats it
        sweep["num_samples"] = 4
    spec = validate_spec(minimal_spec(sweep=sweep, storage={"path": str(tmp_path)}))
    _check_space(spec, 640)  # the pre-flight the sweep runs
    sweep_dir = Location(fs.LocalFileSystem(), str(tmp_path), "")
    trainable = trainable_with(stand_in, lambda params: {"CPU": 0.1})
    tuner = make_tuner(
        spec,
        trainable,
        sweep_dir,
        name="ray-tune",
        num_samples=spec.sweep.samples,
        max_concurrent=spec.sweep.max_concurrent_trials,
        # The stand-in's budget in the scheduler's unit (evaluations, or 10 steps each).
        max_t=EVALUATIONS * (10 if spec.sweep.scheduler.time_unit == "steps" else 1),
    )
    grid = tuner.fit()
    assert len(grid) == spec.sweep.total_trials
    assert [r.error for r in grid if r.error is not None] == []
    rates = [r.config["train.learning_rate"] for r in grid]
    assert all(1e-5 <= lr <= 1e-1 for lr in rates), rates
    best = _best_result([grid], spec)
    summary = _summarize(spec, [grid], best, sweep_dir, EVALUATIONS)
    assert summary["trials"]["total"] == len(grid)
    assert summary["best_validation"] == pytest.approx(
        max(r.metrics_dataframe["eval_accuracy"].max() for r in grid)
    )
    if case == "grid+fifo":  # every point once, each to the end
        assert sorted(rates) == [1e-5, 1e-3, 1e-1]
        assert summary["trials"]["finished"] == 3
    if case == "optuna+asha in steps":  # the bad point cut at the rung counted in steps
        cut = [r for r in grid if r.config["train.learning_rate"] == 1e-5]
        assert cut[0].metrics["step"] == 20 and not cut[0].metrics["finished"]


def failing_once(config: dict[str, Any], marker: str) -> None:
    """Checkpoints (with manifests) at every evaluation through the sweep's own trial session
    (which also writes the reported result into each checkpoint); the first attempt dies
    after the fourth. Each report says where the attempt started."""
    from pathlib import Path

    from raytune_ft.sweep.in_process import TuneTrialSession
    from raytune_ft.train.manifest import write_manifest

    session = TuneTrialSession()
    start = 0
    checkpoint = session.restored()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "state.json").read_text())["evaluation"]
    for evaluation in range(start + 1, EVALUATIONS + 1):
        folder = Path(tempfile.mkdtemp())  # the session deletes it once Tune has it
        (folder / "state.json").write_text(json.dumps({"evaluation": evaluation}))
        write_manifest(folder, 0, 1)
        session.report({"eval_accuracy": 0.5 + evaluation / 100, "started_at": start}, folder)
        if evaluation == 4 and not Path(marker).exists():
            Path(marker).write_text("died once")
            raise RuntimeError("the first attempt dies here")


def test_a_resumed_trial_whose_checkpoint_is_gone_goes_on_from_its_newest_whole_one(
    ray_local: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """What a SIGKILLed driver can leave, made on purpose: Tune's state names a checkpoint
    its retention has deleted since, its log (uploaded with each snapshot) lacks the newer
    checkpoint's result, and a half-written checkpoint folder is left. The trial errors after
    4 checkpoints (2 kept); the latest is deleted, the log cut, a half folder added; the
    sweep resumes the errored trial."""
    import sys

    from pyarrow import fs
    from ray import cloudpickle

    from raytune_ft.sweep.tuner import restore_tuner

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spec = validate_spec(
        minimal_spec(
            train={"checkpoint": {"keep": 2}},
            scaling={"max_failures": 0},  # the trial stays errored within the sweep
            sweep={
                "num_samples": 1,
                "search": {"algorithm": "random", "seed": 0},
                "scheduler": {"name": "fifo"},
                "errored_trials": {"on_resume": "resume"},
                "space": {"train.learning_rate": {"loguniform": [1e-4, 1e-3]}},
            },
            storage={"path": str(tmp_path)},
        )
    )
    sweep_dir = Location(fs.LocalFileSystem(), str(tmp_path), "")
    trainable = trainable_with(
        failing_once, lambda params: {"CPU": 0.1}, marker=str(tmp_path / "died")
    )
    tuner = make_tuner(
        spec,
        trainable,
        sweep_dir,
        name="ray-tune",
        num_samples=1,
        max_concurrent=1,
        max_t=EVALUATIONS,
    )
    grid = tuner.fit()
    assert grid[0].error is not None
    trial_dir = Path(grid[0].path)
    kept = sorted(p.name for p in trial_dir.glob("checkpoint_*"))
    assert kept == ["checkpoint_000002", "checkpoint_000003"]
    shutil.rmtree(trial_dir / "checkpoint_000003")
    rows = (trial_dir / "result.json").read_text().splitlines()
    (trial_dir / "result.json").write_text("\n".join(rows[:2]) + "\n")  # evaluations 1-2
    half = trial_dir / "checkpoint_000007"
    shutil.copytree(trial_dir / "checkpoint_000002", half)
    (half / "state.json").unlink()

    grid = restore_tuner(spec, trainable, sweep_dir / "ray-tune").fit()
    assert grid[0].error is None
    frame = grid[0].metrics_dataframe
    assert frame["started_at"].iloc[-1] == 3  # from checkpoint_000002's evaluation 3
    assert frame["training_iteration"].iloc[-1] == EVALUATIONS  # its count came along
    said = capfd.readouterr().err
    assert (
        f"sweep: trial {grid[0].metrics['trial_id']}: its checkpoint checkpoint_000003 is gone "
        "or incomplete on storage; it goes on from checkpoint_000002"
    ) in said
    # Evaluations 4-6 took new folders past every one on storage (Tune's own numbering would
    # have written the first into checkpoint_000003 again); the 2 newest are kept and the
    # half-written folder is gone.
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == [
        "checkpoint_000009",
        "checkpoint_000010",
    ]
