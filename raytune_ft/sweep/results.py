"""What a finished (or interrupted) sweep folder says: its trials, best first, and its best spec.
Reads only the files the sweep wrote; runs without Ray."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec

CONFIG_PREFIX = "config/"


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    params: dict[str, Any]  # the spec fields the trial set (decoded, conditions applied)
    metric: float  # its best validation value
    evaluations: int
    step: int
    finished: bool


@dataclass(frozen=True)
class SweepResults:
    run_dir: Path
    spec: ExperimentSpec
    trials: list[TrialRow]  # best first
    summary: dict[str, Any]  # empty while the sweep has not finished

    @property
    def best_spec_path(self) -> Path | None:
        path = self.run_dir / "best-spec.yaml"
        return path if path.exists() else None


def load_results(run_dir: Path) -> SweepResults:
    """The trials of the sweep in `run_dir`, sorted best first by the sweep's metric."""
    import pandas as pd

    from raytune_ft.spec import load_spec
    from raytune_ft.sweep.space import trial_params

    run_dir = Path(run_dir)
    csv, spec_file = run_dir / "results.csv", run_dir / "spec.yaml"
    if not spec_file.exists():
        raise UserError(
            f"{run_dir}: no spec.yaml; expected a sweep folder (runs/<name>-tune-<time>/)"
        )
    spec = load_spec(spec_file)
    if spec.sweep is None:
        raise UserError(f"{run_dir}: its spec.yaml has no sweep section; expected a sweep folder")
    if not csv.exists():
        raise UserError(
            f"{run_dir}: no results.csv yet (the sweep writes it when it ends); finish it with "
            "`raytune-ft tune SPEC --resume`"
        )
    frame = pd.read_csv(csv)
    base = spec.model_dump(mode="json")
    rows = []
    for record in frame.to_dict("records"):
        value = record.get(spec.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        sampled = {
            key.removeprefix(CONFIG_PREFIX): _plain(v)
            for key, v in record.items()
            if key.startswith(CONFIG_PREFIX) and not _missing(v)
        }
        best = record.get(f"best_{spec.metric}", value)
        # How the trial ended (sweeps before these columns: its best row's values).
        ended = record.get("ended")
        evaluations = record.get("evaluations", record.get("training_iteration", 0))
        step = record.get("last_step", record.get("step", 0))
        rows.append(
            TrialRow(
                trial_id=str(record["trial_id"]),
                params=trial_params(spec.sweep, base, sampled),
                metric=float(best if not _missing(best) else value),
                evaluations=0 if _missing(evaluations) else int(evaluations),
                step=0 if _missing(step) else int(step),
                finished=ended == "finished"
                if not _missing(ended)
                else bool(record.get("finished", 0)),
            )
        )
    rows.sort(key=lambda r: r.metric, reverse=spec.metric_mode == "max")
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    return SweepResults(run_dir, spec, rows, summary)


def results_table(results: SweepResults, top: int | None = None) -> Any:
    """A Rich table of the trials, best first."""
    from rich.table import Table

    spec = results.spec
    keys = list(spec.sweep.space) if spec.sweep else []
    table = Table(title=f"{spec.name}: trials by {spec.metric} ({spec.metric_mode})")
    table.add_column("#", justify="right", overflow="fold")
    table.add_column("trial", overflow="fold")
    for key in keys:
        table.add_column(key, justify="right", overflow="fold")
    table.add_column(spec.metric, justify="right", overflow="fold")
    table.add_column("evals", justify="right")
    table.add_column("step", justify="right")
    table.add_column("ended", overflow="fold")
    for rank, row in enumerate(results.trials[:top], start=1):
        table.add_row(
            str(rank),
            row.trial_id,
            *(_cell(row.params[k]) if k in row.params else "-" for k in keys),
            f"{row.metric:.4f}",
            str(row.evaluations),
            str(row.step),
            "finished" if row.finished else "stopped early",
        )
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """CSV cells back to spec values: integral floats of int columns stay numbers pydantic
    takes; strings that are JSON (section choices) are parsed."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value.item() if hasattr(value, "item") else value
