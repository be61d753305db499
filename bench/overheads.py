"""Where the time goes around the training steps: pure step time vs end-to-end wall time.

For one `raytune-ft train` run and a small sweep it measures, on this machine:

1. pure step time: a plain PyTorch loop, outside Ray and without DeepSpeed, over the same
   prepared batches (the project's own data preparation, collator and model builder), the same
   micro-batch, precision and number of optimizer steps; only forward, backward, clipping and
   optimizer step are timed;
2. the end-to-end wall of `python -m raytune_ft train SPEC` as a subprocess (process start to
   exit) and the run's own `wall_time_s`, their ratio to (1), the time from process start to
   the first step and from the last step to exit (read by watching the run's steps.jsonl grow;
   the spec logs every step);
3. the run's checkpoints: how many, bytes on disk each, and what summary.json says of them;
4. per-trial start-up of a sweep run one trial at a time: the same tiny sweep with
   num_samples 1 and N (every trial the same fixed steps), (wall(N) - wall(1)) / (N - 1)
   minus the plain loop's time for one trial's steps.

Run it as a script (not `python -m`, which would put the working directory first on sys.path):

    .venv/bin/python bench/overheads.py [--device cpu|gpu] [--quick] [--out FILE.json]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/overheads.py   # another checkout

Every run's output, with elapsed seconds on each line, is kept next to the JSON (`*-logs/`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE_ENV.items():  # before transformers or datasets are imported
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "experiments" / "data" / "sentiment"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
POLL_S = 0.1


@dataclass(frozen=True)
class Sizes:
    """What one benchmark run trains: the train run, then the sweep's trials."""

    precision: str
    use_gpu: bool
    train_rows: int | None  # None: the whole sentiment data; else its first rows (one file)
    epochs: int
    train_steps: int
    micro_batch: int
    max_length: int
    eval_every: int
    sweep_rows: int
    sweep_steps: int
    sweep_samples: int


SIZES = {
    # ~60 steps, 3 evaluations on 300 validation rows; 4-step trials on 104 rows (10 validation)
    "cpu": Sizes(
        "fp32", False, None, 1, 60, 16, 64, 20, sweep_rows=104, sweep_steps=4, sweep_samples=4
    ),
    # issue 8's GPU run: 3 epochs of the sentiment data at micro-batch 64 (38 steps and one
    # evaluation each), with `--model` a BERT-large-shaped (335M) random-init classifier
    "gpu": Sizes(
        "bf16", True, None, 3, 114, 64, 64, 38, sweep_rows=1000, sweep_steps=20, sweep_samples=4
    ),
    "quick": Sizes(
        "fp32", False, 64, 1, 4, 8, 32, 2, sweep_rows=44, sweep_steps=2, sweep_samples=2
    ),
}


# --------------------------------------------------------------------------- specs and data


def small_copy(rows: int, folder: Path) -> Path:
    """The header and first `rows` rows of one sentiment file (amazon: plain CRLF lines)."""
    lines = (SENTIMENT / "amazon_cells_labelled.txt").read_bytes().split(b"\r\n")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "amazon_cells_labelled.txt"
    target.write_bytes(b"\r\n".join(lines[: rows + 1]) + b"\r\n")
    return target


def spec_dict(
    name: str, sizes: Sizes, data: str, storage: Path, steps: int, eval_every: int, args: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 42,
        "model": {
            "name_or_path": args.model,
            "init": "random" if args.random_init else "pretrained",
        },
        "peft": {"method": "none"},
        "task": {"type": "classification", "text_column": "text", "label_column": "label"},
        "data": {
            "train": {"path": data, "format": "tsv", "columns": ["text", "label"]},
            "split": {"validation": 0.1, "test": 0.1, "stratify": True},
            "max_length": sizes.max_length,
        },
        "train": {
            "epochs": sizes.epochs,
            "max_steps": steps,
            "micro_batch_size": sizes.micro_batch,
            "learning_rate": 5.0e-5,
            "precision": sizes.precision,
            "eval_every": eval_every,
            "log_every": 1,  # every step in steps.jsonl: when the first and last happened
        },
        "deepspeed": {"zero_stage": 2},
        "scaling": {
            "num_workers": 1,
            "use_gpu": sizes.use_gpu,
            "cpus_per_worker": args.threads,
        },
        "storage": {"path": str(storage)},
    }


def sweep_section(samples: int) -> dict[str, Any]:
    return {
        "num_samples": samples,
        "max_concurrent_trials": 1,
        "search": {"algorithm": "random"},
        "scheduler": {"name": "fifo"},
        "space": {"train.learning_rate": {"choice": [5.0e-5]}},  # every trial the same
    }


SPEC_SETS: list[str] = []  # --set KEY=VALUE overrides, applied to every spec written


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    import yaml

    for item in SPEC_SETS:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- plain loop


def loop_step_seconds(steps_log: Path) -> dict[str, Any]:
    """Seconds per optimizer step by the loop's own clock (cumulative `train_s` in the step
    records, which leaves evaluations, checkpoints and exports out), over all steps but the
    first (warm-up)."""
    records = [json.loads(line) for line in steps_log.read_text().splitlines()]
    steps = [r for r in records if "train_s" in r]
    if len(steps) < 3:
        return {}
    first, last = steps[0], steps[-1]
    seconds = last["train_s"] - first["train_s"]
    return {
        "steps": last["step"] - first["step"],
        "seconds": round(seconds, 3),
        "step_s": round(seconds / (last["step"] - first["step"]), 4),
        "tokens_per_s": round((last["tokens"] - first["tokens"]) / seconds, 1),
    }


def loop_outside_ray(spec_path: Path, scratch: Path, use_gpu: bool) -> dict[str, Any]:
    """raytune-ft's own recipe (DeepSpeed engine, loop, evaluations, exports) run in this
    process with no Ray at all (a LocalSession and a one-rank process group): the reference
    for the Ray overhead of the same loop in a Ray Train worker."""
    from raytune_ft.data.prepare import prepare
    from raytune_ft.spec import load_spec
    from raytune_ft.storage import storage_root
    from raytune_ft.train.loop import WorkerArgs, run_recipe
    from raytune_ft.train.session import LocalSession, one_rank_process_group

    spec = load_spec(spec_path)
    spec.storage.path = str(scratch / "outside-ray")
    data = prepare(spec)
    run_dir = storage_root(spec.storage) / "run"
    args = WorkerArgs(
        spec=spec.model_dump(mode="json"),
        run_dir=run_dir.uri,
        use_gpu=use_gpu,
        prepared_dir=str(data.path),
    )
    started = time.monotonic()
    with one_rank_process_group(use_gpu):
        run_recipe(args, LocalSession())
    return {"wall_s": round(time.monotonic() - started, 2)} | loop_step_seconds(
        run_dir.local_path / "steps.jsonl"
    )


def plain_loop(spec_path: Path, cache_dir: Path, device: str, threads: int) -> dict[str, Any]:
    """The spec's optimizer steps in plain PyTorch, on the batches the run's loop gets.

    Data (prepared into its own cache, so the CLI runs still prepare theirs), sampler, collator,
    model, dtype, AdamW param groups, clipping and schedule as in raytune_ft/train/loop.py;
    no Ray, no DeepSpeed. Then one no-grad pass over the validation split.
    """
    import torch
    import transformers
    from transformers import get_scheduler, set_seed

    from raytune_ft.data.prepare import model_inputs, prepare
    from raytune_ft.modeling.loading import build_model, load_tokenizer
    from raytune_ft.spec import load_spec
    from raytune_ft.tasks.registry import task_for

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    spec = load_spec(spec_path)
    spec.data.cache_dir = str(cache_dir)
    if device == "cpu":
        torch.set_num_threads(threads)
    set_seed(spec.seed)
    started = time.monotonic()
    task = task_for(spec.task)
    tokenizer = load_tokenizer(spec.model)
    data = prepare(spec, tokenizer)
    schedule = spec.schedule(len(data["train"]))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec.train.precision]
    model = build_model(spec.model, spec.peft, task, data.labels, dtype=dtype).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n.lower()]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n.lower()]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": spec.train.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=spec.train.learning_rate,
    )
    lr_schedule = get_scheduler(
        spec.train.lr_scheduler,
        optimizer,
        num_warmup_steps=schedule.warmup_steps,
        num_training_steps=schedule.total_steps,
    )
    train = model_inputs(data["train"], task.feature_columns("train"))
    sampler = torch.utils.data.distributed.DistributedSampler(
        train, num_replicas=1, rank=0, shuffle=True, seed=spec.seed
    )
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=spec.train.micro_batch_size,
        sampler=sampler,
        collate_fn=task.collator(tokenizer, dtype, "train"),
    )
    setup_s = time.monotonic() - started

    model.train()
    step_times: list[float] = []
    epoch = 0
    while len(step_times) < schedule.total_steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            t0 = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            if spec.train.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.max_grad_norm)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()  # the loop reads it every step too (and it waits for the GPU)
            step_times.append(time.perf_counter() - t0)
            if len(step_times) >= schedule.total_steps:
                break
        epoch += 1

    model.eval()
    validation = model_inputs(data["validation"], task.feature_columns("validation"))
    eval_loader = torch.utils.data.DataLoader(
        validation,
        batch_size=spec.train.micro_batch_size,
        collate_fn=task.collator(tokenizer, dtype, "validation"),
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in eval_loader:
            model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
    eval_s = time.perf_counter() - t0
    result = {
        "steps": len(step_times),
        "schedule_total_steps": schedule.total_steps,
        "step_s": round(sum(step_times), 3),
        "median_step_s": round(statistics.median(step_times), 4),
        "first_step_s": round(step_times[0], 4),
        "eval_pass_s": round(eval_s, 3),
        "setup_s": round(setup_s, 2),
        "data_sizes": data.sizes(),
        "threads": torch.get_num_threads(),
        "device": device,
    }
    del model, optimizer, lr_schedule, loader, eval_loader, data
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


# --------------------------------------------------------------------------- CLI runs


@dataclass
class CliRun:
    """One `python -m raytune_ft` subprocess, watched from outside."""

    command: str
    rc: int = -1
    wall_s: float = math.nan
    load_before: float = math.nan  # 1-minute load average: was something else using the CPUs?
    load_after: float = math.nan
    jit_builds: int = 0  # torch-extension (DeepSpeed op) builds that ninja ran during the run
    # steps.jsonl path -> [(seconds since process start when the line was first seen, record)]
    records: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)


def run_cli(
    python: str,
    command: str,
    spec: Path,
    watch: str,
    root: Path,
    log: Path,
    env: dict[str, str],
    timeout_s: float,
) -> CliRun:
    """Run `python -m raytune_ft COMMAND SPEC` from a scratch folder (so that the working
    directory cannot shadow PYTHONPATH), log its output with elapsed seconds on each line, and
    note when each line of each steps.jsonl matching `root/watch` appears."""
    run = CliRun(command, load_before=round(os.getloadavg()[0], 2))
    builds_before = jit_builds()
    log.parent.mkdir(parents=True, exist_ok=True)
    offsets: dict[Path, int] = {}
    started = time.monotonic()
    process = subprocess.Popen(
        [python, "-m", "raytune_ft", command, str(spec)],
        cwd=spec.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def copy_output() -> None:
        assert process.stdout is not None
        with log.open("w", encoding="utf-8") as out:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                out.write(f"[{time.monotonic() - started:7.1f}s] {line}\n")
                out.flush()

    def poll_steps() -> None:
        for path in root.glob(watch):
            with path.open("rb") as handle:
                handle.seek(offsets.get(path, 0))
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offsets[path] = offsets.get(path, 0) + len(complete)
            now = time.monotonic() - started
            for line in complete.splitlines():
                with contextlib.suppress(ValueError):
                    run.records.setdefault(str(path), []).append((now, json.loads(line)))

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    try:
        while process.poll() is None:
            poll_steps()
            if time.monotonic() - started > timeout_s:
                stop(process)
                break
            time.sleep(POLL_S)
    except BaseException:
        stop(process)
        raise
    run.wall_s = round(time.monotonic() - started, 2)
    run.rc = process.wait()
    reader.join(10)
    poll_steps()
    run.load_after, run.jit_builds = round(os.getloadavg()[0], 2), jit_builds() - builds_before
    return run


def jit_builds() -> int:
    """Lines in the torch-extension ninja logs (one per compiled object or library)."""
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache/torch_extensions")
    return sum(len(p.read_bytes().splitlines()) for p in root.glob("**/.ninja_log"))


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the run's process group (Ray's own processes too), SIGKILL after 60 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(60)
            return
        except subprocess.TimeoutExpired:
            continue


def only_run_dir(root: Path, pattern: str) -> Path | None:
    found = sorted(root.glob(pattern))
    return found[-1] if found else None


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def read_summary(run_dir: Path | None) -> dict[str, Any]:
    path = run_dir / "summary.json" if run_dir else None
    return json.loads(path.read_text()) if path and path.exists() else {}


# --------------------------------------------------------------------------- figures


def train_figures(run: CliRun, run_dir: Path | None, plain: dict[str, Any]) -> dict[str, Any]:
    records = next(iter(run.records.values()), [])
    steps = [(t, r) for t, r in records if "step" in r and "event" not in r]
    checkpoints = [(t, r) for t, r in records if r.get("event") == "checkpoint"]
    step_seen = {r["step"]: t for t, r in steps}
    # The last eval or checkpoint event logged at each step that has any (an export's record
    # is logged when the next export starts or the run ends, so it does not time its step).
    events = {
        r["step"]: t
        for t, r in records
        if r.get("event") in ("eval", "checkpoint", "resumed") and "step" in r
    }
    summary = read_summary(run_dir)
    figures: dict[str, Any] = {
        "rc": run.rc,
        "run_dir": str(run_dir) if run_dir else None,
        "wall_s": run.wall_s,
        "summary_wall_time_s": summary.get("wall_time_s"),
        "pure_step_s": plain["step_s"],
        "wall_over_pure": round(run.wall_s / plain["step_s"], 2),
        "summary_wall_over_pure": (
            round(summary["wall_time_s"] / plain["step_s"], 2) if "wall_time_s" in summary else None
        ),
        "steps_seen": len(steps),
        "best_validation": summary.get("best_validation"),
        "load_avg_before_after": [run.load_before, run.load_after],
        "jit_builds": run.jit_builds,
    }
    if steps:
        first, last = steps[0][0], steps[-1][0]
        # Step-to-step gaps with no event (evaluation, checkpoint) in between: the step time
        # inside Ray, read at the poll's resolution (POLL_S).
        gaps = [
            t - step_seen[r["step"] - 1]
            for t, r in steps
            if r["step"] - 1 in step_seen and r["step"] - 1 not in events
        ]
        figures |= {
            "start_to_first_step_s": round(first, 1),
            "first_to_last_step_s": round(last - first, 1),
            "after_last_step_s": round(run.wall_s - last, 1),
            "median_step_in_ray_s": round(statistics.median(gaps), 3) if gaps else None,
            "eval_and_checkpoint_s": [
                round(t - step_seen[step], 1) for step, t in events.items() if step in step_seen
            ],
        }
    folders = (
        [p for p in sorted(run_dir.glob("ray-train/checkpoint_*")) if p.is_dir()] if run_dir else []
    )
    sizes = {f.name: folder_bytes(f) for f in folders}
    figures["checkpoints"] = {
        "reported": len(checkpoints),
        "on_disk": len(folders),
        "bytes_total": sum(sizes.values()),
        "bytes_each": sizes,
        "summary": summary.get("checkpoints"),  # the seconds and bytes the run measured, if any
        "summary_exports": summary.get("exports"),
    }
    return figures


def sweep_figures(one: CliRun, many: CliRun, samples: int, plain: dict[str, Any]) -> dict[str, Any]:
    per_trial = (many.wall_s - one.wall_s) / (samples - 1)
    trials = sorted(
        (recs for recs in many.records.values() if recs), key=lambda recs: recs[0][0]
    )  # each trial's steps.jsonl, in the order they started
    firsts = [next((t for t, r in recs if "step" in r), math.nan) for recs in trials]
    lasts = [recs[-1][0] for recs in trials]
    # Last line of trial i (its final checkpoint) to the first step of trial i+1.
    between = [round(firsts[i + 1] - lasts[i], 1) for i in range(len(trials) - 1)]
    return {
        "rc": [one.rc, many.rc],
        "samples": samples,
        "wall_1_s": one.wall_s,
        f"wall_{samples}_s": many.wall_s,
        "wall_per_extra_trial_s": round(per_trial, 2),
        "plain_steps_per_trial_s": plain["step_s"],
        "plain_eval_per_trial_s": plain["eval_pass_s"],
        "per_trial_overhead_s": round(per_trial - plain["step_s"], 2),
        "per_trial_overhead_minus_eval_s": round(
            per_trial - plain["step_s"] - plain["eval_pass_s"], 2
        ),
        "trials_seen": len(trials),
        "load_avg_before_after": [[r.load_before, r.load_after] for r in (one, many)],
        "jit_builds": [one.jit_builds, many.jit_builds],
        "first_trial_start_to_first_step_s": round(firsts[0], 1) if firsts else None,
        "last_step_to_next_trial_first_step_s": between,
    }


# --------------------------------------------------------------------------- report


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def fmt_s(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return ", ".join(fmt_s(v) for v in value) or "n/a"
    return f"{value:.1f} s" if value >= 1 else f"{value:.3f} s"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def table(result: dict[str, Any]) -> str:
    s, env = result["sizes"], result["environment"]
    plain, train, sweep = result["plain_train"], result["train"], result["sweep"]
    ckpt = train["checkpoints"]
    rows: list[tuple[str, str]] = [
        ("raytune_ft (subprocess)", env["raytune_ft_cli"]),
        ("machine", f"{env['device_name']}, torch threads {plain['threads']}"),
        (
            "train run",
            f"{s['train_steps']} steps x micro-batch {s['micro_batch']}, max_length "
            f"{s['max_length']}, {s['precision']}, ZeRO-2, 1 worker, eval every {s['eval_every']}",
        ),
        ("  data (train/validation/test rows)", "/".join(map(str, plain["data_sizes"].values()))),
        (
            "  pure step time (plain loop)",
            f"{fmt_s(plain['step_s'])} ({plain['steps']} steps, median "
            f"{fmt_s(plain['median_step_s'])}, first {fmt_s(plain['first_step_s'])})",
        ),
        ("  plain eval pass (validation)", fmt_s(plain["eval_pass_s"])),
        ("  end-to-end wall (process)", fmt_s(train["wall_s"])),
        ("  summary.json wall_time_s", fmt_s(train["summary_wall_time_s"])),
        ("  wall / pure step time", f"{train['wall_over_pure']:.2f}x"),
        (
            "  loop's step, outside Ray / in a worker",
            f"{fmt_s(train.get('loop_outside_ray', {}).get('step_s'))} / "
            f"{fmt_s(train.get('loop_in_ray_worker', {}).get('step_s'))} "
            f"(Ray overhead {_percent(train.get('ray_overhead'))})",
        ),
        ("  start -> first step", fmt_s(train.get("start_to_first_step_s"))),
        ("  first -> last step", fmt_s(train.get("first_to_last_step_s"))),
        ("  median step inside Ray", fmt_s(train.get("median_step_in_ray_s"))),
        ("  step -> its eval+checkpoint logged", fmt_s(train.get("eval_and_checkpoint_s"))),
        ("  last step -> exit", fmt_s(train.get("after_last_step_s"))),
        (
            "  DeepSpeed op (JIT) builds, load avg",
            f"{train['jit_builds']}, {train['load_avg_before_after']}",
        ),
        (
            "checkpoints",
            f"{ckpt['reported']} reported, {ckpt['on_disk']} on disk, "
            f"{fmt_bytes(ckpt['bytes_total'])} in all",
        ),
        *((f"  {name}", fmt_bytes(n)) for name, n in ckpt["bytes_each"].items()),
        ("  seconds (summary.json)", "n/a" if ckpt["summary"] is None else ""),
    ]
    for key, said in (("checkpoints", ckpt["summary"]), ("exports", ckpt.get("summary_exports"))):
        if isinstance(said, dict) and {"seconds", "bytes"} <= said.keys():
            sizes = ", ".join(fmt_bytes(b) for b in said["bytes"])
            rows.append((f"    {key}", f"seconds {fmt_s(said['seconds'])}; {sizes}"))
        elif said is not None:
            rows.append((f"    {key}", json.dumps(said)[:140]))
    n = sweep["samples"]
    rows += [
        (
            "sweep",
            f"trials of {s['sweep_steps']} steps x micro-batch {s['micro_batch']} "
            f"({'/'.join(map(str, result['plain_trial']['data_sizes'].values()))} rows), "
            "one at a time, random + FIFO",
        ),
        ("  wall, 1 trial", fmt_s(sweep["wall_1_s"])),
        (f"  wall, {n} trials", fmt_s(sweep[f"wall_{n}_s"])),
        (f"  (wall {n} - wall 1) / {n - 1}", fmt_s(sweep["wall_per_extra_trial_s"])),
        ("  plain steps of one trial", fmt_s(sweep["plain_steps_per_trial_s"])),
        ("  per-trial overhead", fmt_s(sweep["per_trial_overhead_s"])),
        ("  ... also minus a plain eval pass", fmt_s(sweep["per_trial_overhead_minus_eval_s"])),
        (
            f"  {n}-trial run: start -> first step",
            fmt_s(sweep["first_trial_start_to_first_step_s"]),
        ),
        (
            "  trial's last line -> next first step",
            fmt_s(sweep["last_step_to_next_trial_first_step_s"]),
        ),
    ]
    problems = result["problems"]
    rows.append(
        ("  JIT builds, load avg", f"{sweep['jit_builds']}, {sweep['load_avg_before_after']}")
    )
    rows += [("PROBLEM", p) for p in problems]
    width = max(len(k) for k, _ in rows)
    title = f"raytune-ft overheads ({result['device']}{', quick' if result['quick'] else ''})"
    return "\n".join([title, *(f"{k:<{width}}  {v}" for k, v in rows)])


# --------------------------------------------------------------------------- main


def cli_environment(python: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Which raytune_ft the CLI subprocesses import, and its checkout's commit."""
    probe = "import raytune_ft, torch; print(raytune_ft.__file__); print(torch.__version__)"
    out = subprocess.run(
        [python, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    checkout = Path(out[0]).parents[1]
    git = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "--", "raytune_ft"],
        capture_output=True,
        text=True,
    )
    return {
        "raytune_ft_cli": out[0],
        "cli_torch": out[1],
        "cli_commit": git.stdout.strip() or "unknown",
        "cli_raytune_ft_dirty": bool(dirty.stdout.strip()),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--out", type=Path, help="default bench/results/overheads-DEVICE.json")
    parser.add_argument("--quick", action="store_true", help="smallest sizes (a smoke test)")
    parser.add_argument("--python", default=sys.executable, help="runs `-m raytune_ft`")
    parser.add_argument("--model", default=MODEL, help="model name_or_path (default MiniLM)")
    parser.add_argument(
        "--random-init", action="store_true", help="model.init: random (no weights needed)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="scaling.cpus_per_worker"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per CLI run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a spec override for every run, e.g. train.checkpoint.every_evals=1",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    SPEC_SETS[:] = args.set
    sizes = SIZES["quick" if args.quick else args.device]
    if args.device == "gpu" and args.quick:
        sizes = Sizes(**(asdict(sizes) | {"precision": "bf16", "use_gpu": True}))
    out = args.out or ROOT / "bench" / "results" / f"overheads-{args.device}.json"
    logs = out.with_name(out.stem + "-logs")
    env = dict(os.environ)  # with OFFLINE_ENV (set at import unless already set)
    scratch = Path(tempfile.mkdtemp(prefix="raytune-ft-overheads-"))
    problems: list[str] = []
    torch_device = "cuda" if args.device == "gpu" else "cpu"
    try:
        import torch

        import raytune_ft

        environment = cli_environment(args.python, env, scratch) | {
            "raytune_ft_bench": raytune_ft.__file__,
            "python": args.python,
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device_name": (
                torch.cuda.get_device_name() if torch_device == "cuda" else platform.processor()
            )
            or "cpu",
        }
        if environment["raytune_ft_bench"] != environment["raytune_ft_cli"]:
            problems.append(
                "the plain loop and the CLI import different raytune_ft: "
                f"{environment['raytune_ft_bench']} vs {environment['raytune_ft_cli']}"
            )
        print(f"raytune_ft: {environment['raytune_ft_cli']} ({environment['cli_commit'][:10]})")

        train_data = (
            str(small_copy(sizes.train_rows, scratch / "data-train"))
            if sizes.train_rows
            else str(SENTIMENT / "*_labelled.txt")
        )
        sweep_data = str(small_copy(sizes.sweep_rows, scratch / "data-sweep"))
        train_spec = write_spec(
            scratch / "train" / "spec.yaml",
            spec_dict(
                "bench-train",
                sizes,
                train_data,
                scratch / "train" / "runs",
                sizes.train_steps,
                sizes.eval_every,
                args,
            ),
        )
        sweep_specs = {
            n: write_spec(
                scratch / f"sweep{n}" / "spec.yaml",
                spec_dict(
                    "bench-sweep",
                    sizes,
                    sweep_data,
                    scratch / f"sweep{n}" / "runs",
                    sizes.sweep_steps,
                    sizes.sweep_steps,
                    args,
                )
                | {"sweep": sweep_section(n)},
            )
            for n in (1, sizes.sweep_samples)
        }

        print("plain loop: train run's steps ...", flush=True)
        plain_train = plain_loop(train_spec, scratch / "plain-cache", torch_device, args.threads)
        print(f"  {plain_train['step_s']} s for {plain_train['steps']} steps", flush=True)
        print("plain loop: one sweep trial's steps ...", flush=True)
        plain_trial = plain_loop(
            sweep_specs[1], scratch / "plain-cache", torch_device, args.threads
        )
        print(f"  {plain_trial['step_s']} s for {plain_trial['steps']} steps", flush=True)
        for name, plain, want in (
            ("train", plain_train, sizes.train_steps),
            ("sweep trial", plain_trial, sizes.sweep_steps),
        ):
            if plain["steps"] != want:
                problems.append(f"{name}: {plain['steps']} steps, not {want} (too little data)")

        print("raytune-ft's loop outside Ray ...", flush=True)
        outside = loop_outside_ray(train_spec, scratch, sizes.use_gpu)
        print(f"  {outside.get('step_s')} s per step", flush=True)

        print("raytune-ft train ...", flush=True)
        root = scratch / "train" / "runs"
        train_run = run_cli(
            args.python,
            "train",
            train_spec,
            "bench-train-train-*/steps.jsonl",
            root,
            logs / "train.log",
            env,
            args.timeout,
        )
        run_dir = only_run_dir(root, "bench-train-train-*")
        train = train_figures(train_run, run_dir, plain_train)
        inside = loop_step_seconds(run_dir / "steps.jsonl") if run_dir else {}
        train["loop_outside_ray"] = outside
        train["loop_in_ray_worker"] = inside
        if outside.get("step_s") and inside.get("step_s"):
            train["ray_overhead"] = round(inside["step_s"] / outside["step_s"] - 1, 4)
        print(f"  rc {train_run.rc}, {train_run.wall_s} s", flush=True)

        sweeps: dict[int, CliRun] = {}
        for n, spec in sweep_specs.items():
            print(f"raytune-ft tune, {n} trial(s) ...", flush=True)
            sweeps[n] = run_cli(
                args.python,
                "tune",
                spec,
                "bench-sweep-tune-*/trials/*/steps.jsonl",
                spec.parent / "runs",
                logs / f"sweep{n}.log",
                env,
                args.timeout,
            )
            print(f"  rc {sweeps[n].rc}, {sweeps[n].wall_s} s", flush=True)
        sweep = sweep_figures(
            sweeps[1], sweeps[sizes.sweep_samples], sizes.sweep_samples, plain_trial
        )
        for n, run in sweeps.items():
            summary = read_summary(
                only_run_dir(sweep_specs[n].parent / "runs", "bench-sweep-tune-*")
            )
            sweep[f"summary_{n}"] = {k: summary.get(k) for k in ("trials", "wall_time_s")}
            if run.rc != 0:
                problems.append(f"tune with {n} trial(s) exited {run.rc}: see {logs}/sweep{n}.log")
        if train_run.rc != 0:
            problems.append(f"train exited {train_run.rc}: see {logs}/train.log")

        result = {
            "device": args.device,
            "quick": args.quick,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "sizes": asdict(sizes),
            "environment": environment,
            "plain_train": plain_train,
            "plain_trial": plain_trial,
            "train": train,
            "sweep": sweep,
            "logs": str(logs),
            "problems": problems,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print()
        print(table(result))
        print(f"\nwritten: {out}")
        return 1 if problems else 0
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
