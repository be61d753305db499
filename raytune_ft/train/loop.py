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
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from raytune_ft.data.prepare import fetch_prepared, model_inputs
from raytune_ft.evaluation.evaluate import collect_generations, collect_stats, split_metrics
from raytune_ft.modeling.loading import build_model, load_config, load_tokenizer
from raytune_ft.modeling.speed import enable_checkpointing, installed_extras, liger_model_types
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.storage import Location, StepLog, location_of
from raytune_ft.tasks.registry import task_for
from raytune_ft.train.export import Exporter, State, exported, host_copy, restore
from raytune_ft.train.manifest import write_manifest
from raytune_ft.train.optimizer import (
    agreed_problem,
    build_optimizer,
    complete_groups,
    cpu_adam_problem,
)
from raytune_ft.train.policies import (
    Performance,
    deepspeed_config,
    resolve_performance,
    resolve_precision,
)
from raytune_ft.train.session import WorkerSession

DEEPSPEED_DIR = "deepspeed"
DS_TAG = "state"


@dataclass
class LoopState:
    """What a resumed worker needs beyond model and optimizer: where it was and how it did."""

    epoch: int = 0
    batches_done_in_epoch: int = 0
    best_metric: float | None = None  # the best evaluation so far (the best-model export's)
    best_step: int | None = None
    reference_metric: float | None = None  # the last improvement by min_delta (early stopping)
    evals_without_improvement: int = 0
    evaluations: int = 0


@dataclass
class Clock:
    """Where a worker's time goes; reported with every evaluation (cumulative seconds)."""

    train_s: float = 0.0
    eval_s: float = 0.0
    checkpoint_s: float = 0.0
    export_s: float = 0.0
    tokens: int = 0  # tokens fed to the model by all ranks (padding included)

    def metrics(self) -> dict[str, float]:
        return {
            "time_train_s": round(self.train_s, 3),
            "time_eval_s": round(self.eval_s, 3),
            "time_checkpoint_s": round(self.checkpoint_s, 3),
            "time_export_s": round(self.export_s, 3),
            "tokens_seen": float(self.tokens),
            "tokens_per_s": round(self.tokens / self.train_s, 1) if self.train_s else 0.0,
            "peak_memory_bytes": float(peak_memory_bytes()),
        }


def peak_memory_bytes() -> int:
    """This rank's peak: GPU memory allocated by torch on GPU, else the process's peak RSS."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass(frozen=True)
class WorkerArgs:
    """Everything the driver hands each worker (plain data, so Ray can ship it)."""

    spec: dict[str, Any]
    run_dir: str  # a uri in the spec's storage (local path, s3://, gs://)
    use_gpu: bool
    prepared_dir: str  # the prepared splits, memory-mapped by every worker
    evaluate_test: bool = True  # sweeps test only the best trial, from its export, at the end
    oom_retries: int = 0  # out-of-memory retries before this attempt (halved micro-batches)


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: `config` is `asdict(WorkerArgs(...))`."""
    from raytune_ft.train.session import RayTrainSession

    run_recipe(WorkerArgs(**config), RayTrainSession())


def run_recipe(args: WorkerArgs, session: WorkerSession) -> None:
    recipe = FinetuneRecipe(args, session)
    try:
        recipe.setup()
        recipe.train()
    finally:
        recipe.close()


class FinetuneRecipe:
    """One worker's finetune: setup, then train, evaluating, exporting the best model and
    checkpointing at the spec's cadence. Task-agnostic: the task supplies the model class,
    collators and metrics; the session says where reports and checkpoints go."""

    def __init__(self, args: WorkerArgs, session: WorkerSession):
        self.args = args
        self.session = session
        self.spec = ExperimentSpec.model_validate(args.spec)
        self.task = task_for(self.spec.task)
        self.run_dir = location_of(args.run_dir, self.spec.storage)
        self.rank, self.world = session.rank, session.world
        self.exporter: Exporter | None = None

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        import deepspeed
        from transformers import get_scheduler, set_seed

        spec = self.spec
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        _quiet_report_lines()
        skip_cpu_inference_kernel_build()
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
        model_type = load_config(spec.model, self.task, self.data.labels).model_type
        self.perf = resolve_performance(
            spec.performance, on_gpu, installed_extras(), model_type, liger_model_types()
        )
        model = build_model(
            spec.model,
            spec.peft,
            self.task,
            self.data.labels,
            dtype=self.dtype,
            attention=self.perf.attention,
            liger=self.perf.liger,
        )
        if self.perf.gradient_checkpointing:
            enable_checkpointing(model, self.perf.gradient_checkpointing)
        init_weights = weights_digest(model) if self.rank == 0 else None
        nodes = _worker_nodes(self.world)
        offload = spec.deepspeed.offload_optimizer != "none"
        if offload:  # the host step is never torch's fused kernel: record what runs
            self.perf = replace(self.perf, fused_optimizer=False)
        chosen = build_optimizer(
            _param_groups(model, spec.train.weight_decay),
            spec.train.learning_rate,
            offload=offload,
            fused=self.perf.fused_optimizer,
            cpu_adam_problem=agreed_problem(cpu_adam_problem(), self.world) if offload else None,
        )
        optimizer = chosen.optimizer
        if chosen.fallback_reason and self.rank == 0:
            # Not print(): Ray Train V2 patches it in workers and the line would show twice.
            sys.__stderr__.write(
                f"deepspeed.offload_optimizer: {chosen.fallback_reason}; the host step runs "
                "torch's AdamW (slower)\n"
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
        if self.perf.compile:
            self.engine.compile()
        if self.rank == 0:
            _record_runtime(
                self.run_dir, self.engine, precision, nodes, init_weights, self.perf, chosen.name
            )
        self.trained_only = spec.peft.method != "none"
        self.exporter = Exporter(self.run_dir, self.tokenizer, self.engine.module, self.rank)

        self.state = LoopState()
        self.clock = Clock()
        self.resumed = self.session.restored()
        if self.resumed is not None:
            with self.resumed.as_directory() as ckpt_dir:
                _, client_state = self.engine.load_checkpoint(
                    os.path.join(ckpt_dir, DEEPSPEED_DIR),
                    tag=DS_TAG,
                    load_module_strict=not self.trained_only,  # frozen weights are not saved
                )
            self.state = LoopState(**client_state["loop"])
            self.clock = Clock(**client_state.get("clock", {}))
            self._apply_hyperparameters()
        # An export of an earlier attempt (restarted with or without a checkpoint) stays the
        # best unless beaten: best-model/ never goes back to a worse model. Rank 0 reads it
        # and tells the others, since it decides a collective (the ZeRO-3 gather of exports).
        found = exported(self.run_dir, "best") if self.rank == 0 else None
        record = [None if found is None else found[1]]
        if self.world > 1:
            dist.broadcast_object_list(record, src=0)
        if record[0] is not None and _better(
            record[0][spec.metric], self.state.best_metric, spec.metric_mode, 0.0
        ):
            self.state.best_metric, self.state.best_step = (
                record[0][spec.metric],
                record[0]["step"],
            )

        train = model_inputs(self.data["train"], self.task.feature_columns("train"))
        self.sampler = torch.utils.data.distributed.DistributedSampler(
            train, num_replicas=self.world, rank=self.rank, shuffle=True, seed=spec.seed
        )
        workers = self.perf.dataloader_workers
        self.loader = torch.utils.data.DataLoader(
            train,
            batch_size=spec.train.micro_batch_size,
            sampler=self.sampler,
            collate_fn=self.task.collator(self.tokenizer, self.dtype, "train"),
            num_workers=workers,
            pin_memory=self.perf.pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )
        self.best_state: State | None = None  # rank 0's host copy of the best weights
        self.last_save = time.monotonic()
        self.steps_log = StepLog(self.run_dir / "steps.jsonl") if self.rank == 0 else None
        if self.steps_log is not None and self.resumed is not None:
            self.steps_log.append({"event": "resumed", "step": self.engine.global_steps})

    def _apply_hyperparameters(self) -> None:
        """The spec's learning rate and weight decay over the restored optimizer's.

        A restore loads the optimizer's and the schedule's values of the run that saved the
        checkpoint. For a resumed run they are the same; under PBT/PB2 the checkpoint is a
        better trial's and the spec holds the new, perturbed values, which must win.
        """
        train = self.spec.train
        schedule = self.lr_schedule  # a LambdaLR (every train.lr_scheduler is one)
        schedule.base_lrs = [train.learning_rate] * len(schedule.base_lrs)
        # The schedule's value at its restored step, from the new base.
        lrs = [train.learning_rate * f(schedule.last_epoch) for f in schedule.lr_lambdas]
        complete_groups(schedule.optimizer)
        for group, lr in zip(schedule.optimizer.param_groups, lrs, strict=True):
            group["initial_lr"], group["lr"] = train.learning_rate, lr
            if group.get("decayed", group["weight_decay"] > 0):  # older checkpoints: no mark
                group["weight_decay"] = train.weight_decay
        schedule._last_lr = lrs  # what get_last_lr() reports until the next step

    def close(self) -> None:
        if self.exporter is not None:
            self.exporter.close()

    # ------------------------------------------------------------------ train

    def train(self) -> None:
        engine, spec, state = self.engine, self.spec, self.state
        self.started = time.monotonic()
        device = engine.device
        # Losses add up on the device and are read only when logged or evaluated: reading a
        # loss (`.item()`) waits for the GPU to finish, and once per micro-batch that stalls it.
        self.window_loss = torch.zeros((), device=device)
        self.window_batches = 0
        log_loss, log_batches = torch.zeros((), device=device), 0
        if engine.global_steps >= self.schedule.total_steps:
            # Resumed from the final checkpoint (e.g. a sweep driver died after the run ended
            # but before Tune recorded it): report the end state so the caller gets a result.
            self._at_evaluation(final=True)
            return
        accumulation = spec.train.gradient_accumulation_steps
        copy_async = self.perf.pin_memory
        span = time.monotonic()
        while engine.global_steps < self.schedule.total_steps:
            self.sampler.set_epoch(state.epoch)
            for batch_index, batch in enumerate(self.loader):
                if batch_index < state.batches_done_in_epoch:
                    continue  # resumed mid-epoch: these batches were trained before the restart
                self.clock.tokens += batch["input_ids"].numel() * self.world
                batch = {k: v.to(device, non_blocking=copy_async) for k, v in batch.items()}
                loss = engine(**batch).loss
                engine.backward(loss)
                boundary = engine.is_gradient_accumulation_boundary()
                engine.step()
                state.batches_done_in_epoch = batch_index + 1
                detached = loss.detach().float()
                self.window_loss += detached
                log_loss += detached
                self.window_batches += 1
                log_batches += 1
                if not boundary:
                    continue
                step = engine.global_steps
                if self.steps_log is not None and step % spec.train.log_every == 0:
                    self.steps_log.append(
                        {
                            "step": step,
                            "loss": (log_loss / log_batches).item(),
                            "lr": self.lr_schedule.get_last_lr()[0],
                            "tokens": self.clock.tokens,
                            "train_s": round(self.clock.train_s + time.monotonic() - span, 3),
                        },
                    )
                if step % spec.train.log_every == 0:
                    log_loss, log_batches = torch.zeros((), device=device), 0
                last = step >= self.schedule.total_steps
                epoch_end = state.batches_done_in_epoch >= len(self.loader) - (
                    len(self.loader) % accumulation
                )
                if epoch_end:
                    state.epoch += 1
                    state.batches_done_in_epoch = 0
                if last or step % self.schedule.eval_every_steps == 0:
                    _synchronize(device)
                    self.clock.train_s += time.monotonic() - span
                    stop = self._at_evaluation(final=last)
                    span = time.monotonic()
                    if stop or last:
                        return
                if epoch_end:
                    break

    def _at_evaluation(self, final: bool) -> bool:
        """Evaluate; export the model if it is the best so far; save a resume checkpoint when
        the cadence says so; at the end, evaluate the best model on the test split; report.
        Returns True when early stopping says stop."""
        spec, state, clock = self.spec, self.state, self.clock
        started = time.monotonic()
        metrics = self.evaluate("validation")
        clock.eval_s += time.monotonic() - started
        metric = metrics[spec.metric]
        step = self.engine.global_steps
        state.evaluations += 1
        if _better(metric, state.reference_metric, spec.metric_mode, _min_delta(spec)):
            state.reference_metric = metric
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
        stop = (
            spec.train.early_stopping is not None
            and state.evals_without_improvement >= spec.train.early_stopping.patience
        )
        done = final or stop
        if _better(metric, state.best_metric, spec.metric_mode, 0.0):
            state.best_metric, state.best_step = metric, step
            self._export("best", step, dict(metrics))  # the validation metrics at this step
        if done and spec.train.checkpoint.export_final:
            self._export("final", step, dict(metrics))
        save = self._save_due(done)
        if save or not self.args.evaluate_test:
            # A checkpoint must not name a best model still being written; and a sweep's
            # scheduler may stop the trial at this report, so its export must be whole first.
            self._finish_exports()
        checkpoint_dir = self._save(step) if save else None
        metrics.update(
            step=step,
            epoch=state.epoch + state.batches_done_in_epoch / max(1, len(self.loader)),
            train_loss=(self.window_loss / max(1, self.window_batches)).item(),
            learning_rate=self.lr_schedule.get_last_lr()[0],
            elapsed_s=time.monotonic() - self.started,
            finished=float(done),
            best_step=float(state.best_step or 0),
            # What the trial really ran with (an out-of-memory retry halves the micro-batch).
            micro_batch_size=spec.train.micro_batch_size,
            gradient_accumulation_steps=spec.train.gradient_accumulation_steps,
            oom_retries=self.args.oom_retries,
            **{f"best_{spec.metric}": state.best_metric},
        )
        self.window_loss.zero_()
        self.window_batches = 0
        if done:
            self._finish_exports()
            if self._tests_here() and self.best_state is not None:
                started = time.monotonic()
                test = self.evaluate_best_on_test()
                clock.eval_s += time.monotonic() - started
                if self.rank == 0:
                    (self.run_dir / TEST_METRICS_FILE).write_json(test | {"step": state.best_step})
        metrics.update(clock.metrics())
        if self.steps_log is not None:
            self.steps_log.append({"event": "eval", "step": step, spec.metric: metric})
            self.steps_log.flush()
            # Not print(): Ray Train V2 patches it in workers and the line would show twice.
            sys.__stdout__.write(_progress_line(metrics, self.schedule.total_steps, spec.metric))
            sys.__stdout__.flush()
        self.session.report(metrics, checkpoint_dir)
        return stop

    def _tests_here(self) -> bool:
        return self.args.evaluate_test and len(self.data["test"]) > 0

    # ------------------------------------------------------------------ exports

    def _export(self, kind: str, step: int, info: dict[str, Any]) -> None:
        assert self.exporter is not None
        started = time.monotonic()
        self._finish_exports()  # one at a time: the host copy is the memory of one model
        state = host_copy(self.engine, self.trained_only)
        if kind == "best" and self._tests_here():
            self.best_state = state if self.rank == 0 else {}
        # A shallow copy: save_pretrained empties the dict it is given, and best_state must
        # keep the tensors for the test evaluation.
        self.exporter.submit(kind, None if state is None else dict(state), step, info)
        self.clock.export_s += time.monotonic() - started

    def _finish_exports(self) -> None:
        assert self.exporter is not None
        for record in self.exporter.finished():
            if self.steps_log is not None:
                self.steps_log.append(record)

    # ------------------------------------------------------------------ checkpoints

    def _save_due(self, done: bool) -> bool:
        """Whether this evaluation saves a resume checkpoint. Rank 0's clock decides (ranks'
        clocks differ a little, and every rank must save or none)."""
        policy = self.spec.train.checkpoint
        if done:
            return policy.at_end
        if policy.every_evals is not None and self.state.evaluations % policy.every_evals == 0:
            return True
        if policy.every_minutes is None:
            return False
        due = torch.tensor(
            float(time.monotonic() - self.last_save >= policy.every_minutes * 60),
            device=self.engine.device,
        )
        if self.world > 1:
            dist.broadcast(due, src=0)
        return bool(due.item())

    def _save(self, step: int) -> Path:
        """DeepSpeed's sharded state (trained parameters, optimizer, scheduler) in a local
        folder that the session persists (in the background under Ray Train)."""
        started = time.monotonic()
        local = Path(tempfile.mkdtemp(prefix="raytune-ft-ckpt-"))
        self.engine.save_checkpoint(
            str(local / DEEPSPEED_DIR),
            tag=DS_TAG,
            client_state={"loop": asdict(self.state), "clock": asdict(self.clock)},
            exclude_frozen_parameters=self.trained_only,
        )
        # Last: a resumed sweep tells a whole checkpoint from a half-deleted one by it.
        write_manifest(local, self.rank, self.world)
        size = torch.tensor(
            float(sum(f.stat().st_size for f in local.rglob("*") if f.is_file())),
            device=self.engine.device,
        )
        if self.world > 1:
            dist.all_reduce(size)
        seconds = time.monotonic() - started
        self.clock.checkpoint_s += seconds
        self.last_save = time.monotonic()
        if self.steps_log is not None:
            self.steps_log.append(
                {
                    "event": "checkpoint",
                    "step": step,
                    "seconds": round(seconds, 3),
                    "bytes": int(size.item()),
                }
            )
        return local

    # ------------------------------------------------------------------ evaluate

    def evaluate(self, split: str) -> dict[str, Any]:
        """Metrics of `split` over all ranks' shards; every rank gets the same numbers."""
        data = self.data[split]
        self.engine.eval()
        try:
            stats = self._gathered(
                lambda shard: collect_stats(
                    self.engine,
                    self.task,
                    model_inputs(data, self.task.feature_columns(split)),
                    self.task.collator(self.tokenizer, self.dtype, split),
                    shard,
                    self.spec.train.micro_batch_size,
                    self.engine.device,
                ),
                len(data),
            )
            generated = None
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
        finally:
            self.engine.train()
        prefix = "eval" if split == "validation" else split
        if split == "validation":  # slices are for the test report
            metrics = self.task.metrics(stats, prefix)
            if generated is not None:
                metrics |= self.task.generation_metrics(generated, prefix)
            return metrics
        return split_metrics(self.task, data, stats, prefix, generated)

    def evaluate_best_on_test(self) -> dict[str, Any]:
        """The test split, scored by this worker group with the best weights, in the training
        dtype. The current weights are swapped for the best ones when they differ: training
        is over, so nothing needs them back."""
        if self.state.best_step != self.engine.global_steps:
            restore(self.engine, self.best_state)
        return self.evaluate("test")

    def _gathered(self, collect: Any, n: int) -> list[Any]:
        """Run `collect` on this rank's shard of rows 0..n-1 and gather every rank's results
        in row order. Shards are equal in size (the last padded with repeats): under ZeRO-3
        every forward is a collective, so every rank must run the same number of batches.
        Numeric statistics travel as one tensor (one collective, no pickling)."""
        per_rank = math.ceil(n / self.world)
        padded = list(range(n)) + list(range(per_rank * self.world - n))
        shard = padded[self.rank * per_rank : (self.rank + 1) * per_rank]
        results = collect(shard)
        if self.world == 1:
            return results[:n]
        numeric = _numeric_rows(results)
        if numeric is not None:
            return _gather_numeric(numeric, results, per_rank, n, self.world, self.engine.device)
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, list(zip(shard, results, strict=True)))
        by_index = {i: r for part in gathered for i, r in part}
        return [by_index[i] for i in range(n)]


TEST_METRICS_FILE = "test_metrics.json"


def _numeric_rows(results: list[Any]) -> list[tuple[Any, ...]] | None:
    """`results` when every row is a tuple of plain numbers (the same on every rank, since
    the task decides the shape); None otherwise (e.g. generated text)."""
    if not results or not all(isinstance(r, tuple) for r in results):
        return None
    if all(isinstance(v, int | float) and not isinstance(v, bool) for r in results for v in r):
        return results
    return None


def _gather_numeric(
    rows: list[tuple[Any, ...]],
    results: list[Any],
    per_rank: int,
    n: int,
    world: int,
    device: torch.device,
) -> list[Any]:
    width = len(rows[0])
    local = torch.tensor(rows, dtype=torch.float64, device=device).reshape(per_rank, width)
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local)
    # Rank r's shard holds rows r*per_rank.. in order, so concatenation is row order.
    table = torch.cat(gathered)[:n].cpu().tolist()
    kinds = [type(v) for v in results[0]]
    return [tuple(kind(v) for kind, v in zip(kinds, row, strict=True)) for row in table]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


# DeepSpeed's op name for the CPU accelerator's shared-memory all-reduce kernel.
SHM_ALLREDUCE_OP = "deepspeed_shm_comm"


def skip_cpu_inference_kernel_build() -> None:
    """On the CPU accelerator, DeepSpeed JIT-compiles a shared-memory all-reduce kernel when a
    process group starts: 45-63 CPU-seconds of g++ (26-33 s of wall time on 2 cores here) the first
    time on a machine and after each new venv. Only `inference_all_reduce` (AutoTP inference)
    uses it; training's all-reduce goes through torch.distributed. DeepSpeed asks its table
    of compatible ops before building, so marking the kernel incompatible skips the build."""
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[SHM_ALLREDUCE_OP] = False


def _worker_nodes(world: int) -> list[str]:
    """The Ray node id of every rank, in rank order (gathered once, at setup)."""
    import ray

    if not ray.is_initialized():  # a LocalSession: no Ray at all
        return ["local"]
    node = ray.get_runtime_context().get_node_id()
    if world == 1:
        return [node]
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, node)
    return [str(n) for n in nodes]


def _record_runtime(
    run_dir: Location,
    engine: Any,
    precision: str,
    nodes: list[str],
    init_weights: str | None,
    performance: Performance,
    optimizer: str,
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
            "performance": asdict(performance),
            "optimizer": optimizer,
            "optimizer_on_host": bool(engine.zero_cpu_offload()),
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
    groups = [  # "decayed" travels in checkpoints: a restore knows which group is which
        {"params": decay, "weight_decay": weight_decay, "decayed": True},
        {"params": no_decay, "weight_decay": 0.0, "decayed": False},
    ]
    # No empty group: DeepSpeed drops it from the optimizer, and a scheduler built on both
    # groups then fails at its first step (LoRA on a bias-free model such as Llama).
    return [group for group in groups if group["params"]]


def _better(value: float, reference: float | None, mode: str, delta: float) -> bool:
    if reference is None or math.isnan(reference):
        return not math.isnan(value)
    return value > reference + delta if mode == "max" else value < reference - delta


def _min_delta(spec: ExperimentSpec) -> float:
    return spec.train.early_stopping.min_delta if spec.train.early_stopping else 0.0
