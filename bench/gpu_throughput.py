"""`raytune-ft train` against its peers, one after another on the same device, in one invocation.

Contestants (each in its own subprocess, so none inherits another's memory or kernels):

    raytune-ft           `python -m raytune_ft train SPEC`, full finetune (ZeRO-2)
    hf-trainer           transformers Trainer, full finetune (fp32 weights, bf16 autocast on GPU)
    deepspeed-zero2      a plain DeepSpeed ZeRO-2 loop over a torch AdamW (bf16 on GPU)
    zero2-liger          the same loop with Liger kernels (GPU only)
    raytune-ft-lora      `raytune-ft train` with LoRA r16 on every linear layer of the blocks
    peft-lora            peft LoRA r16 under transformers Trainer (bf16 base on GPU)
    peft-lora-liger      the same with Liger kernels (GPU only)

Models are random-init from configs written here (no hub): the Llama-3.2-1B shape for full
finetunes and the Llama-3.1-8B shape for LoRA (`--mode full`, GPU), a 2-layer hidden-64 Llama in
`--mode tiny` (CPU, a few steps, so that this code path never rots; tests run it). The tokenizer
is a character tokenizer; the big shapes keep their 128256-row vocabulary (the project and the
peers build the model from the config, whose vocab_size sets the embedding and the LM head), so
the compute per token is the real one whatever ids the text uses.

Data: random text whose every line is one row of exactly `seq` tokens (BOS + characters + EOS),
so the project's causal-lm chunking and the peers' pre-tokenized rows hold the same token stream
and every optimizer step holds micro_batch x accumulation x seq tokens.

Each run takes W warm-up optimizer steps, then times N more:
tokens/s = tokens per optimizer step x N / seconds of those N steps. The project's figure comes
from its own records (summary.json `throughput.tokens_per_s` when the loop writes it; until then
the steps.jsonl records, timestamped as they appear: see `project_tokens_per_s`).

MFU = FLOPs per token x tokens/s / peak bf16 dense FLOPs (H100/H200: 989 TFLOPs; CPU: n/a).
FLOPs per token, with N the weights that multiply every token (blocks' linear layers and the LM
head; the embedding lookup costs none) and the attention term of PaLM (12 x layers x hidden x seq):
full finetune 6N + attention (this reproduces the 54.3% quoted for 65,346 tokens/s on an H200);
LoRA 4 x N_frozen + 6 x N_adapters + attention (frozen weights: forward and input gradients,
no weight gradients).

    python bench/gpu_throughput.py --mode full --only raytune-ft,zero2-liger --micro-batches 8,16
    python bench/gpu_throughput.py --mode tiny --out /tmp/tiny.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ----------------------------------------------------------------------------- what is compared

# Measured earlier on one H200, seq 2048 (tokens/s; micro-batch where it was quoted).
REFERENCE_H200: dict[str, dict[str, Any]] = {
    "hf-trainer": {"tokens_per_s": 45_000, "micro_batch_size": 8},
    "deepspeed-zero2": {"tokens_per_s": 44_463, "micro_batch_size": 8},
    "zero2-liger": {"tokens_per_s": 65_346, "micro_batch_size": 16, "mfu": 0.543},
    "peft-lora": {"tokens_per_s": 11_061, "micro_batch_size": 8},
    "peft-lora-liger": {"tokens_per_s": 13_786, "micro_batch_size": 8},
}
# project / peer, each at its best micro-batch.
TARGETS: dict[str, tuple[str, float]] = {
    "full": ("zero2-liger", 1.10),  # full finetune, 1B shape, 32k tokens per optimizer step
    "lora": ("peft-lora-liger", 1.10),  # LoRA r16 on all linear layers, 8B shape
}
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}

LORA_R, LORA_ALPHA = 16, 32
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LEARNING_RATE = 1e-5
WEIGHT_DECAY = 0.01
SEED = 42
# The spec section the project is adding; sent in GPU mode unless --no-performance.
PERFORMANCE = {
    "attention": "auto",
    "liger": "auto",
    "fused_optimizer": "auto",
    "gradient_checkpointing": False,
    "compile": False,
}
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True)
class Contestant:
    name: str
    group: str  # "full" or "lora": ratios are taken within a group
    loop: str  # "project", "hf_trainer" or "deepspeed"
    liger: bool = False
    gpu_only: bool = False

    @property
    def lora(self) -> bool:
        return self.group == "lora"

    @property
    def is_project(self) -> bool:
        return self.loop == "project"


CONTESTANTS = (
    Contestant("raytune-ft", "full", "project"),
    Contestant("hf-trainer", "full", "hf_trainer"),
    Contestant("deepspeed-zero2", "full", "deepspeed"),
    Contestant("zero2-liger", "full", "deepspeed", liger=True, gpu_only=True),
    Contestant("raytune-ft-lora", "lora", "project"),
    Contestant("peft-lora", "lora", "hf_trainer"),
    Contestant("peft-lora-liger", "lora", "hf_trainer", liger=True, gpu_only=True),
)


@dataclass(frozen=True)
class Mode:
    name: str
    cuda: bool
    shapes: dict[str, str]  # group -> shape
    seq: int
    sequences_per_step: int  # per optimizer step: micro-batch x accumulation
    micro_batches: tuple[int, ...]
    warmup_steps: int
    timed_steps: int
    timeout_s: int  # per run


MODES = {
    "tiny": Mode(
        "tiny",
        cuda=False,
        shapes={"full": "tiny", "lora": "tiny"},
        seq=128,
        sequences_per_step=8,
        micro_batches=(4,),
        warmup_steps=1,
        timed_steps=4,
        timeout_s=240,
    ),
    "full": Mode(
        "full",
        cuda=True,
        shapes={"full": "llama-3.2-1b", "lora": "llama-3.1-8b"},
        seq=2048,
        sequences_per_step=16,  # 32k tokens per optimizer step
        micro_batches=(4, 8, 16),
        warmup_steps=3,
        timed_steps=10,
        timeout_s=1800,
    ),
}

# LlamaConfig fields per shape (vocab_size None: the tokenizer's).
SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "intermediate_size": 8192,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    "llama-3.1-8b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "vocab_size": None,
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
    },
}


# ----------------------------------------------------------------------------- FLOPs and MFU


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter, a tied embedding once
    matmul: int  # weights that multiply every token: the blocks' linear layers and the LM head
    lora: int  # LoRA A and B over LORA_TARGETS


def param_counts(shape: dict[str, Any], vocab: int) -> ParamCounts:
    d, layers, inter = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    q = shape["num_attention_heads"] * shape["head_dim"]
    kv = shape["num_key_value_heads"] * shape["head_dim"]
    linears = {  # (in, out) per layer
        "q_proj": (d, q),
        "k_proj": (d, kv),
        "v_proj": (d, kv),
        "o_proj": (q, d),
        "gate_proj": (d, inter),
        "up_proj": (d, inter),
        "down_proj": (inter, d),
    }
    block = sum(i * o for i, o in linears.values())
    lora = layers * sum(LORA_R * (i + o) for n, (i, o) in linears.items() if n in LORA_TARGETS)
    embedding = vocab * d
    head = 0 if shape["tie_word_embeddings"] else vocab * d
    norms = (2 * layers + 1) * d
    return ParamCounts(
        total=layers * block + embedding + head + norms,
        matmul=layers * block + vocab * d,
        lora=lora,
    )


def flops_per_token(shape: dict[str, Any], vocab: int, seq: int, lora: bool) -> float:
    counts = param_counts(shape, vocab)
    attention = 12 * shape["num_hidden_layers"] * shape["num_attention_heads"] * shape["head_dim"]
    attention *= seq
    if lora:
        return 4 * counts.matmul + 6 * counts.lora + attention
    return 6 * counts.matmul + attention


def peak_flops(device: str | None, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if not device or device == "cpu":
        return None
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in device.upper()), None)


# ----------------------------------------------------------------------------- model folders, data

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
ALPHABET = string.ascii_letters + string.digits  # no whitespace: one character, one token


def char_tokenizer() -> Any:
    """Specials, then one id per letter or digit; BOS is prepended to every text."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((*SPECIALS, *ALPHABET))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )


def vocab_of(shape: str) -> int:
    return SHAPES[shape]["vocab_size"] or len(SPECIALS) + len(ALPHABET)


def write_model_folder(folder: Path, shape: str) -> Path:
    """config.json (LlamaForCausalLM of `shape`) and the tokenizer; no weights."""
    from transformers import LlamaConfig

    tokenizer = char_tokenizer()
    fields = dict(SHAPES[shape]) | {"vocab_size": vocab_of(shape)}
    config = LlamaConfig(
        **fields,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["LlamaForCausalLM"],
    )
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_random_weights(folder: Path) -> None:
    """Random weights in the folder (the project refuses LoRA over `model.init: random`).
    bf16, built on the GPU when there is one; run in a subprocess on GPU (`_weights`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (folder / "model.safetensors").exists() or (
        folder / "model.safetensors.index.json"
    ).exists():
        return
    torch.manual_seed(SEED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=dtype)
    model.save_pretrained(folder)


def write_corpus(path: Path, lines: int, seq: int) -> None:
    """`lines` random lines of seq - 2 characters: each tokenizes to exactly `seq` tokens."""
    rng = random.Random(SEED)
    with path.open("w", encoding="ascii") as handle:
        for _ in range(lines):
            handle.write("".join(rng.choices(ALPHABET, k=seq - 2)) + "\n")


def token_rows(corpus: Path, model_dir: Path, seq: int) -> Any:
    """The rows the project's causal-lm task makes of the corpus: tokens + EOS, seq each."""
    import numpy as np
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lines = corpus.read_text(encoding="ascii").splitlines()
    rows = [[*ids, tokenizer.eos_token_id] for ids in tokenizer(lines)["input_ids"]]
    if {len(r) for r in rows} != {seq}:
        raise RuntimeError(f"rows are not {seq} tokens each: {sorted({len(r) for r in rows})}")
    return np.asarray(rows, dtype=np.int32)


@dataclass(frozen=True)
class Workspace:
    root: Path
    corpus: Path
    rows: Path  # .npy, [lines, seq]
    held_out_fraction: float  # of the lines, for validation and for test each
    models: dict[str, Path]  # shape -> folder


def prepare_workspace(root: Path, mode: Mode, contestants: list[Contestant]) -> Workspace:
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    most = max(mode.sequences_per_step * (mode.warmup_steps + mode.timed_steps), 1)
    # A few lines each for validation and test (the final evaluation is outside the timed
    # steps). Not test 0: raytune-ft saves an empty test split it cannot load back.
    held_out = 2
    lines = math.ceil(most * 1.1) + mode.sequences_per_step + 2 * held_out
    corpus = root / "corpus.txt"
    write_corpus(corpus, lines, mode.seq)
    models = {}
    for c in contestants:
        shape = mode.shapes[c.group]
        if shape not in models:
            models[shape] = write_model_folder(root / "models" / shape, shape)
        if c.is_project and c.lora:  # peft over random init is refused: weights in the folder
            build_weights(models[shape], mode.cuda)
    any_model = next(iter(models.values()))
    rows = root / "rows.npy"
    np.save(rows, token_rows(corpus, any_model, mode.seq))
    return Workspace(root, corpus, rows, held_out / lines, models)


def build_weights(folder: Path, cuda: bool) -> None:
    if not cuda:
        save_random_weights(folder)
        return
    command = [sys.executable, str(Path(__file__).resolve()), "_weights", str(folder)]
    subprocess.run(command, check=True, env=child_env(cuda))


# ----------------------------------------------------------------------------- one run


@dataclass
class Attempt:
    """One contestant at one micro-batch size."""

    contestant: str
    group: str
    shape: str
    micro_batch_size: int
    accumulation: int
    tokens_per_step: int
    status: str = "ok"  # ok | oom | failed | skipped
    reason: str | None = None
    tokens_per_s: float | None = None
    timed_steps: int | None = None
    seconds: float | None = None
    timing_source: str | None = None
    mfu: float | None = None
    peak_memory_gib: float | None = None
    memory_source: str | None = None
    peak_observed_gib: float | None = None  # polled from outside, the same way for everyone
    observed_source: str | None = None
    device: str | None = None
    wall_s: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSettings:
    mode: Mode
    workspace: Workspace
    performance: bool
    project_sets: tuple[str, ...]
    threads: int
    peak_tflops: float | None
    keep_work: bool


def child_env(cuda: bool) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in OFFLINE_ENV.items():
        env.setdefault(key, value)
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""  # tiny mode is a CPU mode, on any machine
    return env


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def first_error_line(text: str) -> str:
    """The last line that looks like an error, for the report."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"(error|Error|exception|Killed)", ln)]
    return (errors or lines or ["(no output)"])[-1][:300]


def is_oom(text: str) -> bool:
    return "OutOfMemoryError" in text or "CUDA out of memory" in text


class MemoryPoller(threading.Thread):
    """Peak memory seen from outside a run: GPU memory used (nvidia-smi) on a GPU, the largest
    resident set among the run's processes on CPU. Comparable across contestants, not exact."""

    def __init__(self, pid: int, cuda: bool, every_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.cuda, self.every_s = pid, cuda, every_s
        self.peak_bytes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            self.peak_bytes = max(self.peak_bytes, self._sample())

    def stop(self) -> float | None:
        self._stop_event.set()
        self.join()
        return self.peak_bytes / 2**30 if self.peak_bytes else None

    def _sample(self) -> int:
        if self.cuda:
            return _nvidia_smi_used_bytes()
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        sizes = []
        for proc in procs:
            try:
                sizes.append(proc.memory_info().rss)
            except psutil.Error:
                continue
        return max(sizes, default=0)


def observed_source(cuda: bool) -> str:
    return "nvidia-smi memory.used (device)" if cuda else "largest RSS in the process tree"


def _nvidia_smi_used_bytes() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", visible],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return int(float(done.stdout.strip().splitlines()[0]) * 2**20)
    except (ValueError, IndexError):
        return 0


def run_logged(
    command: list[str], log: Path, cwd: Path, cuda: bool, timeout_s: int, watcher: Any = None
) -> tuple[int | None, float | None, float]:
    """Run a command, output to `log`; (exit code or None on time-out, peak GiB, wall s)."""
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=child_env(cuda)
        )
        poller = MemoryPoller(proc.pid, cuda)
        poller.start()
        if watcher is not None:
            watcher.start()
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        finally:
            peak = poller.stop()
            if watcher is not None:
                watcher.stop()
    return code, peak, time.monotonic() - started


def failed(attempt: Attempt, code: int | None, log: Path, timeout_s: int) -> Attempt:
    text = tail(log)
    if code is None:
        attempt.status, attempt.reason = "failed", f"timed out after {timeout_s} s"
    elif is_oom(text):
        attempt.status, attempt.reason = "oom", first_error_line(text)
    else:
        attempt.status = "failed"
        attempt.reason = f"exit {code}: {first_error_line(text)} (log: {log})"
    return attempt


# ----------------------------------------------------------------------------- the project


class StepWatcher(threading.Thread):
    """Timestamps each step record of the run's steps.jsonl as it appears. The loop appends a
    record at once on a local disk (log_every 1), after the step's loss.item(): a stand-in for
    per-step timing until the loop records its own."""

    def __init__(self, storage: Path, every_s: float = 0.01):
        super().__init__(daemon=True)
        self.storage, self.every_s = storage, every_s
        self.arrivals: dict[int, float] = {}
        self._path: Path | None = None
        self._offset = 0
        self._partial = ""
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            self._poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self._poll()

    def _poll(self) -> None:
        now = time.monotonic()
        if self._path is None:
            found = sorted(self.storage.glob("*-train-*/steps.jsonl"))
            if not found:
                return
            self._path = found[0]
        try:
            if self._path.stat().st_size <= self._offset:
                return
            with self._path.open(encoding="utf-8") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except OSError:
            return
        *lines, self._partial = (self._partial + chunk).split("\n")
        for line in lines:
            record = json.loads(line) if line.strip() else {}
            if "step" in record and "event" not in record:
                self.arrivals.setdefault(int(record["step"]), now)


# Per-record time fields of steps.jsonl step records (cumulative seconds, any origin); the
# loop being rewritten writes `train_s` (training time so far) and `tokens` (tokens so far).
STEP_TIME_KEYS = ("train_s", "time_s", "elapsed_s", "time", "timestamp")


@dataclass(frozen=True)
class Timing:
    source: str
    tokens_per_s: float
    seconds: float | None


def project_timings(
    run_dir: Path, arrivals: dict[int, float], tokens_per_step: int, warmup: int, timed: int
) -> list[Timing]:
    """Every reading of the project's tokens/s its records allow, the most exact first:
    1. summary.json throughput.tokens_per_s (the loop's own figure for a benchmark);
    2. steps.jsonl step records with a time field, steps warmup..warmup+timed (tokens from the
       records' `tokens` when they have it, else micro-batch x accumulation x seq);
    3. the same records' arrival times, seen by StepWatcher;
    4. summary.json timings.tokens_per_s (every step, the first slow ones included);
    5. summary.json wall_time_s (the whole command: Ray start, data, evaluation, exports)."""
    summary = read_json(run_dir / "summary.json")
    timings = []
    reported = (summary.get("throughput") or {}).get("tokens_per_s")
    if reported:
        timings.append(Timing("summary.json throughput.tokens_per_s", float(reported), None))
    records = {int(r["step"]): r for r in read_jsonl(run_dir / "steps.jsonl") if _is_step_record(r)}
    first, last = records.get(warmup), records.get(warmup + timed)
    tokens = tokens_per_step * timed
    if first and last and "tokens" in first and "tokens" in last:
        tokens = last["tokens"] - first["tokens"]
    for key in STEP_TIME_KEYS:
        if first and last and key in first and key in last and last[key] > first[key]:
            seconds = last[key] - first[key]
            timings.append(Timing(f"steps.jsonl {key}", tokens / seconds, seconds))
            break
    start, end = arrivals.get(warmup), arrivals.get(warmup + timed)
    if start is not None and end is not None and end > start:
        source = "steps.jsonl records timestamped on arrival by the benchmark"
        timings.append(Timing(source, tokens / (end - start), end - start))
    whole = (summary.get("timings") or {}).get("tokens_per_s")
    if whole:
        source = "summary.json timings.tokens_per_s (all steps, warm-up included)"
        timings.append(Timing(source, float(whole), summary["timings"].get("time_train_s")))
    wall = summary.get("wall_time_s")
    if wall:
        source = "summary.json wall_time_s (whole command: NOT comparable)"
        timings.append(Timing(source, tokens_per_step * (warmup + timed) / wall, wall))
    return timings


def _is_step_record(record: dict[str, Any]) -> bool:
    return "step" in record and "event" not in record


def project_peak_memory(summary: dict[str, Any]) -> float | None:
    throughput = summary.get("throughput") or {}
    for key in ("peak_memory_allocated_bytes", "peak_memory_bytes"):
        if throughput.get(key):
            return throughput[key] / 2**30
    return throughput.get("peak_memory_gib")


def project_spec(
    c: Contestant, settings: RunSettings, storage: Path, micro: int, accum: int
) -> dict[str, Any]:
    mode, ws = settings.mode, settings.workspace
    spec: dict[str, Any] = {
        "name": f"bench-{c.name}",
        "seed": SEED,
        "model": {
            "name_or_path": str(ws.models[mode.shapes[c.group]]),
            "init": "pretrained" if c.lora else "random",
        },
        "task": {"type": "causal-lm"},
        "data": {
            "train": {"path": str(ws.corpus), "format": "text"},
            "split": {"validation": ws.held_out_fraction, "test": ws.held_out_fraction},
            "max_length": mode.seq,
            "cache_dir": str(ws.root / "prepared"),
        },
        "train": {
            "epochs": 1,
            "max_steps": mode.warmup_steps + mode.timed_steps,
            "micro_batch_size": micro,
            "gradient_accumulation_steps": accum,
            "learning_rate": LEARNING_RATE,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
            "weight_decay": WEIGHT_DECAY,
            "log_every": 1,
        },
        "deepspeed": {"zero_stage": 2},
        "scaling": {
            "num_workers": 1,
            "use_gpu": mode.cuda,
            "cpus_per_worker": settings.threads,
            "max_failures": 0,
        },
        "storage": {"path": str(storage)},
    }
    if c.lora:
        spec["peft"] = {
            "method": "lora",
            "r": LORA_R,
            "alpha": LORA_ALPHA,
            "target_modules": LORA_TARGETS,
        }
    if settings.performance:
        spec["performance"] = dict(PERFORMANCE)
    return spec


def run_project(c: Contestant, settings: RunSettings, attempt: Attempt) -> Attempt:
    import yaml

    mode = settings.mode
    folder = settings.workspace.root / "runs" / f"{c.name}-mb{attempt.micro_batch_size}"
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    spec = project_spec(c, settings, storage, attempt.micro_batch_size, attempt.accumulation)
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [sys.executable, "-m", "raytune_ft", "train", str(spec_path)]
    for assignment in settings.project_sets:
        command += ["--set", assignment]
    watcher = StepWatcher(storage)
    log = folder / "raytune-ft.log"
    code, observed, wall = run_logged(command, log, ROOT, mode.cuda, mode.timeout_s, watcher)
    attempt.wall_s, attempt.peak_observed_gib = round(wall, 1), observed
    attempt.observed_source = observed_source(mode.cuda)
    if code != 0:
        failed(attempt, code, log, mode.timeout_s)
        if re.search(r"performance[^\n]*unknown field", tail(log)):
            attempt.reason = f"{attempt.reason}; this raytune-ft has no `performance:` section: "
            attempt.reason += "run with --no-performance"
        return attempt
    run_dir = next(iter(sorted(storage.glob("*-train-*"))))
    read_project_run(run_dir, watcher.arrivals, mode, attempt)
    if not settings.keep_work:  # exports (2.5 GB for the 1B shape): gone before the next run
        attempt.notes["run_dir"] = str(keep_records(run_dir, storage, folder / "records"))
    return attempt


def read_project_run(
    run_dir: Path, arrivals: dict[int, float], mode: Mode, attempt: Attempt
) -> None:
    summary = read_json(run_dir / "summary.json")
    timings = project_timings(
        run_dir, arrivals, attempt.tokens_per_step, mode.warmup_steps, mode.timed_steps
    )
    if not timings:
        attempt.status, attempt.reason = "failed", f"no record to time the run from in {run_dir}"
        return
    attempt.tokens_per_s, attempt.seconds = timings[0].tokens_per_s, timings[0].seconds
    attempt.timing_source, attempt.timed_steps = timings[0].source, mode.timed_steps
    attempt.peak_memory_gib = project_peak_memory(summary)
    attempt.memory_source = "summary.json throughput" if attempt.peak_memory_gib else None
    runtime = summary.get("runtime") or {}
    attempt.device = runtime.get("cuda_device") or "cpu"
    attempt.notes = {
        "run_dir": str(run_dir),
        "runtime": runtime,  # with the performance features the run really used
        "throughput_record": summary.get("throughput"),
        "timings": [asdict(t) for t in timings],  # every reading, to cross-check the first
    }


def keep_records(run_dir: Path, storage: Path, records: Path) -> Path:
    """The run's JSON records (summary, steps, runtime) moved out; the rest deleted."""
    records.mkdir(parents=True, exist_ok=True)
    for path in run_dir.glob("*.json*"):
        if path.is_file():
            shutil.copy2(path, records / path.name)
    shutil.rmtree(storage, ignore_errors=True)
    return records


# ----------------------------------------------------------------------------- the peers


@dataclass(frozen=True)
class PeerJob:
    """What a peer subprocess runs (`gpu_throughput.py _peer JOB.json`)."""

    contestant: str
    loop: str
    liger: bool
    lora: bool
    model_dir: str
    rows_path: str
    micro_batch_size: int
    accumulation: int
    warmup_steps: int
    timed_steps: int
    threads: int
    output_dir: str
    result_path: str


def run_peer(c: Contestant, settings: RunSettings, attempt: Attempt) -> Attempt:
    mode, ws = settings.mode, settings.workspace
    folder = ws.root / "runs" / f"{c.name}-mb{attempt.micro_batch_size}"
    folder.mkdir(parents=True, exist_ok=True)
    job = PeerJob(
        contestant=c.name,
        loop=c.loop,
        liger=c.liger,
        lora=c.lora,
        model_dir=str(ws.models[mode.shapes[c.group]]),
        rows_path=str(ws.rows),
        micro_batch_size=attempt.micro_batch_size,
        accumulation=attempt.accumulation,
        warmup_steps=mode.warmup_steps,
        timed_steps=mode.timed_steps,
        threads=settings.threads,
        output_dir=str(folder / "out"),
        result_path=str(folder / "result.json"),
    )
    job_path = folder / "job.json"
    job_path.write_text(json.dumps(asdict(job), indent=2))
    command = [sys.executable, str(Path(__file__).resolve()), "_peer", str(job_path)]
    log = folder / "peer.log"
    code, observed, wall = run_logged(command, log, ROOT, mode.cuda, mode.timeout_s)
    attempt.wall_s, attempt.peak_observed_gib = round(wall, 1), observed
    attempt.observed_source = observed_source(mode.cuda)
    result = read_json(Path(job.result_path))
    if code != 0 or not result:
        return failed(attempt, code, log, mode.timeout_s)
    if result["status"] != "ok":
        attempt.status, attempt.reason = result["status"], result.get("reason")
        return attempt
    attempt.seconds, attempt.timed_steps = result["seconds"], result["timed_steps"]
    attempt.tokens_per_s = attempt.tokens_per_step * attempt.timed_steps / attempt.seconds
    attempt.timing_source = "synchronized clock around the timed optimizer steps"
    attempt.peak_memory_gib = result["peak_memory_bytes"] / 2**30
    attempt.memory_source = result["memory_source"]
    attempt.device = result["device"]
    attempt.notes = {k: result[k] for k in ("attention", "params", "trainable_params")}
    shutil.rmtree(job.output_dir, ignore_errors=True)
    return attempt


# The code below runs inside a peer subprocess.


class StepClock:
    """Times optimizer steps warmup+1 .. warmup+timed, with the device synchronized."""

    def __init__(self, warmup: int, timed: int, cuda: bool):
        self.first, self.last, self.cuda = warmup, warmup + timed, cuda
        self.started: float | None = None
        self.seconds: float | None = None

    def step_done(self, step: int) -> None:
        if step == self.first and self.started is None:
            self.started = self._now()
        elif step == self.last and self.seconds is None and self.started is not None:
            self.seconds = self._now() - self.started

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()


def peer_main(job_path: str) -> int:
    import torch

    job = PeerJob(**json.loads(Path(job_path).read_text()))
    try:
        result = train_peer(job)
    except torch.OutOfMemoryError as exc:
        result = {"status": "oom", "reason": str(exc).strip().splitlines()[0][:300]}
    Path(job.result_path).write_text(json.dumps(result, indent=2))
    return 0


def train_peer(job: PeerJob) -> dict[str, Any]:
    import numpy as np
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(job.threads)
    torch.manual_seed(SEED)
    if job.liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama()  # patches the Llama classes: before the model is built
    rows = torch.from_numpy(np.load(job.rows_path).astype(np.int64))
    model = peer_model(job, cuda)
    clock = StepClock(job.warmup_steps, job.timed_steps, cuda)
    if job.loop == "deepspeed":
        train_deepspeed(model, rows, job, clock, cuda)
    else:
        train_hf(model, rows, job, clock, cuda)
    if clock.seconds is None:
        raise RuntimeError("the timed steps never ran")
    if cuda:
        peak, source = torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        source = "peak RSS of the process"
    return {
        "status": "ok",
        "seconds": clock.seconds,
        "timed_steps": job.timed_steps,
        "peak_memory_bytes": peak,
        "memory_source": source,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "attention": getattr(model.config, "_attn_implementation", None),
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def peer_model(job: PeerJob, cuda: bool) -> Any:
    """Random init from the folder's config, on the device. DeepSpeed and LoRA bases hold bf16
    weights on GPU; the full-finetune Trainer holds fp32 weights under bf16 autocast (AMP)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    bf16_weights = cuda and (job.loop == "deepspeed" or job.lora)
    dtype = torch.bfloat16 if bf16_weights else torch.float32
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(
            AutoConfig.from_pretrained(job.model_dir), dtype=dtype
        )
    if job.lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=LORA_R,
            lora_alpha=LORA_ALPHA,
            lora_dropout=0.0,
            target_modules=LORA_TARGETS,
        )
        model = get_peft_model(model, config)
    return model


def micro_batches(rows: Any, size: int) -> Iterator[Any]:
    """Rows in order, `size` at a time, round and round."""
    index = 0
    while True:
        picked = [(index + i) % len(rows) for i in range(size)]
        index = (index + size) % len(rows)
        yield rows[picked]


def train_deepspeed(model: Any, rows: Any, job: PeerJob, clock: StepClock, cuda: bool) -> None:
    """The plain ZeRO-2 loop: a torch AdamW handed to deepspeed.initialize, world size 1."""
    import deepspeed
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():  # an in-memory store: no TCP rendezvous for one process
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # and no socket off loopback
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
        for key in ("RANK", "LOCAL_RANK"):  # deepspeed.initialize asserts on LOCAL_RANK
            os.environ.setdefault(key, "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=LEARNING_RATE,
    )
    config: dict[str, Any] = {
        "train_batch_size": job.micro_batch_size * job.accumulation,
        "train_micro_batch_size_per_gpu": job.micro_batch_size,
        "gradient_accumulation_steps": job.accumulation,
        "zero_optimization": {"stage": 2},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 1.0,
        "steps_per_print": 10**9,
    }
    if cuda:
        config["bf16"] = {"enabled": True}
    else:  # like raytune-ft's workers (`skip_cpu_inference_kernel_build`), this peer skips
        # the CPU shared-memory kernel only inference uses: 33 s of g++ on a fresh machine.
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    total = job.warmup_steps + job.timed_steps
    for batch in micro_batches(rows, job.micro_batch_size):
        if engine.global_steps >= total:
            break
        ids = batch.to(engine.device)
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        clock.step_done(engine.global_steps)


def train_hf(model: Any, rows: Any, job: PeerJob, clock: StepClock, cuda: bool) -> None:
    """transformers Trainer, its defaults (fused AdamW) plus bf16 mixed precision on GPU."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": rows[i], "labels": rows[i]}

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.step_done(state.global_step)

    args = TrainingArguments(
        output_dir=job.output_dir,
        per_device_train_batch_size=job.micro_batch_size,
        gradient_accumulation_steps=job.accumulation,
        max_steps=job.warmup_steps + job.timed_steps,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=1.0,
        bf16=cuda,
        use_cpu=not cuda,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=SEED,
    )
    Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[Clock()]).train()


# ----------------------------------------------------------------------------- the benchmark


def skip_reason(c: Contestant, mode: Mode, liger_available: bool) -> str | None:
    if c.gpu_only and not mode.cuda:
        return f"needs CUDA: --mode {mode.name} runs on CPU"
    if c.liger and not liger_available:
        return "liger_kernel is not importable"
    return None


def liger_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def attempts_for(c: Contestant, settings: RunSettings, liger_available: bool) -> list[Attempt]:
    mode = settings.mode
    shape = mode.shapes[c.group]
    reason = skip_reason(c, mode, liger_available)
    attempts = []
    for micro in mode.micro_batches:
        accum = max(1, mode.sequences_per_step // micro)
        attempt = Attempt(c.name, c.group, shape, micro, accum, micro * accum * mode.seq)
        if reason is not None:
            attempt.status, attempt.reason = "skipped", reason
            return [attempt]
        print(f"[{c.name}] micro-batch {micro} x {accum} ...", flush=True)
        attempt = (run_project if c.is_project else run_peer)(c, settings, attempt)
        add_mfu(attempt, settings)
        print(f"[{c.name}] micro-batch {micro}: {describe(attempt)}", flush=True)
        attempts.append(attempt)
        if attempt.status == "oom":  # a bigger micro-batch will not fit either
            break
        if attempt.status == "failed" and "exit 2:" in (attempt.reason or ""):
            break  # the spec was refused: every micro-batch would be
    return attempts


def add_mfu(attempt: Attempt, settings: RunSettings) -> None:
    peak = peak_flops(attempt.device, settings.peak_tflops)
    if attempt.tokens_per_s is None or peak is None:
        return
    shape = SHAPES[attempt.shape]
    per_token = flops_per_token(
        shape, vocab_of(attempt.shape), settings.mode.seq, attempt.group == "lora"
    )
    attempt.mfu = per_token * attempt.tokens_per_s / peak


def describe(attempt: Attempt) -> str:
    if attempt.status != "ok":
        return f"{attempt.status}: {attempt.reason}"
    return f"{attempt.tokens_per_s:,.0f} tokens/s ({attempt.timing_source})"


def best_rows(attempts: list[Attempt]) -> list[dict[str, Any]]:
    """One row per contestant: its fastest micro-batch, ratios project/peer within each group."""
    rows: list[dict[str, Any]] = []
    for c in CONTESTANTS:
        mine = [a for a in attempts if a.contestant == c.name]
        if not mine:
            continue
        ok = [a for a in mine if a.status == "ok" and a.tokens_per_s]
        best = max(ok, key=lambda a: a.tokens_per_s or 0) if ok else mine[-1]
        row = asdict(best) | {
            "is_project": c.is_project,
            "reference_h200": REFERENCE_H200.get(c.name),
        }
        if not ok and best.status == "ok":
            row["status"], row["reason"] = "failed", "no tokens/s could be read"
        rows.append(row)
    for group in ("full", "lora"):
        project = next((r for r in rows if r["group"] == group and r["is_project"]), None)
        measured = project and project["status"] == "ok" and project["tokens_per_s"]
        ratios: dict[str, float] = {}
        for row in rows:
            if row["group"] != group or row["is_project"]:
                continue
            ok = measured and row["status"] == "ok" and row["tokens_per_s"]
            row["ratio"] = project["tokens_per_s"] / row["tokens_per_s"] if ok else None
            if row["ratio"] is not None:
                ratios[row["contestant"]] = row["ratio"]
        if project is not None:
            project["ratios"] = ratios
            project["ratio"] = min(ratios.values()) if ratios else None
    return rows


def target_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for group, (peer, wanted) in TARGETS.items():
        row = next((r for r in rows if r["contestant"] == peer), None)
        ratio = row.get("ratio") if row else None
        checks.append(
            {
                "group": group,
                "peer": peer,
                "wanted_ratio": wanted,
                "ratio": ratio,
                "met": None if ratio is None else ratio >= wanted,
            }
        )
    return checks


def reference_mfu(name: str) -> float | None:
    ref = REFERENCE_H200.get(name)
    if ref is None:
        return None
    group = next(c.group for c in CONTESTANTS if c.name == name)
    shape = MODES["full"].shapes[group]
    per_token = flops_per_token(SHAPES[shape], vocab_of(shape), 2048, group == "lora")
    return per_token * ref["tokens_per_s"] / PEAK_BF16_FLOPS["H200"]


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    console = Console(width=200)
    table = Table(title=f"gpu_throughput --mode {report['mode']} ({report['device']})")
    for column in (
        "contestant",
        "shape",
        "micro x acc",
        "tokens/s",
        "MFU",
        "peak GiB",
        "seen GiB",
        "project/peer",
        "H200 ref tokens/s",
        "ref MFU",
        "status",
    ):
        table.add_column(column, justify="left" if column in ("contestant", "status") else "right")
    for row in report["contestants"]:
        ref = row["reference_h200"] or {}
        ratio = row.get("ratio")
        ratio_text = num(ratio, ".2f") + ("x" if ratio else "")
        if row["is_project"] and row.get("ratios"):
            ratio_text = "min " + ratio_text
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['reason']}"
        table.add_row(
            row["contestant"],
            row["shape"],
            f"{row['micro_batch_size']} x {row['accumulation']}",
            num(row["tokens_per_s"], ",.0f"),
            num(row["mfu"] and row["mfu"] * 100, ".1f") + ("%" if row["mfu"] else ""),
            num(row["peak_memory_gib"], ".2f"),
            num(row["peak_observed_gib"], ".2f"),
            ratio_text,
            num(ref.get("tokens_per_s"), ",.0f")
            + (f" (mb {ref['micro_batch_size']})" if ref else ""),
            num(reference_mfu(row["contestant"]), ".1%"),
            status[:70],
        )
    console.print(table)
    for check in report["targets"]:
        ratio = check["ratio"]
        verdict = {True: "met", False: "NOT met", None: "not measured"}[check["met"]]
        ref = REFERENCE_H200[check["peer"]]["tokens_per_s"]
        console.print(
            f"target {check['group']}: project/{check['peer']} >= {check['wanted_ratio']:.2f}: "
            f"{num(ratio, '.3f')} ({verdict}); on the H200 that means >= "
            f"{ref * check['wanted_ratio']:,.0f} tokens/s"
        )
    for row in report["contestants"]:
        if row["is_project"] and row["status"] == "ok":
            console.print(f"{row['contestant']} timing: {row['timing_source']}")
    for attempt in report.get("attempts", []):
        if attempt["status"] != "skipped":
            console.print(
                f"  sweep {attempt['contestant']} micro-batch {attempt['micro_batch_size']} x "
                f"{attempt['accumulation']}: {describe(Attempt(**attempt))}"
            )


def run_benchmark(args: argparse.Namespace) -> int:
    mode = MODES[args.mode]
    if args.micro_batches:
        mode = replace(mode, micro_batches=tuple(int(m) for m in args.micro_batches.split(",")))
    if args.steps:
        mode = replace(mode, timed_steps=args.steps)
    if args.warmup is not None:
        mode = replace(mode, warmup_steps=args.warmup)
    if mode.cuda:
        import torch

        if not torch.cuda.is_available():
            print(f"--mode {mode.name} needs a CUDA GPU; --mode tiny runs on CPU", file=sys.stderr)
            return 2
    contestants = select(args.only)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu-throughput-")).resolve()
    settings = RunSettings(
        mode=mode,
        workspace=prepare_workspace(work, mode, contestants),
        performance=mode.cuda and not args.no_performance,
        project_sets=tuple(args.project_set or ()),
        # One thread on CPU: a tiny model gains nothing from two, and two spin-waiting
        # OpenMP threads on a busy 2-core machine make steps 10-30x slower.
        threads=args.threads or 1,
        peak_tflops=args.peak_tflops,
        keep_work=args.keep_work,
    )
    started = time.monotonic()
    liger_available = liger_importable()
    attempts = [a for c in contestants for a in attempts_for(c, settings, liger_available)]
    rows = best_rows(attempts)
    devices = {a.device for a in attempts if a.device}
    report = {
        "mode": mode.name,
        "device": ", ".join(sorted(devices)) or "n/a",
        "settings": asdict(mode) | {"performance_section": settings.performance},
        "flops_per_token": "full: 6N + 12*layers*hidden*seq; LoRA: 4N_frozen + 6N_adapters + "
        "12*layers*hidden*seq; N = blocks' linear weights + LM head",
        "reference_h200": REFERENCE_H200,
        "contestants": rows,
        "attempts": [asdict(a) for a in attempts],
        "targets": target_checks(rows),
        "wall_s": round(time.monotonic() - started, 1),
    }
    out = Path(args.out) if args.out else HERE / "results" / f"gpu_throughput-{mode.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    print(f"written: {out}")
    if not args.keep_work and not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(a.status == "failed" for a in attempts) else 0


def select(only: str | None) -> list[Contestant]:
    if not only:
        return list(CONTESTANTS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {c.name for c in CONTESTANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}; expected some of {sorted(known)}")
    return [c for c in CONTESTANTS if c.name in names]


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="tiny")
    parser.add_argument(
        "--only", help="Contestants, comma-separated: " + ", ".join(c.name for c in CONTESTANTS)
    )
    parser.add_argument(
        "--out", help="JSON report (default bench/results/gpu_throughput-MODE.json)."
    )
    parser.add_argument("--micro-batches", help="e.g. 8,16 (default: the mode's sweep).")
    parser.add_argument("--steps", type=int, help="Timed optimizer steps per run.")
    parser.add_argument("--warmup", type=int, help="Warm-up optimizer steps per run.")
    parser.add_argument(
        "--no-performance",
        action="store_true",
        help="Leave the `performance:` section out of the project's spec (GPU mode).",
    )
    parser.add_argument(
        "--project-set",
        action="append",
        help="Passed to `raytune-ft train --set` (repeatable), e.g. performance.liger=true.",
    )
    parser.add_argument("--threads", type=int, help="CPU threads per run on CPU (default 1).")
    parser.add_argument("--peak-tflops", type=float, help="Peak bf16 dense TFLOPs for MFU.")
    parser.add_argument("--work-dir", help="Models, data and run folders (default: a temp dir).")
    parser.add_argument(
        "--keep-work", action="store_true", help="Keep run folders and checkpoints."
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_peer"]:
        return peer_main(argv[1])
    if argv[:1] == ["_weights"]:
        save_random_weights(Path(argv[1]))
        return 0
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
