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
from raytune_ft.train.failures import FailFastOnDeterministicErrors
from raytune_ft.train.loop import MODEL_DIR, RUNTIME_FILE, WorkerArgs, train_worker
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
) -> Any:
    """A TorchTrainer for this spec, writing under `run_dir/name`; checkpoints kept by the
    spec's metric."""
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
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=spec.train.keep_checkpoints,
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.metric_mode,
            ),
            callbacks=[FailFastOnDeterministicErrors(), *(callbacks or [])],
            # Ray Train's INFO lines (every report, every checkpoint) drown the progress lines.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )


def evaluate_remote(
    spec: ExperimentSpec, checkpoint: Any, use_gpu: bool, prepared_dir: Path, split: str = "test"
) -> dict[str, Any]:
    """Evaluate a Ray checkpoint's model on a prepared split, in a Ray task sized like one
    worker."""
    import ray

    need = spec.scaling.worker_resources(use_gpu)
    custom = {k: v for k, v in need.items() if k not in ("CPU", "GPU")}

    @ray.remote(num_cpus=need["CPU"], num_gpus=need.get("GPU", 0), resources=custom)
    def _evaluate(spec_dict: dict[str, Any], ckpt: Any, which: str, data: str) -> dict[str, Any]:
        from raytune_ft.data.prepare import fetch_prepared
        from raytune_ft.evaluation.evaluate import evaluate_model_dir

        typed = ExperimentSpec.model_validate(spec_dict)
        fetch_prepared(typed, Path(data))
        with ckpt.as_directory() as local:
            return evaluate_model_dir(typed, Path(local) / MODEL_DIR, which, data)

    return ray.get(
        _evaluate.remote(spec.model_dump(mode="json"), checkpoint, split, str(prepared_dir))
    )


def best_checkpoint(result: Any, spec: ExperimentSpec) -> tuple[Any, dict[str, Any]]:
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if spec.metric in m]
    if not candidates:
        raise RuntimeError("training reported no checkpoint with " + spec.metric)
    pick = max if spec.metric_mode == "max" else min
    return pick(candidates, key=lambda cm: cm[1][spec.metric])


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
            checkpoint, best_metrics = best_checkpoint(result, spec)
            test_metrics = (
                evaluate_remote(spec, checkpoint, use_gpu, data.path) if len(data["test"]) else {}
            )
        except KeyboardInterrupt:
            raise Interrupted(interrupts.received() or signal.SIGINT, run_dir) from None
        except Exception as exc:  # Ray wraps worker errors; the user needs one line + the folder
            raise RunFailed.from_exception(run_dir, exc) from exc
    if resume and (run_dir / "best-model").exists():
        (run_dir / "best-model").remove()  # exported before a crash that came before the summary
    with checkpoint.as_directory() as local:
        (run_dir / "best-model").upload(Path(local) / MODEL_DIR)
    summary = {
        "name": spec.name,
        "task": spec.task.type,
        "metric": spec.metric,
        "best_validation": best_metrics[spec.metric],
        "best_step": best_metrics.get("step"),
        "validation_metrics": {k: v for k, v in best_metrics.items() if k.startswith("eval_")},
        "test_metrics": test_metrics,
        "best_checkpoint": _uri(checkpoint, run_dir),
        "best_model": (run_dir / "best-model").uri,
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


def _uri(checkpoint: Any, run_dir: Location) -> str:
    """A Ray checkpoint's path as a uri in the run's storage (Ray drops the scheme)."""
    return f"{run_dir.scheme}://{checkpoint.path}" if run_dir.scheme else checkpoint.path


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
