"""bench/sweep_scale.py on a small sweep: the synthetic trials run through the project's
own Tune experiment, the sweep's results.csv and report come out of them, and the figures
the benchmark prints exist. The numbers themselves are not checked (they depend on the
machine's load); that each was measured is."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "sweep_scale.py"
TRIALS = 16


def test_small_sweep_measures_the_driver(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--trials",
            str(TRIALS),
            "--window",
            "8",
            "--concurrency",
            "8",
            "--evaluations",
            "4",
            "--work-dir",
            str(tmp_path / "runs"),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, log
    report = json.loads(out.read_text())
    figures = report["figures"]

    # Every trial ended (ASHA stops some early), none errored, each reported at least once.
    ended = figures["trials_ended"]
    assert ended["total"] == TRIALS and ended["errored"] == 0, ended
    assert ended["finished"] + ended["stopped_early"] == TRIALS
    assert figures["evaluations_reported"] >= TRIALS

    # The sweep folder as the runner leaves it: one results.csv row per trial, each trial's
    # steps.jsonl with its evaluations, and the HTML report drawn from them.
    sweep_dir = Path(figures["sweep_dir"])
    with (sweep_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == TRIALS == figures["results_csv_rows"]
    assert {row["ended"] for row in rows} <= {"finished", "stopped_early"}
    for row in rows:
        records = (sweep_dir / "trials" / row["trial_id"] / "steps.jsonl").read_text()
        evals = [json.loads(line) for line in records.splitlines()]
        assert len(evals) == int(row["evaluations"]), row
        assert all(e["event"] == "eval" and "eval_accuracy" in e for e in evals)
    assert figures["report_written"] and Path(figures["report"]).exists()
    assert "learning_curves.png" in Path(figures["report"]).read_text()

    # The measured figures: per window of 8 trials, and for the whole sweep.
    assert [w["trials"] for w in report["windows"]] == ["1-8", "9-16"]
    for window in report["windows"]:
        assert window["wall_s_per_trial"] > 0 and window["rss_mib_at_end"] > 0
        assert window["suggest_ms_mean"] > 0 and window["suggest_cpu_ms_mean"] >= 0
        assert window["tell_ms_mean"] >= 0 and window["tell_cpu_ms_mean"] >= 0
    assert figures["suggestions"] == TRIALS
    assert figures["driver_cpu_s_per_trial"] > 0
    assert figures["summarize_s"] > 0 and figures["report_s"] > 0
    assert figures["state_snapshots"] >= 1 and figures["state_bytes_last"] > 0
    assert figures["folder"]["files"] > TRIALS
    for label in ("driver CPU s per trial", "suggest CPU ms", "results.csv", "report", "RSS"):
        assert label in done.stdout, done.stdout[-3000:]
