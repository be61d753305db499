"""`raytune-ft report RUN`: an HTML page with PNGs, from a sweep folder's files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_sweep_results import sweep_folder
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.sweep.report import learning_curves, param_importance, write_report
from raytune_ft.sweep.results import load_results

PNG = b"\x89PNG\r\n\x1a\n"


def with_curves(run: Path) -> Path:
    """steps.jsonl of each trial: evaluations every 5 steps; `a` was stopped at step 10."""
    finals = {"a": (10, 0.7), "b": (20, 0.9), "c": (20, 0.8)}
    for trial, (last, best) in finals.items():
        folder = run / "trials" / trial
        folder.mkdir(parents=True)
        lines = [{"step": 1, "loss": 0.7}]
        lines += [
            {"event": "eval", "step": s, "eval_accuracy": round(0.5 + (best - 0.5) * s / last, 4)}
            for s in range(5, last + 1, 5)
        ]
        (folder / "steps.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def test_report_draws_every_trial_and_ranks_the_keys(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = with_curves(sweep_folder(tmp_path))
    results = load_results(run)
    curves = learning_curves(results)
    assert curves["a"] == [(5, 0.6), (10, 0.7)] and curves["b"][-1] == (20, 0.9)
    importance = param_importance(results)
    # Keys every trial set (peft.r is conditional: one trial has none), summing to one.
    assert set(importance) == {"peft.method", "train.learning_rate"}
    assert sum(importance.values()) == pytest.approx(1.0)

    index = write_report(run)
    assert index == run / "report" / "index.html"
    page = index.read_text()
    for name in ("learning_curves.png", "parallel_coordinates.png", "importance.png"):
        assert (run / "report" / name).read_bytes().startswith(PNG), name
        assert f'src="{name}"' in page
    # The best trial first in the trials table, with its values.
    trials = page.split('<table id="trials">')[1]
    first = trials.split("<tr>")[2]
    assert "<td>b</td>" in first and "<td>0.9000</td>" in first and "<td>none</td>" in first


def test_report_command_writes_where_asked_and_names_bad_folders(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = with_curves(sweep_folder(tmp_path))
    out = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "page")])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == str(tmp_path / "page" / "index.html")
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "no spec.yaml" in bad.output


BROWSERS = ("chromium-headless-shell", "chromium", "google-chrome")


def test_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    """A real browser loads the page with its images (a screenshot, checked not blank)."""
    pytest.importorskip("matplotlib")
    from PIL import Image

    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no headless browser installed (looked for {', '.join(BROWSERS)})")
    index = write_report(with_curves(sweep_folder(tmp_path)))
    shot = tmp_path / "screenshot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1200,2400", index.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 2400)
    # The plots are drawn: many distinct greys, and dark pixels (text, lines) on white.
    histogram = image.histogram()
    assert sum(1 for count in histogram if count) > 50
    assert sum(histogram[:100]) > 2000
