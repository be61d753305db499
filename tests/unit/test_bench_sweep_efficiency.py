"""bench/sweep_efficiency.py's accounting, on hand-made evaluations: compute is counted in the
order evaluations happened, up to and including the first that reaches the target."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location(
    "sweep_efficiency", ROOT / "bench" / "sweep_efficiency.py"
)
assert _SPEC is not None and _SPEC.loader is not None
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def _eval(trial: str, value: float, examples: int, seconds: float) -> dict:
    return {
        "trial_id": trial,
        "value": value,
        "evaluations": 1,
        "examples": examples,
        "trial_s": seconds,
    }


def _run(method: str, evals: list[dict]) -> dict:
    return {
        "method": method,
        "seed": 0,
        "mode": "max",
        "evaluations": evals,
        "best": max(e["value"] for e in evals),
        "total": bench.totals(evals),
    }


def test_compute_counts_up_to_the_first_evaluation_that_reaches_the_target() -> None:
    evals = [_eval("a", 0.5, 320, 10.0), _eval("b", 0.9, 160, 5.0), _eval("a", 0.95, 320, 8.0)]
    assert bench.compute_to_reach(evals, 0.9, "max") == {
        "evaluations": 2,
        "examples": 480,
        "trial_s": 15.0,
    }
    assert bench.compute_to_reach(evals, 0.96, "max") is None
    assert bench.compute_to_reach(evals, 0.5, "min") == {
        "evaluations": 1,
        "examples": 320,
        "trial_s": 10.0,
    }


def test_ratio_is_against_random_search_compute_to_its_own_best() -> None:
    rand = _run(
        "random-fifo",
        [
            _eval("r1", 0.6, 100, 1),
            _eval("r2", 0.9, 100, 1),
            _eval("r3", 0.7, 100, 1),
            _eval("r4", 0.8, 100, 1),
        ],
    )
    tpe = _run("tpe-asha", [_eval("t1", 0.9, 50, 1), _eval("t2", 0.95, 50, 1)])
    row = bench.compare(tpe, rand)
    assert row["target"] == 0.9
    assert row["random_to_best"]["evaluations"] == 2  # not its whole sweep of 4
    assert row["ratio"]["evaluations"] == 0.5 and row["ratio"]["examples"] == 0.25
    assert row["ratio_to_random_total"]["evaluations"] == 0.25

    missed = bench.compare(_run("tpe-asha", [_eval("t1", 0.85, 50, 1)]), rand)
    assert missed["ratio"] is None
    summary = bench.summarize([row, missed], 0.4)
    assert summary["reached"] == 1 and not summary["target_met"]
    assert bench.summarize([row], 0.5)["target_met"]

    # Within a tolerance, both methods count as reaching it sooner.
    near = bench.compare(_run("tpe-asha", [_eval("t1", 0.85, 50, 1)]), rand, tolerance=0.1)
    assert near["target"] == 0.8 and near["random_best"] == 0.9
    assert near["random_to_best"]["evaluations"] == 2  # 0.6, then 0.9 >= 0.8
    assert near["ratio"]["evaluations"] == 0.5
