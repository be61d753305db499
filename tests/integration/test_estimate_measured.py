"""The pre-flight estimate against a real run's memory: a 4-layer, hidden-256 Llama full
finetune (fp32, ZeRO-2, 16 rows of 256 tokens) trains for 2 steps with the real recipe in a
fresh process, outside Ray (`bench/estimate_memory.py`), and the estimate's total must be
within 1.5x of what training added to the process's resident memory, either way.

The process runs with a fixed malloc mmap threshold so that freed tensors leave its RSS (see
the bench's docstring); the bench's larger cases and the H200 records are in the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FACTOR = 1.5


def test_the_estimate_is_within_its_stated_factor_of_the_measured_peak() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "estimate_memory.py"), "--one", "llama-4x256-full"],
        cwd=ROOT,
        env=os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    estimated, measured = result["estimate"]["total"], result["measured"]
    assert result["estimate"]["activations"] > result["estimate"]["optimizer"]  # both matter
    assert measured / FACTOR <= estimated <= measured * FACTOR, result
