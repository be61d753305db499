"""Sweep efficiency: Optuna TPE + ASHA against random search + FIFO on the quickstart task.

For each seed, the real sweep (`raytune_ft.sweep.runner.run_sweep`, what `raytune-ft tune`
runs: real MiniLM weights, LoRA, the review-sentiment data) runs twice with the same space,
the same number of trials and the same per-trial budget:

- `tpe-asha`: the quickstart's own searcher and scheduler (Optuna TPE, ASHA);
- `random-fifo`: random search, every trial trained to the end.

`search.seed` is the seed (the data split, model initialisation and data order stay those of
the spec's `seed`, so both methods see the same validation rows). From each sweep's Tune
results, every evaluation any trial reported is put in the order it happened (Tune's result
timestamp, then trial and iteration) and compute is added up as it goes: trial-evaluations
(the issue's unit; independent of the machine's load), training examples (step x batch, so a
batch-32 evaluation counts twice a batch-16 one) and trial-seconds (`time_this_iter_s`,
which grows with the load). Printed per seed: random search's best validation accuracy and
the compute it took to first reach it, the compute TPE + ASHA took to first reach that same
value (or "not reached"), and their ratio; then the mean. Target: <= 40%.

    PYTHONPATH=. .venv/bin/python bench/sweep_efficiency.py                   # the reduced size
    PYTHONPATH=. .venv/bin/python bench/sweep_efficiency.py --full --trials 6 # the quickstart's

The default is a reduced size for a 2-core CPU machine (see REDUCED); `--set KEY=VALUE`
changes the spec further, as on the CLI. Writes `bench/results/sweep-efficiency-<date>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}.items():  # before transformers or datasets are imported
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "quickstart.yaml"

# The reduced size: fewer training rows and shorter sequences make each evaluation cheaper,
# and a shorter eval_every gives ASHA several rungs per trial (a batch-16 trial evaluates 5
# times, a batch-32 one 3 times). The validation and test splits (300 rows each) are the
# quickstart's.
REDUCED = [
    "data.max_train_samples=800",
    "data.max_length=32",
    "train.eval_every=10",
]
METHODS = {
    "tpe-asha": [],  # the quickstart's sweep.search and sweep.scheduler
    "random-fifo": ["sweep.scheduler={name: fifo}"],
}
UNITS = ("evaluations", "examples", "trial_s")


def method_spec(
    method: str,
    seed: int,
    trials: int,
    overrides: list[str],
    storage: Path,
    startup_trials: int | None = None,
) -> Any:
    from raytune_ft.spec import load_spec

    algorithm = "optuna" if method == "tpe-asha" else "random"
    startup = (
        f", startup_trials: {startup_trials}" if startup_trials and algorithm == "optuna" else ""
    )
    return load_spec(
        SPEC,
        [
            *overrides,
            *METHODS[method],
            f"name=efficiency-{method}-seed{seed}",
            f"storage.path={storage}",
            f"sweep.num_samples={trials}",
            f"sweep.search={{algorithm: {algorithm}, seed: {seed}{startup}}}",
        ],
    )


def evaluations(sweep_dir: Any, metric: str) -> list[dict[str, Any]]:
    """Every evaluation of every trial of the sweep, in the order they were reported."""
    from raytune_ft.sweep.tuner import TUNE_DIR, load_grid

    grid = load_grid(sweep_dir / TUNE_DIR)
    found = []
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None or metric not in frame:
            continue
        seen = 0
        for record in frame.sort_values("training_iteration").to_dict("records"):
            # Examples trained since the trial's previous evaluation (an out-of-memory retry
            # changes the batching, which every result carries).
            batch = record["micro_batch_size"] * record["gradient_accumulation_steps"]
            examples = (record["step"] - seen) * batch
            seen = record["step"]
            found.append(
                {
                    "trial_id": str(record["trial_id"]),
                    "iteration": int(record["training_iteration"]),
                    "timestamp": int(record["timestamp"]),
                    "value": float(record[metric]),
                    "evaluations": 1,
                    "examples": int(examples),
                    "trial_s": float(record["time_this_iter_s"]),
                }
            )
    # Tune's timestamp has whole seconds: ties (two concurrent trials in one second) go by
    # trial and iteration.
    found.sort(key=lambda e: (e["timestamp"], e["trial_id"], e["iteration"]))
    return found


def compute_to_reach(
    evals: list[dict[str, Any]], target: float, mode: str
) -> dict[str, float] | None:
    """The compute spent, in each unit, up to and including the first evaluation whose value
    reaches `target`; None when none does."""
    spent = dict.fromkeys(UNITS, 0.0)
    for evaluation in evals:
        for unit in UNITS:
            spent[unit] += evaluation[unit]
        reached = evaluation["value"] >= target if mode == "max" else evaluation["value"] <= target
        if reached:
            return spent
    return None


def totals(evals: list[dict[str, Any]]) -> dict[str, float]:
    return {unit: float(sum(e[unit] for e in evals)) for unit in UNITS}


def run_method(method: str, seed: int, spec: Any) -> dict[str, Any]:
    """Run one arm's sweep (`spec` from `method_spec`) and collect its evaluations."""
    from raytune_ft.sweep.runner import run_sweep

    started = time.monotonic()
    outcome = run_sweep(spec)
    return collect(method, seed, outcome.run_dir, round(time.monotonic() - started, 1))


def collect(method: str, seed: int, sweep_dir: Any, wall_s: float | None) -> dict[str, Any]:
    """One finished sweep's evaluations and totals, from its folder."""
    from raytune_ft.spec import load_spec

    spec = load_spec(Path(sweep_dir.path) / "spec.yaml")
    summary_file = sweep_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    evals = evaluations(sweep_dir, spec.metric)
    pick = max if spec.metric_mode == "max" else min
    return {
        "method": method,
        "seed": seed,
        "sweep_dir": sweep_dir.uri,
        "wall_s": wall_s,
        "trials": summary.get("trials"),
        "best": pick(e["value"] for e in evals),
        "best_config": summary.get("best_config"),
        "total": totals(evals),
        "evaluations": evals,
        "metric": spec.metric,
        "mode": spec.metric_mode,
    }


def finished_sweeps(storage: Path, seeds: list[int]) -> dict[int, dict[str, Any]]:
    """`--analyze`: the newest finished sweep (one with summary.json) of each method and seed
    under `storage`, as `run_method` would have returned it."""
    from raytune_ft.spec.sections import StorageSpec
    from raytune_ft.storage import storage_root

    found: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        for method in METHODS:
            folders = sorted(storage.glob(f"efficiency-{method}-seed{seed}-tune-*"))
            folders = [f for f in folders if (f / "summary.json").exists()]
            if folders:
                location = storage_root(StorageSpec(path=str(folders[-1])))
                found.setdefault(seed, {})[method] = collect(method, seed, location, None)
    return found


def compare(tpe: dict[str, Any], rand: dict[str, Any], tolerance: float = 0.0) -> dict[str, Any]:
    """Random search's best, what each method spent to first reach it (or to come within
    `tolerance` of it: both methods the same), and the ratios."""
    mode = rand["mode"]
    target = rand["best"] - tolerance if mode == "max" else rand["best"] + tolerance
    random_to_best = compute_to_reach(rand["evaluations"], target, mode)
    tpe_to_reach = compute_to_reach(tpe["evaluations"], target, mode)
    assert random_to_best is not None  # its own best is among its evaluations
    return {
        "seed": rand["seed"],
        "random_best": rand["best"],
        "tolerance": tolerance,
        "target": target,
        "tpe_asha_best": tpe["best"],
        "random_to_best": random_to_best,
        "random_total": rand["total"],
        "tpe_asha_to_reach": tpe_to_reach,
        "tpe_asha_total": tpe["total"],
        "ratio": None
        if tpe_to_reach is None
        else {unit: tpe_to_reach[unit] / random_to_best[unit] for unit in UNITS},
        # Against all of random search's compute (what it costs to know it found its best).
        "ratio_to_random_total": None
        if tpe_to_reach is None
        else {unit: tpe_to_reach[unit] / rand["total"][unit] for unit in UNITS},
        "total_ratio": {unit: tpe["total"][unit] / rand["total"][unit] for unit in UNITS},
    }


def summarize(rows: list[dict[str, Any]], target_ratio: float) -> dict[str, Any]:
    reached = [row for row in rows if row["ratio"] is not None]
    mean = (
        {unit: statistics.fmean(row["ratio"][unit] for row in reached) for unit in UNITS}
        if reached
        else None
    )
    return {
        "seeds": len(rows),
        "reached": len(reached),
        "mean_ratio_where_reached": mean,
        "mean_total_ratio": {
            unit: statistics.fmean(row["total_ratio"][unit] for row in rows) for unit in UNITS
        },
        "target_ratio": target_ratio,
        # Met only when TPE + ASHA reached random search's best for every seed and the mean
        # ratio in trial-evaluations is at most the target.
        "target_met": bool(
            reached and len(reached) == len(rows) and mean["evaluations"] <= target_ratio
        ),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _compute(spent: dict[str, float] | None) -> str:
    if spent is None:
        return "not reached"
    return f"{spent['evaluations']:.0f} ev / {spent['examples']:.0f} ex / {spent['trial_s']:.0f} s"


def print_table(report: dict[str, Any]) -> None:
    s = report["settings"]
    print()
    print(
        f"sweep_efficiency: {s['trials']} trials per method, seeds {s['seeds']}, "
        f"settings {' '.join(s['overrides']) or '(the quickstart as is)'}"
    )
    print("compute = trial-evaluations / training examples / trial-seconds (these vary with load)")
    if s.get("tolerance"):
        print(f"reached = within {s['tolerance']} of random search's best (both methods)")
    header = (
        f"{'seed':>4} {'random best':>11} {'random to best':>30} {'TPE+ASHA best':>13} "
        f"{'TPE+ASHA to reach':>30} {'ratio ev':>8} {'ratio ex':>8} {'ratio s':>8} "
        f"{'vs random total ev':>18}"
    )
    print(header)
    print("-" * len(header))
    for row in report["comparisons"]:
        ratio = row["ratio"] or {}
        whole = row["ratio_to_random_total"] or {}
        print(
            f"{row['seed']:>4} {row.get('random_best', row['target']):>11.4f} "
            f"{_compute(row['random_to_best']):>30} "
            f"{row['tpe_asha_best']:>13.4f} {_compute(row['tpe_asha_to_reach']):>30} "
            f"{_pct(ratio.get('evaluations')):>8} {_pct(ratio.get('examples')):>8} "
            f"{_pct(ratio.get('trial_s')):>8} {_pct(whole.get('evaluations')):>18}"
        )
    summary = report["summary"]
    mean = summary["mean_ratio_where_reached"] or {}
    print(
        f"mean ratio (seeds where reached: {summary['reached']}/{summary['seeds']}): "
        f"{_pct(mean.get('evaluations'))} of random's trial-evaluations, "
        f"{_pct(mean.get('examples'))} of its examples, {_pct(mean.get('trial_s'))} of its "
        f"trial-seconds; whole sweeps: TPE+ASHA spent "
        f"{_pct(summary['mean_total_ratio']['evaluations'])} of random's evaluations"
    )
    verdict = "met" if summary["target_met"] else "NOT met"
    print(f"target <= {_pct(summary['target_ratio'])} of random's compute: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="per method and seed")
    parser.add_argument("--seeds", default="0,1,2", help="search seeds, comma-separated")
    parser.add_argument(
        "--full", action="store_true", help="the quickstart's size (no REDUCED overrides)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--target", type=float, default=0.40)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="count random's best as reached within this much of it (default 0: exactly)",
    )
    parser.add_argument(
        "--startup-trials",
        type=int,
        default=None,
        help="TPE's random start-up (sweep.search.startup_trials); default: the spec's "
        "(unset: a quarter of the trials, 2 to 10)",
    )
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "bench-sweep-efficiency"))
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/...)")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run nothing: compare the finished sweeps already under --work-dir",
    )
    args = parser.parse_args(argv)

    from raytune_ft.launch.local_ray import ray_session
    from raytune_ft.spec.sections import ClusterSpec

    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = ([] if args.full else REDUCED) + args.overrides
    storage = Path(args.work_dir).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    runs, comparisons = [], []
    started = time.monotonic()
    if args.analyze:
        for by_method in finished_sweeps(storage, seeds).values():
            runs += by_method.values()
            if len(by_method) == len(METHODS):
                comparisons.append(
                    compare(by_method["tpe-asha"], by_method["random-fifo"], args.tolerance)
                )
    else:
        # One local Ray for every sweep (each run_sweep joins it instead of starting its own).
        with ray_session(ClusterSpec(address="local"), cpus_per_trial=1):
            for seed in seeds:
                by_method = {}
                for method in METHODS:
                    print(f"== seed {seed}: {method}, {args.trials} trials", flush=True)
                    spec = method_spec(
                        method, seed, args.trials, overrides, storage, args.startup_trials
                    )
                    by_method[method] = run_method(method, seed, spec)
                    runs.append(by_method[method])
                comparisons.append(
                    compare(by_method["tpe-asha"], by_method["random-fifo"], args.tolerance)
                )
    report = {
        "benchmark": "sweep_efficiency",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "trials": max((r["trials"] or {}).get("total", 0) for r in runs)
            if args.analyze and runs
            else args.trials,
            "tolerance": args.tolerance,
            "seeds": seeds,
            "overrides": overrides,
            "startup_trials": args.startup_trials,
            "methods": {"tpe-asha": "optuna TPE + the spec's ASHA", "random-fifo": "random + FIFO"},
            "spec": str(SPEC.relative_to(ROOT)),
            "loadavg_at_end": os.getloadavg()[0],
            "analyzed_existing_sweeps": args.analyze,
        },
        "wall_s": round(time.monotonic() - started, 1),
        "comparisons": comparisons,
        "summary": summarize(comparisons, args.target),
        "runs": runs,
    }
    out = Path(
        args.out
        or ROOT / "bench" / "results" / f"sweep-efficiency-{time.strftime('%Y%m%d-%H%M')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
