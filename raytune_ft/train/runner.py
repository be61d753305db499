"""`raytune-ft train`: one finetune on Ray Train, from spec to run folder."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raytune_ft.data.prepare import Prepared, prepare, publish_prepared
from raytune_ft.errors import Interrupted, RunFailed, UserError
from raytune_ft.launch import interrupts
from raytune_ft.launch.local_ray import (
    check_reachable,
    on_loopback_only,
    ray_session,
    starts_local_ray,
)
from raytune_ft.launch.resources import plan_placement
from raytune_ft.modeling.loading import absolute_positions, build_model, load_tokenizer
from raytune_ft.run_folder import resumable_run_dir, spec_yaml
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sections import ModelSpec
from raytune_ft.storage import Location, check_storage, new_run
from raytune_ft.tasks.registry import task_for
from raytune_ft.train.export import publish
from raytune_ft.train.failures import FailFastOnDeterministicErrors
from raytune_ft.train.loop import RUNTIME_FILE, TEST_METRICS_FILE, WorkerArgs, train_worker
from raytune_ft.train.policies import choose_use_gpu


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Location
    summary: dict[str, Any]


def preflight(spec: ExperimentSpec) -> Prepared:
    """Fail on bad data, a bad model or a bad PEFT setup here, in seconds, not in a worker.

    The data is prepared here, once (or found in the cache), for every worker to memory-map.
    The model is built once on the meta device (no weights read), with its PEFT wrapper.
    """
    check_reachable(spec.cluster)
    check_storage(spec.storage)
    if starts_local_ray(spec.cluster):  # this machine is the cluster: decide devices now
        import torch

        choose_use_gpu(spec, torch.cuda.is_available(), "this machine has no CUDA GPU")
    data = prepare(spec, load_tokenizer(spec.model))
    publish_prepared(spec, data.path)
    try:
        model = build_model(spec.model, spec.peft, task_for(spec.task), data.labels, empty=True)
    except UserError:
        raise
    except Exception:  # some architectures cannot be built on the meta device: the workers
        return data  # will build it for real, and report what fails there
    positions = absolute_positions(model.config)
    if positions is not None and spec.data.max_length > positions:
        raise UserError(
            f"data.max_length: {spec.data.max_length} tokens, but {spec.model.name_or_path!r} "
            f"has {positions} positions; expected at most {positions}"
        )
    return data


def build_trainer(
    spec: ExperimentSpec,
    use_gpu: bool,
    run_dir: Location,
    name: str,
    prepared_dir: Path,
    callbacks: list[Any] | None = None,
    evaluate_test: bool = True,
    oom_retries: int = 0,
) -> Any:
    """A TorchTrainer for this spec, writing under `run_dir/name`; the newest
    `train.checkpoint.keep` resume checkpoints are kept (the best model is an export)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from raytune_ft.launch.loopback import LoopbackTorchConfig

    return TorchTrainer(
        train_worker,
        # A single machine on 127.0.0.1: the process group listens on loopback only too.
        torch_config=(
            LoopbackTorchConfig(backend="nccl" if use_gpu else "gloo")
            if on_loopback_only()
            else None
        ),
        train_loop_config=asdict(
            WorkerArgs(
                spec=spec.model_dump(mode="json"),
                run_dir=run_dir.uri,
                use_gpu=use_gpu,
                prepared_dir=str(prepared_dir),
                evaluate_test=evaluate_test,
                oom_retries=oom_retries,
            )
        ),
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec.scaling.num_workers,
            use_gpu=use_gpu,
            resources_per_worker=spec.scaling.worker_resources(use_gpu),
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=run_dir.path,
            storage_filesystem=run_dir.fs,
            failure_config=ray.train.FailureConfig(max_failures=spec.scaling.max_failures),
            # Ray deletes a whole checkpoint folder (optimizer shards included) past the limit.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=spec.train.checkpoint.keep),
            callbacks=[FailFastOnDeterministicErrors(), *(callbacks or [])],
            # Ray Train's INFO lines (every report, every checkpoint) drown the progress lines.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )


def evaluate_remote(
    spec: ExperimentSpec, model: Location, use_gpu: bool, prepared_dir: Path, split: str = "test"
) -> dict[str, Any]:
    """Score an exported model on a prepared split, in a Ray task sized like one worker. For
    what the worker group could not test itself: the best model of a run restarted after
    its export, and a sweep's best trial."""
    import ray

    need = spec.scaling.worker_resources(use_gpu)
    custom = {k: v for k, v in need.items() if k not in ("CPU", "GPU")}

    @ray.remote(num_cpus=need["CPU"], num_gpus=need.get("GPU", 0), resources=custom)
    def _evaluate(spec_dict: dict[str, Any], where: Location, which: str, data: str) -> Any:
        import tempfile

        from raytune_ft.data.prepare import fetch_prepared
        from raytune_ft.evaluation.evaluate import evaluate_model_dir

        typed = ExperimentSpec.model_validate(spec_dict)
        fetch_prepared(typed, Path(data))
        if where.is_local:
            return evaluate_model_dir(typed, where.local_path, which, data)
        with tempfile.TemporaryDirectory(prefix="raytune-ft-eval-") as tmp:
            where.download(Path(tmp) / "model")
            return evaluate_model_dir(typed, Path(tmp) / "model", which, data)

    return ray.get(_evaluate.remote(spec.model_dump(mode="json"), model, split, str(prepared_dir)))


def run_events(run_dir: Location) -> dict[str, Any]:
    """Checkpoint and export costs from a run's step log: count, seconds and bytes each."""
    log = run_dir / "steps.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    out: dict[str, Any] = {"throughput": throughput(records)}
    for kind, name in (("checkpoint", "checkpoints"), ("export", "exports")):
        events = [r for r in records if r.get("event") == kind and "bytes" in r]
        out[name] = {
            "count": len(events),
            "seconds": [e["seconds"] for e in events],
            "bytes": [e["bytes"] for e in events],
            "steps": [e["step"] for e in events],
        }
    return out


def throughput(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Tokens per second of training steps alone, after the first tenth of the step records
    (warm-up: allocator, kernels, compilation), from the step log's cumulative tokens and
    training seconds (which leave evaluations, checkpoints and exports out)."""
    steps = [r for r in records if "tokens" in r and "train_s" in r]
    if len(steps) < 2:
        return {}
    first = steps[max(1, len(steps) // 10) - 1] if len(steps) > 2 else steps[0]
    last = steps[-1]
    seconds = last["train_s"] - first["train_s"]
    tokens = last["tokens"] - first["tokens"]
    return {
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "from_step": first["step"],
        "to_step": last["step"],
        "steps_per_s": round((last["step"] - first["step"]) / seconds, 3) if seconds > 0 else None,
    }


TIMING_KEYS = (
    "time_train_s",
    "time_eval_s",
    "time_checkpoint_s",
    "time_export_s",
    "tokens_seen",
    "tokens_per_s",
    "peak_memory_bytes",
)


def finish_run(
    spec: ExperimentSpec,
    run_dir: Location,
    use_gpu: bool,
    prepared_dir: Path,
    last: dict,
    has_test: bool,
) -> dict[str, Any]:
    """After training: publish the exports, take the test metrics (the workers' own, else
    score best-model/ once), and gather what the summary says about the run."""
    exports = publish(run_dir)
    if "best" not in exports:
        raise RuntimeError(f"training exported no best model under {run_dir.uri}")
    best_model, best = exports["best"]
    test_file = run_dir / TEST_METRICS_FILE
    test_metrics: dict[str, Any] = {}
    if test_file.exists():
        test_metrics = json.loads(test_file.read_text())
    if test_metrics.pop("step", None) != best["step"] and has_test:
        test_metrics = evaluate_remote(spec, best_model, use_gpu, prepared_dir)
        if test_metrics:
            test_file.write_json(test_metrics | {"step": best["step"]})
    return {
        "best_validation": best[spec.metric],
        "best_step": best["step"],
        "validation_metrics": {k: v for k, v in best.items() if k.startswith("eval_")},
        "test_metrics": test_metrics,
        "best_model": best_model.uri,
        "final_model": exports["final"][0].uri if "final" in exports else None,
        "timings": {k: last[k] for k in TIMING_KEYS if k in last},
        **run_events(run_dir),
    }


def run_training(
    spec: ExperimentSpec, resume: bool = False, data: Prepared | None = None
) -> TrainOutcome:
    """One finetune. With resume, continue the latest unfinished run of this spec instead."""
    started = time.time()
    data = preflight(spec) if data is None else data
    schedule = spec.schedule(len(data["train"]))
    run_dir = resumable_run_dir(spec, "train") if resume else None
    cpus = spec.scaling.num_workers * spec.scaling.cpus_per_worker
    with ray_session(spec.cluster, cpus):
        placement = plan_placement(spec)
        use_gpu = placement.use_gpu
        if run_dir is None:  # only now: a refused placement leaves no empty run folder behind
            run_dir = new_run(check_storage(spec.storage), spec.name, "train")
            (run_dir / "spec.yaml").write_text(spec_yaml(spec))
        interrupts.note_run_dir(run_dir)
        (run_dir / "data_report.json").write_json(
            data.meta | {"prepared": str(data.path), "schedule": asdict(schedule)}
        )
        trainer = build_trainer(spec, use_gpu, run_dir, "ray-train", data.path)
        try:
            result = interrupts.fit_in_thread(trainer.fit)
            outcome = finish_run(
                spec, run_dir, use_gpu, data.path, result.metrics or {}, len(data["test"]) > 0
            )
        except KeyboardInterrupt:
            raise Interrupted(interrupts.received() or signal.SIGINT, run_dir) from None
        except Exception as exc:  # Ray wraps worker errors; the user needs one line + the folder
            raise RunFailed.from_exception(run_dir, exc) from exc
    summary = {
        "name": spec.name,
        "task": spec.task.type,
        "metric": spec.metric,
        **outcome,
        "use_gpu": use_gpu,
        "num_workers": spec.scaling.num_workers,
        "nodes": placement.nodes,
        "runtime": json.loads((run_dir / RUNTIME_FILE).read_text()),
        "data_sizes": data.sizes(),
        "prepared_data": str(data.path),
        "storage": run_dir.uri,
        "wall_time_s": round(time.time() - started, 1),
    }
    (run_dir / "summary.json").write_json(summary)
    return TrainOutcome(run_dir, summary)


def run_chain(spec: ExperimentSpec) -> list[TrainOutcome]:
    """A spec's stages in order, each a run of its own; stage k+1 starts from stage k's best
    model. Every stage is checked (data prepared, model built empty) before the first runs."""
    assert spec.stages is not None
    stages = [spec.stage_spec(i) for i in range(len(spec.stages))]
    for stage in stages:
        preflight(stage)
    outcomes: list[TrainOutcome] = []
    for index, stage in enumerate(stages):
        if outcomes:
            model = ModelSpec(
                name_or_path=outcomes[-1].summary["best_model"],
                trust_remote_code=spec.model.trust_remote_code,
            )
            stage = spec.stage_spec(index, model=model)
        # A cache hit: stage k's saved tokenizer fingerprints like the one pre-flighted.
        data = prepare(stage, load_tokenizer(stage.model))
        outcome = run_training(stage, data=data)
        summary = outcome.summary | {
            "stage": spec.stages[index].name,
            "started_from": stage.model.name_or_path,
        }
        (outcome.run_dir / "summary.json").write_json(summary)
        outcomes.append(TrainOutcome(outcome.run_dir, summary))
    return outcomes
