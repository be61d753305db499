"""bench/gpu_throughput.py in its tiny CPU mode: every contestant's code path runs, so the GPU
benchmark cannot rot between the times someone has a GPU to run it on.

The numbers are not checked (a tiny model on 2 CPU cores says nothing about speed); that each
CPU-capable contestant produced a tokens/s and a ratio, and that the GPU-only ones say why they
were skipped, is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "gpu_throughput.py"
PROJECT = {"raytune-ft", "raytune-ft-lora"}
CPU_PEERS = {"hf-trainer", "deepspeed-zero2", "peft-lora"}
GPU_ONLY = {"zero2-liger", "peft-lora-liger"}


def test_tiny_mode_measures_every_cpu_contestant(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--mode",
            "tiny",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.exists(), done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(out.read_text())
    rows = {row["contestant"]: row for row in report["contestants"]}
    assert set(rows) == PROJECT | CPU_PEERS | GPU_ONLY

    for name in PROJECT | CPU_PEERS:
        row = rows[name]
        assert row["status"] == "ok", row
        assert row["tokens_per_s"] > 0, row
        assert row["tokens_per_step"] == row["micro_batch_size"] * row["accumulation"] * 128
        assert row["peak_observed_gib"] > 0, row
    for name in CPU_PEERS:
        assert rows[name]["ratio"] > 0, rows[name]
        assert rows[name]["peak_memory_gib"] > 0, rows[name]
    assert set(rows["raytune-ft"]["ratios"]) == {"hf-trainer", "deepspeed-zero2"}
    assert set(rows["raytune-ft-lora"]["ratios"]) == {"peft-lora"}
    for name in PROJECT:
        # Timed from the run's own records, never from the whole command's wall time.
        assert "wall_time_s" not in rows[name]["timing_source"], rows[name]

    for name in GPU_ONLY:
        assert rows[name]["status"] == "skipped", rows[name]
        assert "CUDA" in rows[name]["reason"], rows[name]
        assert rows[name]["tokens_per_s"] is None
    assert all(check["met"] is None for check in report["targets"])  # their peers were skipped
    assert "project/peer" in done.stdout  # the table was printed
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
