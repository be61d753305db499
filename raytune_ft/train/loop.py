"""The per-worker training loop that Ray Train runs on every rank.

It knows nothing of Tune: it reports metrics and checkpoints to Ray Train, and the caller decides
what they feed (a run folder, or a Tune trial through TuneReportCallback).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from raytune_ft.data.prepare import prepare_data
from raytune_ft.data.tokenization import make_collator, tokenize_rows
from raytune_ft.evaluation.metrics import classification_metrics
from raytune_ft.evaluation.predict import predict
from raytune_ft.modeling.loading import build_model, load_tokenizer
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.train.policies import deepspeed_config, resolve_precision

DEEPSPEED_DIR = "deepspeed"
MODEL_DIR = "model"
DS_TAG = "state"


@dataclass
class LoopState:
    """What a resumed worker needs beyond model and optimizer: where it was and how it did."""

    epoch: int = 0
    batches_done_in_epoch: int = 0
    best_metric: float | None = None
    evals_without_improvement: int = 0


@dataclass(frozen=True)
class WorkerArgs:
    """Everything the driver hands each worker (plain data, so Ray can ship it)."""

    spec: dict[str, Any]
    run_dir: str
    use_gpu: bool


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: `config` is `asdict(WorkerArgs(...))`."""
    import deepspeed
    import ray.train
    from transformers import get_scheduler, set_seed

    args = WorkerArgs(**config)
    spec = ExperimentSpec.model_validate(args.spec)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    _quiet_report_lines()
    if not args.use_gpu:
        torch.set_num_threads(spec.scaling.cpus_per_worker)
    # The same seed on every rank: the new classifier head must start identical everywhere.
    set_seed(spec.seed)

    data = prepare_data(spec.data, spec.seed)
    tokenizer = load_tokenizer(spec.model)
    collate = make_collator(tokenizer)
    train_features = tokenize_rows(
        data.train, tokenizer, spec.data.text_column, spec.data.max_length
    )
    val_features = tokenize_rows(
        data.validation, tokenizer, spec.data.text_column, spec.data.max_length
    )
    schedule = spec.schedule(len(train_features))

    on_gpu = args.use_gpu and torch.cuda.is_available()
    precision = resolve_precision(
        spec.train.precision, on_gpu, on_gpu and torch.cuda.is_bf16_supported()
    )
    model = build_model(spec.model, spec.peft, data.labels, dtype=TORCH_DTYPES[precision])
    optimizer = torch.optim.AdamW(
        _param_groups(model, spec.train.weight_decay), lr=spec.train.learning_rate
    )
    lr_schedule = get_scheduler(
        spec.train.lr_scheduler,
        optimizer,
        num_warmup_steps=schedule.warmup_steps,
        num_training_steps=schedule.total_steps,
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=lr_schedule,
        config=deepspeed_config(spec, precision),
    )

    if rank == 0:
        _record_runtime(Path(args.run_dir), engine, precision, world)

    state = LoopState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            _, client_state = engine.load_checkpoint(
                os.path.join(ckpt_dir, DEEPSPEED_DIR), tag=DS_TAG
            )
        state = LoopState(**client_state["loop"])

    sampler = torch.utils.data.distributed.DistributedSampler(
        train_features, num_replicas=world, rank=rank, shuffle=True, seed=spec.seed
    )
    loader = torch.utils.data.DataLoader(
        train_features, batch_size=spec.train.micro_batch_size, sampler=sampler, collate_fn=collate
    )
    steps_log = Path(args.run_dir) / "steps.jsonl" if rank == 0 else None
    if steps_log is not None and checkpoint is not None:
        _append_jsonl(steps_log, {"event": "resumed", "step": engine.global_steps})
    started = time.monotonic()
    window_loss, window_batches = 0.0, 0

    def evaluate_and_report(final: bool) -> bool:
        """Evaluate, checkpoint, report. Returns True when early stopping says stop."""
        nonlocal window_loss, window_batches
        metrics = _evaluate(engine, val_features, collate, spec.train.micro_batch_size, rank, world)
        metric = metrics[spec.train.metric]
        improved = _improved(metric, state.best_metric, spec)
        if improved:
            state.best_metric = metric
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
        stop = (
            spec.train.early_stopping is not None
            and state.evals_without_improvement >= spec.train.early_stopping.patience
        )
        metrics.update(
            step=engine.global_steps,
            epoch=state.epoch + state.batches_done_in_epoch / max(1, len(loader)),
            train_loss=window_loss / max(1, window_batches),
            learning_rate=lr_schedule.get_last_lr()[0],
            elapsed_s=time.monotonic() - started,
            finished=float(final or stop),
        )
        window_loss, window_batches = 0.0, 0
        _save_and_report(engine, tokenizer, state, metrics, rank, spec)
        if steps_log is not None:
            record = {"event": "checkpoint", "step": engine.global_steps}
            _append_jsonl(steps_log, record | {spec.train.metric: metric})
            # Not print(): Ray Train V2 patches it in workers and the line would show twice.
            sys.__stdout__.write(_progress_line(metrics, schedule.total_steps, spec.train.metric))
            sys.__stdout__.flush()
        return stop

    if engine.global_steps >= schedule.total_steps:
        # Resumed from the final checkpoint (e.g. a sweep driver died after the run ended but
        # before Tune recorded it): report the end state so the caller gets a final result.
        evaluate_and_report(final=True)
        return
    while engine.global_steps < schedule.total_steps:
        sampler.set_epoch(state.epoch)
        for batch_index, batch in enumerate(loader):
            if batch_index < state.batches_done_in_epoch:
                continue  # resumed mid-epoch: these batches were trained before the restart
            batch = {k: v.to(engine.device) for k, v in batch.items()}
            loss = engine(**batch).loss
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            engine.step()
            state.batches_done_in_epoch = batch_index + 1
            window_loss += loss.item()
            window_batches += 1
            if not boundary:
                continue
            step = engine.global_steps
            if steps_log is not None and step % spec.train.log_every == 0:
                _append_jsonl(
                    steps_log,
                    {"step": step, "loss": loss.item(), "lr": lr_schedule.get_last_lr()[0]},
                )
            last = step >= schedule.total_steps
            epoch_end = state.batches_done_in_epoch >= len(loader) - (
                len(loader) % spec.train.gradient_accumulation_steps
            )
            if epoch_end:
                state.epoch += 1
                state.batches_done_in_epoch = 0
            evaluate_now = last or step % schedule.eval_every_steps == 0
            if evaluate_now and (evaluate_and_report(final=last) or last):
                return
            if epoch_end:
                break


RUNTIME_FILE = "runtime.json"
# Weights are created or read in the training dtype (DeepSpeed would cast them anyway).
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _quiet_report_lines() -> None:
    """Ray Train's worker context logs every report (metrics and checkpoint repr) at INFO, on a
    logger named after its file, which LoggingConfig does not reach: one long console line per
    evaluation and rank. The progress line says what matters."""
    with contextlib.suppress(ImportError):
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)


def _record_runtime(run_dir: Path, engine: Any, precision: str, world: int) -> None:
    """What the engine really runs with (not what was asked): checked by tests and users."""
    import deepspeed

    from raytune_ft.run_folder import write_json

    param = next(engine.module.parameters())
    write_json(
        run_dir / RUNTIME_FILE,
        {
            "precision": precision,
            "bf16_enabled": bool(engine.bfloat16_enabled()),
            "fp16_enabled": bool(engine.fp16_enabled()),
            "zero_stage": int(engine.zero_optimization_stage()),
            "param_dtype": str(param.dtype).removeprefix("torch."),
            "device": str(engine.device),
            "world_size": world,
            "torch": torch.__version__,
            "deepspeed": deepspeed.__version__,
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
    )


def _progress_line(metrics: dict[str, float], total_steps: int, metric: str) -> str:
    return (
        f"step {int(metrics['step'])}/{total_steps} epoch {metrics['epoch']:.2f} "
        f"train_loss {metrics['train_loss']:.4f} eval_loss {metrics['eval_loss']:.4f} "
        f"{metric} {metrics[metric]:.4f}\n"
    )


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No decay on biases and norms: decaying them hurts and is what HF Trainer does too.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _improved(value: float, best: float | None, spec: ExperimentSpec) -> bool:
    if best is None or math.isnan(best):
        return True
    delta = spec.train.early_stopping.min_delta if spec.train.early_stopping else 0.0
    return value > best + delta if spec.train.metric_mode == "max" else value < best - delta


def _evaluate(
    engine: Any,
    features: list[dict[str, Any]],
    collate: Any,
    batch_size: int,
    rank: int,
    world: int,
) -> dict[str, float]:
    """Validation metrics over all ranks' shards; every rank gets the same numbers."""
    # Equal-size shards (the last padded with repeats): under ZeRO-3 every forward is a
    # collective, so every rank must run the same number of batches.
    n = len(features)
    per_rank = math.ceil(n / world)
    padded = list(range(n)) + list(range(per_rank * world - n))
    shard = padded[rank * per_rank : (rank + 1) * per_rank]
    engine.eval()
    predictions, losses = predict(
        engine, [features[i] for i in shard], collate, batch_size, engine.device
    )
    engine.train()
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, list(zip(shard, predictions, losses, strict=True)))
    by_index = {i: (p, loss) for part in gathered for i, p, loss in part}
    labels = [features[i]["labels"] for i in range(n)]
    return classification_metrics(
        labels, [by_index[i][0] for i in range(n)], [by_index[i][1] for i in range(n)]
    )


def _save_and_report(
    engine: Any,
    tokenizer: Any,
    state: LoopState,
    metrics: dict[str, float],
    rank: int,
    spec: ExperimentSpec,
) -> None:
    import deepspeed
    import ray.train

    local = Path(tempfile.mkdtemp(prefix="raytune-ft-ckpt-"))
    try:
        # Optimizer and scheduler state, sharded per rank: what a restarted worker group resumes.
        engine.save_checkpoint(
            str(local / DEEPSPEED_DIR), tag=DS_TAG, client_state={"loop": asdict(state)}
        )
        # A plain Hugging Face folder (or LoRA adapter) for evaluation and export.
        params = list(engine.module.parameters())
        gather = spec.deepspeed.zero_stage == 3
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=gather):
            if rank == 0:
                engine.module.save_pretrained(str(local / MODEL_DIR))
                tokenizer.save_pretrained(str(local / MODEL_DIR))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(local)))
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
