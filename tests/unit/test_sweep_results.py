"""`raytune-ft results RUN`: a sweep folder's trials, best first, and its best spec."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from helpers import minimal_spec
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.run_folder import spec_yaml
from raytune_ft.spec import validate_spec
from raytune_ft.sweep.results import load_results

SPACE = {
    "peft.method": {"choice": ["lora", "none"]},
    "peft.r": {"logint": [4, 64], "when": {"peft.method": "lora"}},
    "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
}


def sweep_folder(tmp_path: Path, mode_min: bool = False) -> Path:
    train = {"metric": "eval_loss"} if mode_min else {}
    spec = validate_spec(minimal_spec(train=train, sweep={"space": SPACE}))
    run = tmp_path / "kw-tune-20261127-000000"
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text(spec_yaml(spec))
    metric = spec.metric
    pd.DataFrame(
        [  # what Tune's dataframe holds: the sampled config, a conditional key missing (NaN)
            {
                "trial_id": "a",
                metric: 0.7,
                "training_iteration": 2,
                "step": 10,
                "finished": 0.0,
                "config/peft.method": "lora",
                "config/peft.r": 16.0,
                "config/train.learning_rate": 1e-4,
            },
            {
                "trial_id": "b",
                metric: 0.9,
                "training_iteration": 4,
                "step": 20,
                "finished": 1.0,
                "config/peft.method": "none",
                "config/peft.r": float("nan"),
                "config/train.learning_rate": 3e-4,
            },
            {
                "trial_id": "c",
                metric: 0.8,
                "training_iteration": 4,
                "step": 20,
                "finished": 1.0,
                "config/peft.method": "lora",
                "config/peft.r": 8.0,
                "config/train.learning_rate": 2e-4,
            },
        ]
    ).to_csv(run / "results.csv", index=False)
    return run


def test_trials_come_best_first_with_their_spec_values(tmp_path: Path) -> None:
    found = load_results(sweep_folder(tmp_path))
    assert [t.trial_id for t in found.trials] == ["b", "c", "a"]
    best, second = found.trials[0], found.trials[1]
    assert best.params == {"peft.method": "none", "train.learning_rate": 3e-4}
    assert second.params["peft.r"] == 8 and type(second.params["peft.r"]) is int
    assert (best.finished, found.trials[2].finished) == (True, False)
    assert (best.evaluations, best.step) == (4, 20)  # where it ended, not its best row
    lowest_first = load_results(sweep_folder(tmp_path / "min", mode_min=True))
    assert [t.trial_id for t in lowest_first.trials] == ["a", "c", "b"]  # eval_loss: lower wins


def test_the_command_prints_the_table_and_the_best_spec(tmp_path: Path) -> None:
    run = sweep_folder(tmp_path)
    best = validate_spec(minimal_spec())
    (run / "best-spec.yaml").write_text(spec_yaml(best))
    out = CliRunner().invoke(app, ["results", str(run), "--top", "2"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    table, _, spec_text = out.output.partition("best spec: ")
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and " b " in rows[0] and "0.9000" in rows[0] and " c " in rows[1]
    assert yaml.safe_load(spec_text.split("\n", 1)[1])["name"] == best.name


def test_a_folder_that_is_not_a_finished_sweep_is_named(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["results", str(tmp_path)])
    assert out.exit_code == 2
    assert out.output.strip() == (
        f"error: {tmp_path}: no spec.yaml; expected a sweep folder (runs/<name>-tune-<time>/)"
    )
    run = sweep_folder(tmp_path)
    (run / "results.csv").unlink()
    out = CliRunner().invoke(app, ["results", str(run)])
    assert out.exit_code == 2 and "no results.csv yet" in out.output


def test_the_best_trial_is_read_from_each_trials_own_history() -> None:
    """Ray's get_best_result(scope='all') named a worse trial after PB2 exploits (CI); the
    sweep's best is the trial whose own history holds the best value, in either mode."""
    from types import SimpleNamespace

    from raytune_ft.sweep.runner import _best_result

    def trial(name: str, values: list[float] | None, metric: str) -> SimpleNamespace:
        frame = None if values is None else pd.DataFrame({metric: values})
        return SimpleNamespace(name=name, metrics_dataframe=frame, error=None)

    nan = float("nan")
    spec = validate_spec(minimal_spec())
    grid = [
        trial("never-reported", None, spec.metric),
        trial("peaked", [0.6, 0.78, 0.7], spec.metric),
        trial("ended-high", [0.5, nan, 0.75], spec.metric),
    ]
    assert _best_result([grid], spec).name == "peaked"
    loss_spec = validate_spec(minimal_spec(train={"metric": "eval_loss"}))
    first = [trial("c", [nan], "eval_loss")]
    second = [trial("a", [0.9, 0.4], "eval_loss"), trial("b", [0.5, 0.45], "eval_loss")]
    assert _best_result([first, second], loss_spec).name == "a"
