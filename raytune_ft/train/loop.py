"""The per-worker training loop that Ray Train runs on every rank.

It knows nothing of Tune: it reports metrics and checkpoints to Ray Train, and the caller decides
what they feed (a run folder, or a Tune trial through TuneReportCallback).
"""

from __future__ import annotations

import contextlib
import hashlib
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

from raytune_ft.data.prepare import fetch_prepared, model_inputs
from raytune_ft.evaluation.evaluate import collect_generations, collect_stats
from raytune_ft.modeling.loading import build_model, load_tokenizer
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.storage import Location, StepLog, location_of
from raytune_ft.tasks.registry import task_for
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
    run_dir: str  # a uri in the spec's storage (local path, s3://, gs://)
    use_gpu: bool
    prepared_dir: str  # the prepared splits, memory-mapped by every worker


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: `config` is `asdict(WorkerArgs(...))`."""
    recipe = FinetuneRecipe(WorkerArgs(**config))
    recipe.setup()
    recipe.train()


class FinetuneRecipe:
    """One worker's finetune: setup, then train, evaluating and checkpointing at the spec's
    cadence. Task-agnostic: the task supplies the model class, collators and metrics."""

    def __init__(self, args: WorkerArgs):
        self.args = args
        self.spec = ExperimentSpec.model_validate(args.spec)
        self.task = task_for(self.spec.task)
        self.run_dir = location_of(args.run_dir, self.spec.storage)

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        import deepspeed
        import ray.train
        from transformers import get_scheduler, set_seed

        spec = self.spec
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        _quiet_report_lines()
        if not self.args.use_gpu:
            torch.set_num_threads(spec.scaling.cpus_per_worker)
        # The same seed on every rank: a new head must start identical everywhere.
        set_seed(spec.seed)

        self.data = fetch_prepared(spec, Path(self.args.prepared_dir))
        self.tokenizer = load_tokenizer(spec.model)
        self.schedule = spec.schedule(len(self.data["train"]))
        on_gpu = self.args.use_gpu and torch.cuda.is_available()
        precision = resolve_precision(
            spec.train.precision, on_gpu, on_gpu and torch.cuda.is_bf16_supported()
        )
        self.dtype = TORCH_DTYPES[precision]
        model = build_model(spec.model, spec.peft, self.task, self.data.labels, dtype=self.dtype)
        init_weights = weights_digest(model) if self.rank == 0 else None
        nodes = _worker_nodes(self.world)
        optimizer = torch.optim.AdamW(
            _param_groups(model, spec.train.weight_decay), lr=spec.train.learning_rate
        )
        self.lr_schedule = get_scheduler(
            spec.train.lr_scheduler,
            optimizer,
            num_warmup_steps=self.schedule.warmup_steps,
            num_training_steps=self.schedule.total_steps,
        )
        self.engine, _, _, _ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=self.lr_schedule,
            config=deepspeed_config(spec, precision),
        )
        if self.rank == 0:
            _record_runtime(self.run_dir, self.engine, precision, nodes, init_weights)

        self.state = LoopState()
        self.resumed = ray.train.get_checkpoint()
        if self.resumed is not None:
            with self.resumed.as_directory() as ckpt_dir:
                _, client_state = self.engine.load_checkpoint(
                    os.path.join(ckpt_dir, DEEPSPEED_DIR), tag=DS_TAG
                )
            self.state = LoopState(**client_state["loop"])

        train = model_inputs(self.data["train"], self.task.feature_columns("train"))
        self.sampler = torch.utils.data.distributed.DistributedSampler(
            train, num_replicas=self.world, rank=self.rank, shuffle=True, seed=spec.seed
        )
        self.loader = torch.utils.data.DataLoader(
            train,
            batch_size=spec.train.micro_batch_size,
            sampler=self.sampler,
            collate_fn=self.task.collator(self.tokenizer, self.dtype, "train"),
        )
        self.steps_log = StepLog(self.run_dir / "steps.jsonl") if self.rank == 0 else None
        if self.steps_log is not None and self.resumed is not None:
            self.steps_log.append({"event": "resumed", "step": self.engine.global_steps})

    # ------------------------------------------------------------------ train

    def train(self) -> None:
        engine, spec, state = self.engine, self.spec, self.state
        self.started = time.monotonic()
        self.window_loss, self.window_batches = 0.0, 0
        if engine.global_steps >= self.schedule.total_steps:
            # Resumed from the final checkpoint (e.g. a sweep driver died after the run ended
            # but before Tune recorded it): report the end state so the caller gets a result.
            self._evaluate_and_checkpoint(final=True)
            return
        accumulation = spec.train.gradient_accumulation_steps
        while engine.global_steps < self.schedule.total_steps:
            self.sampler.set_epoch(state.epoch)
            for batch_index, batch in enumerate(self.loader):
                if batch_index < state.batches_done_in_epoch:
                    continue  # resumed mid-epoch: these batches were trained before the restart
                batch = {k: v.to(engine.device) for k, v in batch.items()}
                loss = engine(**batch).loss
                engine.backward(loss)
                boundary = engine.is_gradient_accumulation_boundary()
                engine.step()
                state.batches_done_in_epoch = batch_index + 1
                self.window_loss += loss.item()
                self.window_batches += 1
                if not boundary:
                    continue
                step = engine.global_steps
                if self.steps_log is not None and step % spec.train.log_every == 0:
                    self.steps_log.append(
                        {
                            "step": step,
                            "loss": loss.item(),
                            "lr": self.lr_schedule.get_last_lr()[0],
                        },
                    )
                last = step >= self.schedule.total_steps
                epoch_end = state.batches_done_in_epoch >= len(self.loader) - (
                    len(self.loader) % accumulation
                )
                if epoch_end:
                    state.epoch += 1
                    state.batches_done_in_epoch = 0
                evaluate_now = last or step % self.schedule.eval_every_steps == 0
                if evaluate_now and (self._evaluate_and_checkpoint(final=last) or last):
                    return
                if epoch_end:
                    break

    def _evaluate_and_checkpoint(self, final: bool) -> bool:
        """Evaluate, checkpoint, report. Returns True when early stopping says stop."""
        spec, state = self.spec, self.state
        metrics = self.evaluate()
        metric = metrics[spec.metric]
        if _improved(metric, state.best_metric, spec):
            state.best_metric = metric
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
        stop = (
            spec.train.early_stopping is not None
            and state.evals_without_improvement >= spec.train.early_stopping.patience
        )
        metrics.update(
            step=self.engine.global_steps,
            epoch=state.epoch + state.batches_done_in_epoch / max(1, len(self.loader)),
            train_loss=self.window_loss / max(1, self.window_batches),
            learning_rate=self.lr_schedule.get_last_lr()[0],
            elapsed_s=time.monotonic() - self.started,
            finished=float(final or stop),
        )
        self.window_loss, self.window_batches = 0.0, 0
        self.checkpoint(metrics)
        if self.steps_log is not None:
            record = {"event": "checkpoint", "step": self.engine.global_steps}
            self.steps_log.append(record | {spec.metric: metric})
            self.steps_log.flush()
            # Not print(): Ray Train V2 patches it in workers and the line would show twice.
            sys.__stdout__.write(_progress_line(metrics, self.schedule.total_steps, spec.metric))
            sys.__stdout__.flush()
        return stop

    # ------------------------------------------------------------------ evaluate

    def evaluate(self) -> dict[str, float]:
        """Validation metrics over all ranks' shards; every rank gets the same numbers."""
        data = self.data["validation"]
        self.engine.eval()
        try:
            stats = self._gathered(
                lambda shard: collect_stats(
                    self.engine,
                    self.task,
                    model_inputs(data, self.task.feature_columns("validation")),
                    self.task.collator(self.tokenizer, self.dtype, "validation"),
                    shard,
                    self.spec.train.micro_batch_size,
                    self.engine.device,
                ),
                len(data),
            )
            metrics = self.task.metrics(stats, "eval")
            generation = self.task.generation
            if generation is not None:
                generated = self._gathered(
                    lambda shard: collect_generations(
                        self.engine.module,
                        self.task,
                        self.tokenizer,
                        data,
                        shard,
                        self.spec.train.micro_batch_size,
                        self.engine.device,
                        synced=self.spec.deepspeed.zero_stage == 3,
                    ),
                    min(generation.samples, len(data)),
                )
                metrics |= self.task.generation_metrics(generated, "eval")
        finally:
            self.engine.train()
        return metrics

    def _gathered(self, collect: Any, n: int) -> list[Any]:
        """Run `collect` on this rank's shard of rows 0..n-1 and gather every rank's results
        in row order. Shards are equal in size (the last padded with repeats): under ZeRO-3
        every forward is a collective, so every rank must run the same number of batches."""
        per_rank = math.ceil(n / self.world)
        padded = list(range(n)) + list(range(per_rank * self.world - n))
        shard = padded[self.rank * per_rank : (self.rank + 1) * per_rank]
        results = collect(shard)
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, list(zip(shard, results, strict=True)))
        by_index = {i: r for part in gathered for i, r in part}
        return [by_index[i] for i in range(n)]

    # ------------------------------------------------------------------ checkpoint

    def checkpoint(self, metrics: dict[str, float]) -> None:
        """DeepSpeed state (resume) and a plain Hugging Face folder (evaluation, export)."""
        import deepspeed
        import ray.train

        engine = self.engine
        local = Path(tempfile.mkdtemp(prefix="raytune-ft-ckpt-"))
        try:
            # Optimizer and scheduler state, sharded per rank: what a restarted group resumes.
            engine.save_checkpoint(
                str(local / DEEPSPEED_DIR), tag=DS_TAG, client_state={"loop": asdict(self.state)}
            )
            params = list(engine.module.parameters())
            gather = self.spec.deepspeed.zero_stage == 3
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=gather):
                if self.rank == 0:
                    engine.module.save_pretrained(str(local / MODEL_DIR))
                    self.tokenizer.save_pretrained(str(local / MODEL_DIR))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(local)))
        finally:
            shutil.rmtree(local, ignore_errors=True)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the input embedding matrix: tells which weights a run started from (a chain
    stage must start from the previous stage's result, and tests check it does)."""
    weight = model.get_input_embeddings().weight.detach().float().cpu().contiguous()
    return hashlib.sha256(weight.numpy().tobytes()).hexdigest()


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


def _worker_nodes(world: int) -> list[str]:
    """The Ray node id of every rank, in rank order (gathered once, at setup)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    if world == 1:
        return [node]
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, node)
    return [str(n) for n in nodes]


def _record_runtime(
    run_dir: Location, engine: Any, precision: str, nodes: list[str], init_weights: str | None
) -> None:
    """What the engine really runs with (not what was asked): checked by tests and users."""
    import deepspeed

    param = next(engine.module.parameters())
    (run_dir / RUNTIME_FILE).write_json(
        {
            "precision": precision,
            "bf16_enabled": bool(engine.bfloat16_enabled()),
            "fp16_enabled": bool(engine.fp16_enabled()),
            "zero_stage": int(engine.zero_optimization_stage()),
            "param_dtype": str(param.dtype).removeprefix("torch."),
            "device": str(engine.device),
            "world_size": len(nodes),
            "worker_nodes": nodes,
            "torch": torch.__version__,
            "deepspeed": deepspeed.__version__,
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "init_weights_sha256": init_weights,
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
    return value > best + delta if spec.metric_mode == "max" else value < best - delta
