"""The pre-flight estimate (`raytune-ft estimate`) against the memory a real run uses.

Each case runs the real training recipe (`FinetuneRecipe`: DeepSpeed engine, AdamW, the
evaluations) for a few steps in a fresh Python process, outside Ray, as a one-rank group (as a
one-worker sweep trial does), and records:

- `baseline`: the process's resident memory (RSS) just before the recipe's setup, with torch,
  transformers, DeepSpeed and the project imported and the data prepared;
- `peak`: the process's peak RSS at the end (`ru_maxrss`, what the loop reports as
  `peak_memory_bytes` on CPU);
- `measured = peak - baseline`: what training added, compared with the estimate's total.

glibc's malloc keeps freed blocks for reuse and raises its mmap threshold as large blocks are
freed, so a process's RSS keeps memory that tensors no longer use (the quickstart's RSS grows
by about 100 MiB a step that way). The child processes run with `MALLOC_MMAP_THRESHOLD_=65536`
(a fixed threshold: every tensor over 64 KiB gets its own mapping, returned when freed), so the
peak RSS follows the live tensors; `--malloc-default` measures without it.

On a GPU the peak is `torch.cuda.max_memory_allocated()` (the loop's own figure), with no
baseline to remove. Run it as a script from the repository root:

    .venv/bin/python bench/estimate_memory.py [--out bench/results/estimate-cpu.json]
    .venv/bin/python bench/estimate_memory.py --recorded-gpu   # no run: the H200 records
    python3 bench/estimate_memory.py --gpu                     # on a GPU machine: GPU_CASES

`--recorded-gpu` estimates the configurations whose peaks were measured on one H200 on
2026-11-27 (`bench/results/gpu-h200-20261127/`: the quickstart trials' `peak_memory_bytes`,
and the 1B ZeRO-2 + Liger loop's `torch.cuda.max_memory_allocated`) and compares.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

# A 4-layer, hidden-512 Llama (12.6M parameters in its layers) over the review corpus cut into
# full 256-token rows: every row is max_length long, so the activation term is tested at the
# token count it assumes.
LLAMA = [
    "model.config_overrides={hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 4, "
    "num_attention_heads: 8, num_key_value_heads: 8}",
    "data.max_length=256",
    "train.micro_batch_size=16",
]
# The test's case (tests/integration/test_estimate_measured.py): small enough for seconds.
TINY = [
    "model.config_overrides={hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4, "
    "num_attention_heads: 4, num_key_value_heads: 4}",
    "data.max_length=256",
    "train.micro_batch_size=16",
    "data.split={validation: 0.02, test: 0.02}",  # a short evaluation
    "train.max_steps=2",
    "train.eval_every=2",
]
CASES: dict[str, tuple[str, list[str]]] = {
    "llama-4x256-full": ("experiments/pretrain.yaml", TINY),
    "minilm-lora": ("experiments/quickstart.yaml", []),
    "minilm-full": ("experiments/quickstart.yaml", ["peft.method=none"]),
    "llama-4x512-full": ("experiments/pretrain.yaml", LLAMA),
    "llama-4x512-full-ckpt": (
        "experiments/pretrain.yaml",
        [*LLAMA, "performance.gradient_checkpointing=true"],
    ),
}
STEPS = ["train.max_steps=3", "train.eval_every=3", "data.max_train_samples=512"]

# `--gpu`: on one GPU, the Llama-3.2-1B shape (1.24B parameters, random bf16 weights; the
# folder is built there from a config, as weights cannot travel) over the review corpus cut into
# 1,024-token rows, each of the estimate's terms varied alone from GPU_BASE.
GPU_SHAPE = "llama-3.2-1b"
GPU_BASE = [
    "data.max_length=1024",
    "train.micro_batch_size=8",
    "performance.liger=false",
    "data.split={validation: 0.02, test: 0.02}",
]
LLAMA_LINEARS = "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]"
GPU_CASES: dict[str, tuple[str, list[str]]] = {  # in the order the lease runs them
    "1b-full-z2": ("experiments/pretrain.yaml", GPU_BASE),
    "1b-lora-r16": (
        "experiments/pretrain.yaml",
        [
            *GPU_BASE,
            "model.init=pretrained",
            f"peft={{method: lora, r: 16, alpha: 32, target_modules: {LLAMA_LINEARS}}}",
        ],
    ),
    "1b-full-z3": ("experiments/pretrain.yaml", [*GPU_BASE, "deepspeed.zero_stage=3"]),
    "1b-full-z2-ckpt": (
        "experiments/pretrain.yaml",
        [*GPU_BASE, "performance.gradient_checkpointing=true"],
    ),
    "1b-full-z2-mb16": ("experiments/pretrain.yaml", [*GPU_BASE, "train.micro_batch_size=16"]),
    "1b-full-z2-liger": ("experiments/pretrain.yaml", [*GPU_BASE, "performance.liger=true"]),
    "1b-full-z0": ("experiments/pretrain.yaml", [*GPU_BASE, "deepspeed.zero_stage=0"]),
    "1b-full-z2-offload": (
        "experiments/pretrain.yaml",
        [*GPU_BASE, "deepspeed.offload_optimizer=cpu"],
    ),
}


def _parts(memory: Any) -> dict[str, int]:
    """The estimate's rows and total, as the JSON records them."""
    return dataclasses.asdict(memory) | {"total": memory.total}


def run_case(spec_path: str, sets: list[str], storage: str) -> dict[str, Any]:
    """One short run in this process; call it in a fresh process (ru_maxrss is per process)."""
    import resource

    import psutil
    import torch

    from raytune_ft.data.prepare import prepare
    from raytune_ft.modeling.estimate import estimate
    from raytune_ft.spec import load_spec
    from raytune_ft.storage import storage_root
    from raytune_ft.train.loop import WorkerArgs, run_recipe
    from raytune_ft.train.session import LocalSession, one_rank_process_group

    spec = load_spec(ROOT / spec_path, [*STEPS, *sets, f"storage.path={storage}"])
    use_gpu = torch.cuda.is_available()
    data = prepare(spec)
    found = estimate(spec, labels=data.labels)
    session = LocalSession()
    args = WorkerArgs(
        spec=spec.model_dump(mode="json"),
        run_dir=(storage_root(spec.storage) / "run").uri,
        use_gpu=use_gpu,
        prepared_dir=str(data.path),
        evaluate_test=False,
    )
    import deepspeed  # noqa: F401  (imported by the setup: part of the runtime, not training)

    baseline = psutil.Process().memory_info().rss
    with one_rank_process_group(use_gpu):
        run_recipe(args, session)
    reserved = None
    if use_gpu:
        peak, measured = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_allocated()
        # What the caching allocator held at most: what an out-of-memory error compares.
        reserved = torch.cuda.max_memory_reserved()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        measured = peak - baseline
    memory = found.memory
    steps = [r for r in session.reports if "time_train_s" in r]
    return {
        "device": found.device.name,
        "params": found.shape.total_params,
        "trainable": found.shape.trainable_params,
        "estimate": _parts(memory),
        "estimated_step_s": found.step_seconds,
        "measured_step_s": steps[-1]["time_train_s"] / steps[-1]["step"] if steps else None,
        "baseline_rss": baseline,
        "peak": peak,
        "measured": measured,
        "reserved": reserved,
        "ratio": memory.total / measured,
    }


# (spec, --set, measured bytes, where the measurement is) of the H200 records.
H200 = "bench/results/gpu-h200-20261127"
RECORDED_GPU: dict[str, tuple[str, list[str], float, str]] = {
    "quickstart lora r4 mb16": (
        "experiments/quickstart.yaml",
        ["peft.r=4", "train.micro_batch_size=16"],
        1.2319e9,
        f"{H200}/quickstart.log trial 46c65068",
    ),
    "quickstart lora r16 mb16": (
        "experiments/quickstart.yaml",
        ["peft.r=16", "train.micro_batch_size=16"],
        1.24126e9,
        f"{H200}/quickstart.log trials 266242fa, 6642c1cc",
    ),
    "quickstart lora r16 mb32": (
        "experiments/quickstart.yaml",
        ["peft.r=16", "train.micro_batch_size=32"],
        1.36756e9,
        f"{H200}/quickstart.log trial 9a57a42e",
    ),
    "llama-3.2-1b shape full, seq 2048 mb16, zero2 bf16 liger": (
        "experiments/pretrain.yaml",
        ["data.max_length=2048", "train.micro_batch_size=16", "performance.liger=true"],
        55.32065010070801 * 2**30,
        f"{H200}/throughput-1b-zero2-liger.json (the plain DeepSpeed ZeRO-2 + Liger loop)",
    ),
}

# 32,768 tokens a step at raytune-ft's own 64,451 tokens/s (throughput-1b-raytune-ft-summary.json)
MEASURED_STEP_S = {"llama-3.2-1b shape full, seq 2048 mb16, zero2 bf16 liger": 32768 / 64451.1}


# The cases `--gpu` measured on one H200 on 2026-11-29 (the allocated peaks are read back).
GPU_RUN = "bench/results/estimate-gpu-h200-20261129.json"


def recorded_gpu() -> dict[str, Any]:
    """Estimates of the H200 records, on an H200 as the estimate knows it (bf16): the
    2026-11-27 runs' peaks, and the `--gpu` cases' of 2026-11-29, against this code's formula."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_throughput import write_model_folder

    from raytune_ft.modeling.estimate import Device, estimate
    from raytune_ft.spec import load_spec

    h200 = Device("cuda", "NVIDIA H200", 150_000_000_000, "recorded run")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        llama = write_model_folder(Path(work) / "llama-3.2-1b", "llama-3.2-1b")
        for name, (spec_path, sets, measured, source) in RECORDED_GPU.items():
            extra = [f"model.name_or_path={llama}"] if "llama" in name else []
            spec = load_spec(ROOT / spec_path, [*sets, *extra])
            found = estimate(spec, h200, labels=["0", "1"] if "quickstart" in name else None)
            memory = found.memory
            results[name] = {
                "spec": spec_path,
                "sets": sets,
                "measured": measured,
                "reserved": None,
                "source": source,
                "estimate": _parts(memory),
                "ratio": memory.total / measured,
                "estimated_step_s": found.step_seconds,
                "measured_step_s": MEASURED_STEP_S.get(name),
            }
            print(
                f"{name}: estimate {memory.total / 2**30:.2f} GiB, measured "
                f"{measured / 2**30:.2f} GiB, ratio {memory.total / measured:.2f}; step "
                f"{found.step_seconds:.3g} s estimated, measured {MEASURED_STEP_S.get(name)}"
            )
        measured_run = json.loads((ROOT / GPU_RUN).read_text())
        for name, (spec_path, sets) in GPU_CASES.items():
            run = measured_run.get(name, {})
            if "measured" not in run:  # the offload case failed on the lease (fixed since)
                continue
            spec = load_spec(ROOT / spec_path, [*STEPS, *sets, f"model.name_or_path={llama}"])
            memory = estimate(spec, h200).memory
            results[f"{name} (2026-11-29)"] = {
                "spec": spec_path,
                "sets": STEPS + sets,
                "measured": run["measured"],
                "reserved": run["reserved"],
                "source": f"{GPU_RUN} {name}",
                "estimate": _parts(memory),
                "estimate_on_the_lease": run["estimate"],
                "ratio": memory.total / run["measured"],
                "ratio_on_the_lease": run["ratio"],
            }
            print(
                f"{name}: estimate {memory.total / 2**30:.1f} GiB (on the lease "
                f"{run['estimate']['total'] / 2**30:.1f}), measured "
                f"{run['measured'] / 2**30:.1f} GiB, ratio {memory.total / run['measured']:.2f} "
                f"(on the lease {run['ratio']:.2f})"
            )
    return results


def gpu_model_folder(work: Path) -> Path:
    """The GPU cases' model: GPU_SHAPE's config, tokenizer and random bf16 weights (LoRA needs
    weights to load), built in a child process so this one never holds a CUDA context."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_throughput import build_weights, write_model_folder

    folder = write_model_folder(work / GPU_SHAPE, GPU_SHAPE)
    build_weights(folder, cuda=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--case", choices=sorted(CASES | GPU_CASES), action="append")
    parser.add_argument("--malloc-default", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="GPU_CASES, on this machine's GPU")
    parser.add_argument("--model", help=argparse.SUPPRESS)  # the child: the GPU cases' model
    parser.add_argument("--case-timeout", type=int, default=150, help="seconds, per case")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one case
    parser.add_argument("--recorded-gpu", action="store_true")
    options = parser.parse_args()
    if options.recorded_gpu:
        out = ROOT / "bench/results/estimate-h200-records.json"
        out.write_text(json.dumps(recorded_gpu(), indent=2) + "\n")
        return
    if options.one:
        spec_path, sets = (CASES | GPU_CASES)[options.one]
        if options.model:
            sets = [f"model.name_or_path={options.model}", *sets]
        with tempfile.TemporaryDirectory() as storage:
            print(json.dumps(run_case(spec_path, sets, storage)))
        return
    cases = GPU_CASES if options.gpu else CASES
    default_out = "estimate-gpu.json" if options.gpu else "estimate-cpu.json"
    out = options.out or ROOT / "bench" / "results" / default_out
    results: dict[str, Any] = {}
    env = dict(os.environ)
    if not options.malloc_default and not options.gpu:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    with tempfile.TemporaryDirectory() as work:
        model = ["--model", str(gpu_model_folder(Path(work)))] if options.gpu else []
        for name in options.case or [c for c in cases if c != "llama-4x256-full"]:
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", name, *model],
                    capture_output=True,
                    text=True,
                    check=False,
                    env=env,
                    timeout=options.case_timeout,
                )
            except subprocess.TimeoutExpired:
                done = subprocess.CompletedProcess([], 124, "", "timed out")
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                if not options.gpu:
                    raise SystemExit(f"{name}: exit {done.returncode}")
                # On the GPU machine's short lease one case's failure keeps the others.
                results[name] = {"error": f"exit {done.returncode}", "stderr": done.stderr[-3000:]}
                print(f"{name}: failed, exit {done.returncode}")
            else:
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results[name] = {
                    "spec": cases[name][0],
                    "sets": STEPS + cases[name][1],
                    "malloc": env.get("MALLOC_MMAP_THRESHOLD_", "default"),
                } | result
                print(case_line(name, result))
            # After every case: what a lease cut short has measured comes back.
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")


def case_line(name: str, result: dict[str, Any]) -> str:
    mib = 2**20
    if result["reserved"] is not None:  # a GPU: allocated at most, and what was reserved
        measured = (
            f"measured {result['measured'] / mib:.0f} MiB allocated at most "
            f"({result['reserved'] / mib:.0f} MiB reserved)"
        )
    else:
        measured = (
            f"measured {result['measured'] / mib:.0f} MiB (peak RSS {result['peak'] / mib:.0f} - "
            f"baseline {result['baseline_rss'] / mib:.0f})"
        )
    return (
        f"{name}: estimate {result['estimate']['total'] / mib:.0f} MiB, {measured}, ratio "
        f"{result['ratio']:.2f}; step {result['estimated_step_s']:.3g} s estimated, "
        f"{result['measured_step_s'] or float('nan'):.3g} s measured"
    )


if __name__ == "__main__":
    main()
