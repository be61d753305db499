"""Big sweeps: what the sweep driver costs per trial as a sweep grows to 1,000 trials.

A synthetic trainable (test-only: no model, no data) reports a seeded learning curve for
each trial and writes the same `steps.jsonl` eval records the real training loop writes, and
runs through the project's own Tune experiment (`raytune_ft.sweep.tuner.make_tuner`: the
spec's searcher, scheduler, space, callbacks, failure and checkpoint config) on a local Ray
bound to 127.0.0.1. Trials take a tenth of a CPU each and many run at once, so the sweep is
bound by the driver, which is what this measures:

- driver cost per trial: wall seconds and driver CPU seconds per trial, per window of trials;
- driver memory (RSS) as trials accumulate;
- the searcher's seconds per suggestion (a new trial's config) and per completed trial
  (the searcher told the result), per window: TPE's cost grows with its history;
- Tune's experiment-state snapshots (their seconds each, and the file's size);
- after the sweep: writing results.csv (the runner's `_summarize`) and the HTML report
  (`raytune_ft.sweep.report.write_report`), and the sweep folder's size and file count.

    PYTHONPATH=. .venv/bin/python bench/sweep_scale.py --trials 1000
    PYTHONPATH=. .venv/bin/python bench/sweep_scale.py --search random --scheduler fifo

`--trials 50` is a quick run. Writes `bench/results/sweep-scale-<date>-<search>-<n>.json`
(`--out`) and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "quickstart.yaml"
STEPS_PER_EVAL = 25  # the quickstart's eval_every, so the report's x axis reads like it


# --------------------------------------------------------------------- synthetic trainable


def axes_of(space: dict[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """Each space key as an axis the synthetic curve scores on: where a value lies in [0, 1]
    (log scale for log distributions, position for choices) and a seeded best position."""
    rng = random.Random(seed)
    axes = {}
    for key, dist in space.items():
        if dist.values is not None:
            axes[key] = {"values": [json.dumps(v, sort_keys=True) for v in dist.values]}
        else:
            fields = type(dist).model_fields
            low, high = (float(b) for b in dist.corners)
            axes[key] = {"log": "loguniform" in fields or "logint" in fields, "low": low}
            axes[key]["high"] = high
        axes[key]["best"] = rng.uniform(0.2, 0.8)
        axes[key]["weight"] = rng.uniform(0.5, 2.0)
    return axes


def _position(axis: dict[str, Any], value: Any) -> float:
    if "values" in axis:
        values = axis["values"]
        return values.index(json.dumps(value, sort_keys=True)) / max(1, len(values) - 1)
    low, high, v = axis["low"], axis["high"], float(value)
    if axis["log"]:
        low, high, v = math.log(low), math.log(high), math.log(v)
    return (v - low) / ((high - low) or 1.0)


def learning_curve(
    params: dict[str, Any], axes: dict[str, dict[str, Any]], evaluations: int, seed: int
) -> list[float]:
    """A seeded validation-accuracy curve: rises from 0.5 towards a plateau that is highest
    at each axis's best position, with evaluation noise (the same params give the same
    curve)."""
    penalty = sum(
        axis["weight"] * (_position(axis, params[key]) - axis["best"]) ** 2
        for key, axis in axes.items()
        if key in params
    )
    plateau = 0.5 + 0.45 * math.exp(-3.0 * penalty)
    digest = hashlib.sha256(json.dumps([seed, params], sort_keys=True).encode()).digest()
    rng = random.Random(digest)
    speed = rng.uniform(1.5, 4.0)  # how fast this trial learns
    curve = []
    for i in range(evaluations):
        progress = 1.0 - math.exp(-speed * (i + 1) / evaluations)
        value = 0.5 + (plateau - 0.5) * progress + rng.gauss(0.0, 0.01)
        curve.append(min(1.0, max(0.0, value)))
    return curve


def synthetic_trial(
    params: dict[str, Any],
    sweep_dir: Any,
    metric: str,
    axes: dict[str, dict[str, Any]],
    evaluations: int,
    seed: int,
    checkpoint_every: int = 0,
) -> None:
    """TEST-ONLY stand-in for `runner.trial_driver`: reports a seeded learning curve with the
    keys the runner's summary and the schedulers read, and logs each evaluation to the
    trial's steps.jsonl as the training loop does (what the report draws). With
    `checkpoint_every`, every that many evaluations carry a 1 KiB checkpoint, as a trial with
    `train.checkpoint.every_evals` does (Tune copies it and counts it towards its syncs)."""
    import tempfile

    from ray import tune

    from raytune_ft.storage import StepLog

    trial_id = tune.get_context().get_trial_id()
    log = StepLog(sweep_dir / "trials" / trial_id / "steps.jsonl")
    best = -math.inf
    started = time.monotonic()
    for i, value in enumerate(learning_curve(params, axes, evaluations, seed)):
        step = (i + 1) * STEPS_PER_EVAL
        best = max(best, value)
        log.append({"event": "eval", "step": step, metric: value})
        log.flush()
        last = i == evaluations - 1
        metrics = {
            metric: value,
            f"best_{metric}": best,
            "step": step,
            "epoch": (i + 1) / evaluations,
            "tokens_seen": step * 32 * 64,
            "finished": float(last),
            "elapsed_s": time.monotonic() - started,
        }
        if checkpoint_every and (i + 1) % checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as folder:
                Path(folder, "state.bin").write_bytes(bytes(1024))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)


# --------------------------------------------------------------------- driver-side probes


class Probes:
    """What the driver records while Tune runs: one sample per finished trial, and a
    background sample of RSS every `interval_s` (peaks between trial ends)."""

    def __init__(self, interval_s: float = 0.5):
        import psutil

        self.process = psutil.Process()
        self.interval_s = interval_s
        self.started = time.monotonic()
        self.ends: list[dict[str, float]] = []  # per finished trial
        self.samples: list[tuple[float, int]] = []  # (seconds, rss)
        # Per suggestion that made a trial, and per completed trial told to the searcher:
        # wall seconds, and CPU seconds of the driver's thread that ran it (which the other
        # processes on a loaded machine do not inflate).
        self.suggest_s: list[float] = []
        self.suggest_cpu_s: list[float] = []
        self.tell_s: list[float] = []
        self.tell_cpu_s: list[float] = []
        self.snapshots: list[dict[str, float]] = []  # Tune's experiment-state saves
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks and searcher (which read these probes) into the
        # experiment folder, for a restore this bench never does: a copy records nothing.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append((time.monotonic() - self.started, self.process.memory_info().rss))

    def trial_ended(self) -> None:
        cpu = self.process.cpu_times()
        self.ends.append(
            {
                "t": time.monotonic() - self.started,
                "rss": self.process.memory_info().rss,
                "cpu_s": cpu.user + cpu.system,
            }
        )


PROBES: Probes | None = None  # the driver's; trials never touch it


def _tune_callback() -> Any:
    from ray.tune import Callback

    class TrialEnds(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if PROBES is not None:
                PROBES.trial_ended()

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if PROBES is not None:
                PROBES.trial_ended()

    return TrialEnds()


def _timed_generators() -> tuple[type, type]:
    """Tune's two search-algorithm shapes with their suggestion (a new trial) and their
    tell (a completed trial) timed: SearchGenerator wraps Optuna/HyperOpt/BOHB (behind the
    project's ConcurrencyLimiter), BasicVariantGenerator is random search."""
    from ray.tune.search import BasicVariantGenerator, SearchGenerator

    def timed(cls: type) -> type:
        class Timed(cls):  # type: ignore[misc, valid-type]
            def next_trial(self) -> Any:
                started, cpu = time.perf_counter(), time.thread_time()
                trial = super().next_trial()
                if trial is not None and PROBES is not None:
                    PROBES.suggest_s.append(time.perf_counter() - started)
                    PROBES.suggest_cpu_s.append(time.thread_time() - cpu)
                return trial

            def on_trial_complete(self, trial_id: str, result: Any = None, error: bool = False):
                started, cpu = time.perf_counter(), time.thread_time()
                super().on_trial_complete(trial_id, result=result, error=error)
                if PROBES is not None:
                    PROBES.tell_s.append(time.perf_counter() - started)
                    PROBES.tell_cpu_s.append(time.thread_time() - cpu)

        Timed.__name__ = f"Timed{cls.__name__}"
        return Timed

    return timed(SearchGenerator), timed(BasicVariantGenerator)


def _time_state_snapshots() -> None:
    """Time Tune's experiment-state snapshots (TuneController.save_to_dir, which the
    checkpoint manager calls every auto-adjusted period and at the end). A bench-only patch
    of a Ray internal: skipped, with a note, where Ray no longer has it."""
    from ray.tune.execution import tune_controller

    original = getattr(tune_controller.TuneController, "save_to_dir", None)
    if original is None:
        print("note: TuneController.save_to_dir not found; state snapshots are not timed")
        return

    def save_to_dir(self: Any, *args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        out = original(self, *args, **kwargs)
        if PROBES is not None:
            PROBES.snapshots.append(
                {
                    "t": time.monotonic() - PROBES.started,
                    "seconds": time.perf_counter() - started,
                    "cpu_s": time.thread_time() - cpu,
                    "trials_ended": len(PROBES.ends),
                    "state_bytes": _state_bytes(self),
                }
            )
        return out

    tune_controller.TuneController.save_to_dir = save_to_dir


def _state_bytes(controller: Any) -> int:
    staging = Path(controller._storage.experiment_driver_staging_path)
    return sum(p.stat().st_size for p in staging.glob("experiment_state-*.json"))


# --------------------------------------------------------------------- the sweep


def build_spec(args: argparse.Namespace, storage: Path) -> Any:
    from raytune_ft.spec import load_spec

    overrides = [
        f"name=sweep-scale-{args.search}",
        f"storage.path={storage}",
        f"sweep.num_samples={args.trials}",
        f"sweep.search={{algorithm: {args.search}, seed: {args.seed}}}",
    ]
    if args.scheduler == "fifo":
        overrides.append("sweep.scheduler={name: fifo}")
    return load_spec(SPEC, [*overrides, *args.overrides])


def make_search_algorithm(spec: Any, max_concurrent: int) -> Any:
    """The spec's searcher as `make_searcher` builds it, inside a timed generator."""
    from raytune_ft.sweep.registry import Searcher, make_searcher
    from raytune_ft.sweep.space import encode_point

    timed_search, timed_random = _timed_generators()
    sweep = spec.sweep
    if sweep.search.algorithm in ("random", "grid"):
        points = [encode_point(sweep, p) for p in sweep.points_to_evaluate]
        generator = timed_random(
            points_to_evaluate=points or None,
            random_state=spec.search_seed,
            max_concurrent=max_concurrent,
        )
        return Searcher(generator, has_own_space=False)
    made = make_searcher(spec, max_concurrent)
    return Searcher(timed_search(made.algorithm), has_own_space=made.has_own_space)


def folder_size(path: Path) -> dict[str, Any]:
    """Bytes and files under `path`, and under each of its children."""
    total_bytes, total_files, parts = 0, 0, {}
    for child in sorted(path.iterdir()):
        files = [child] if child.is_file() else [p for p in child.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        parts[child.name] = {"bytes": size, "files": len(files)}
        total_bytes += size
        total_files += len(files)
    return {"bytes": total_bytes, "files": total_files, "parts": parts}


def tune_files(tune_dir: Path) -> dict[str, Any]:
    """What Tune keeps per experiment and per trial: the experiment state, the searcher's
    state, and each trial folder's files by kind."""
    kinds: dict[str, dict[str, int]] = {}
    for path in tune_dir.rglob("*"):
        if not path.is_file() or path.parent == tune_dir:
            continue
        kind = "events.out.tfevents" if path.name.startswith("events.out") else path.name
        entry = kinds.setdefault(kind, {"files": 0, "bytes": 0})
        entry["files"] += 1
        entry["bytes"] += path.stat().st_size
    top = {p.name: p.stat().st_size for p in tune_dir.iterdir() if p.is_file()}
    return {"experiment_files": top, "trial_files": kinds}


def windows(values: list[float], size: int) -> list[list[float]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def per_window(probes: Probes, size: int) -> list[dict[str, Any]]:
    """Driver cost per trial, memory and searcher cost, per window of `size` trials (in the
    order they ended; suggestions in the order they were made)."""
    rows = []
    ends = probes.ends
    suggest, tell = windows(probes.suggest_s, size), windows(probes.tell_s, size)
    suggest_cpu, tell_cpu = windows(probes.suggest_cpu_s, size), windows(probes.tell_cpu_s, size)
    previous = {"t": 0.0, "cpu_s": ends[0]["cpu_s"] if ends else 0.0}
    for index, chunk in enumerate(windows(ends, size)):
        last = chunk[-1]
        row = {
            "trials": f"{index * size + 1}-{index * size + len(chunk)}",
            "wall_s_per_trial": (last["t"] - previous["t"]) / len(chunk),
            "driver_cpu_s_per_trial": (last["cpu_s"] - previous["cpu_s"]) / len(chunk),
            "rss_mib_at_end": last["rss"] / 2**20,
        }
        if index < len(suggest):
            row["suggest_ms_mean"] = 1000 * statistics.fmean(suggest[index])
            row["suggest_ms_max"] = 1000 * max(suggest[index])
            row["suggest_cpu_ms_mean"] = 1000 * statistics.fmean(suggest_cpu[index])
        if index < len(tell):
            row["tell_ms_mean"] = 1000 * statistics.fmean(tell[index])
            row["tell_cpu_ms_mean"] = 1000 * statistics.fmean(tell_cpu[index])
        rows.append(row)
        previous = last
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    global PROBES

    from raytune_ft.launch.local_ray import ray_session
    from raytune_ft.run_folder import spec_yaml
    from raytune_ft.storage import check_storage, new_run
    from raytune_ft.sweep.report import write_report
    from raytune_ft.sweep.runner import _best_result, _summarize
    from raytune_ft.sweep.tuner import TUNE_DIR, make_tuner, trainable_with

    storage = Path(args.work_dir).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    spec = build_spec(args, storage)
    sweep = spec.sweep
    axes = axes_of(sweep.space, args.seed)
    max_t = float(args.evaluations)
    _time_state_snapshots()

    figures: dict[str, Any] = {}
    with ray_session(spec.cluster, cpus_per_trial=1):
        import ray

        figures["ray_cpus"] = ray.cluster_resources().get("CPU")
        sweep_dir = new_run(check_storage(spec.storage), spec.name, "tune")
        (sweep_dir / "spec.yaml").write_text(spec_yaml(spec))
        trainable = trainable_with(
            synthetic_trial,
            lambda params: {"CPU": args.cpus_per_trial},
            sweep_dir=sweep_dir,
            metric=spec.metric,
            axes=axes,
            evaluations=args.evaluations,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
        )
        PROBES = Probes()
        tuner = make_tuner(
            spec,
            trainable,
            sweep_dir,
            name=TUNE_DIR,
            num_samples=args.trials,
            max_concurrent=args.concurrency,
            max_t=max_t,
            searcher=make_search_algorithm(spec, args.concurrency),
            callbacks=[_tune_callback()],
        )
        rss_before = PROBES.process.memory_info().rss
        PROBES.start()
        started = time.monotonic()
        grid = tuner.fit()
        fit_s = time.monotonic() - started
        PROBES.stop()
        figures["fit_s"] = fit_s
        figures["rss_mib_before_fit"] = rss_before / 2**20

        started = time.monotonic()
        best = _best_result([grid], spec)
        summary = _summarize(spec, [grid], best, sweep_dir, max_t)
        figures["summarize_s"] = time.monotonic() - started
    summary["wall_time_s"] = round(fit_s, 1)
    (sweep_dir / "summary.json").write_json(summary)

    started = time.monotonic()
    index = write_report(sweep_dir.local_path)
    figures["report_s"] = time.monotonic() - started

    probes = PROBES
    errors = [r.error for r in grid if r.error is not None]
    ended_at = [e["t"] for e in probes.ends]
    rss = [s[1] for s in probes.samples] or [probes.process.memory_info().rss]
    figures |= {
        "trials": len(grid),
        "trials_ended": summary["trials"],
        "trial_errors": [repr(e)[:300] for e in errors[:3]],
        "evaluations_reported": int(
            sum(len(r.metrics_dataframe) for r in grid if r.metrics_dataframe is not None)
        ),
        "trials_per_s": len(probes.ends) / ended_at[-1] if ended_at else None,
        "wall_s_per_trial": ended_at[-1] / len(ended_at) if ended_at else None,
        "driver_cpu_s_per_trial": (
            (probes.ends[-1]["cpu_s"] - probes.ends[0]["cpu_s"]) / max(1, len(probes.ends) - 1)
            if probes.ends
            else None
        ),
        "rss_mib_first_trial": probes.ends[0]["rss"] / 2**20 if probes.ends else None,
        "rss_mib_last_trial": probes.ends[-1]["rss"] / 2**20 if probes.ends else None,
        "rss_mib_peak": max(rss) / 2**20,
        "suggestions": len(probes.suggest_s),
        "suggest_ms_first_window": _mean_ms(probes.suggest_s[: args.window]),
        "suggest_ms_last_window": _mean_ms(probes.suggest_s[-args.window :]),
        "suggest_cpu_ms_first_window": _mean_ms(probes.suggest_cpu_s[: args.window]),
        "suggest_cpu_ms_last_window": _mean_ms(probes.suggest_cpu_s[-args.window :]),
        "state_snapshots": len(probes.snapshots),
        "state_snapshot_s_last": probes.snapshots[-1]["seconds"] if probes.snapshots else None,
        "state_snapshot_s_max": max((s["seconds"] for s in probes.snapshots), default=None),
        "state_bytes_last": probes.snapshots[-1]["state_bytes"] if probes.snapshots else None,
        "results_csv_rows": _csv_rows(sweep_dir.local_path / "results.csv"),
        "report": str(index),
        "report_written": index.exists(),
        "sweep_dir": sweep_dir.uri,
        "folder": folder_size(sweep_dir.local_path),
        "tune_files": tune_files(sweep_dir.local_path / TUNE_DIR),
    }
    return {
        "benchmark": "sweep_scale",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "trials": args.trials,
            "search": args.search,
            "scheduler": sweep.scheduler.name,
            "seed": args.seed,
            "evaluations_per_trial": args.evaluations,
            "concurrency": args.concurrency,
            "cpus_per_trial": args.cpus_per_trial,
            "window": args.window,
            "space": list(sweep.space),
            "checkpoint_every": args.checkpoint_every,
            "checkpoints_kept": spec.train.checkpoint.keep,
            "trackers": sweep.trackers.model_dump(mode="json"),
            "overrides": args.overrides,
            "load_during_run": _load_note(),
        },
        "figures": figures,
        "windows": per_window(probes, args.window),
        "snapshots": probes.snapshots,
    }


def _mean_ms(values: list[float]) -> float | None:
    return 1000 * statistics.fmean(values) if values else None


def _csv_rows(path: Path) -> int:
    with path.open() as handle:
        return max(0, sum(1 for _ in handle) - 1)


def _load_note() -> str:
    """The 1-minute load average at the end: other processes slow wall figures (the per-trial
    CPU seconds of the driver depend less on them)."""
    return f"loadavg {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(report: dict[str, Any]) -> None:
    f, s = report["figures"], report["settings"]
    print()
    print(
        f"sweep_scale: {s['trials']} trials, {s['search']} + {s['scheduler']}, "
        f"{s['concurrency']} concurrent x {s['cpus_per_trial']} CPU, "
        f"{s['evaluations_per_trial']} evaluations max per trial ({s['load_during_run']})"
    )
    header = (
        f"{'trials':>11} {'wall s/trial':>12} {'driver CPU s/trial':>18} "
        f"{'RSS MiB':>8} {'suggest ms':>10} {'CPU ms':>8} {'max':>8} {'tell CPU ms':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in report["windows"]:
        print(
            f"{row['trials']:>11} {_fmt(row['wall_s_per_trial'], 3):>12} "
            f"{_fmt(row['driver_cpu_s_per_trial'], 3):>18} {_fmt(row['rss_mib_at_end'], 0):>8} "
            f"{_fmt(row.get('suggest_ms_mean')):>10} {_fmt(row.get('suggest_cpu_ms_mean')):>8} "
            f"{_fmt(row.get('suggest_ms_max')):>8} {_fmt(row.get('tell_cpu_ms_mean')):>11}"
        )
    folder = f["folder"]
    first, last = f["suggest_cpu_ms_first_window"], f["suggest_cpu_ms_last_window"]
    growth = f"{last / first:.1f}x" if first and last else "-"
    print()
    print(f"fit wall s                     {_fmt(f['fit_s'], 1)}")
    print(f"trials per s                   {_fmt(f['trials_per_s'])}")
    print(f"driver CPU s per trial         {_fmt(f['driver_cpu_s_per_trial'], 3)}")
    print(
        f"driver RSS MiB                 before fit {_fmt(f['rss_mib_before_fit'], 0)}, "
        f"first trial {_fmt(f['rss_mib_first_trial'], 0)}, "
        f"last trial {_fmt(f['rss_mib_last_trial'], 0)}, peak {_fmt(f['rss_mib_peak'], 0)}"
    )
    print(
        f"suggest CPU ms, last/first     {_fmt(last)} / {_fmt(first)} = {growth} "
        f"(mean of the last window / of the first; wall ms in the table)"
    )
    print(
        f"state snapshots                {f['state_snapshots']}, last "
        f"{_fmt(f['state_snapshot_s_last'], 3)} s, max {_fmt(f['state_snapshot_s_max'], 3)} s, "
        f"state file {_fmt(f['state_bytes_last'])} bytes"
    )
    print(f"results.csv (_summarize) s     {_fmt(f['summarize_s'])} ({f['results_csv_rows']} rows)")
    print(f"report (write_report) s        {_fmt(f['report_s'])}")
    parts = ", ".join(f"{name} {part['files']}" for name, part in folder["parts"].items())
    print(
        f"sweep folder                   {folder['bytes'] / 2**20:.1f} MiB in {folder['files']} "
        f"files ({parts})"
    )
    print(f"trials ended                   {f['trials_ended']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--search", default="optuna", choices=["optuna", "random", "hyperopt"])
    parser.add_argument("--scheduler", default="spec", choices=["spec", "fifo"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluations", type=int, default=6, help="per trial, at most")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cpus-per-trial", type=float, default=0.1)
    parser.add_argument("--window", type=int, default=100, help="trials per row of the table")
    parser.add_argument(
        "--checkpoint-every", type=int, default=0, help="a 1 KiB checkpoint every N evaluations"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="K=V",
        help="spec overrides, e.g. 'sweep.trackers={mlflow: true}'",
    )
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "bench-sweep-scale"))
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/...)")
    args = parser.parse_args(argv)

    report = run(args)
    out = Path(
        args.out
        or ROOT
        / "bench"
        / "results"
        / f"sweep-scale-{time.strftime('%Y%m%d')}-{args.search}-{args.trials}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {out}")
    return 0 if not report["figures"]["trial_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
