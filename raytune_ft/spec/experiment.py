"""The whole experiment: sections plus the values derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError, model_validator

from raytune_ft.spec.sections import (
    ClusterSpec,
    DataSpec,
    DeepSpeedSpec,
    ModelSpec,
    PeftSpec,
    PerformanceSpec,
    ScalingSpec,
    Section,
    StorageSpec,
    TrainSpec,
)
from raytune_ft.spec.sweep_sections import SweepSpec
from raytune_ft.spec.task_sections import ClassificationTask, TaskSpec

STAGE_MERGED_SECTIONS = ("data", "train", "peft")


@dataclass(frozen=True)
class Schedule:
    """Step counts of one training run, known once the training split's size is."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_every_steps: int

    @property
    def num_evaluations(self) -> int:
        return math.ceil(self.total_steps / self.eval_every_steps)


NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


class StageSpec(Section):
    """One stage of a chain. Its data, train and peft are merged over the top-level ones
    (fields it sets win); its task replaces the top-level task; its model is the previous
    stage's best model (the first stage uses the top-level model)."""

    name: str = Field(pattern=NAME_PATTERN, max_length=20, description="e.g. 'mlm', 'classify'.")
    task: TaskSpec
    data: DataSpec | None = None
    train: TrainSpec | None = None
    peft: PeftSpec | None = None


class ExperimentSpec(Section):
    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=40,
        description="Lowercase letters, digits and dashes (it names runs, jobs and k8s objects).",
    )
    seed: int = Field(42, ge=0, le=2**32 - 1)
    model: ModelSpec
    task: TaskSpec = Field(
        default_factory=ClassificationTask,
        description="What is learned: classification, multi-label, regression, causal-lm-sft, "
        "causal-lm, seq2seq or masked-lm, each with its own fields.",
    )
    peft: PeftSpec = PeftSpec()
    data: DataSpec
    train: TrainSpec = TrainSpec()
    deepspeed: DeepSpeedSpec = DeepSpeedSpec()
    performance: PerformanceSpec = PerformanceSpec()
    scaling: ScalingSpec = ScalingSpec()
    sweep: SweepSpec | None = None
    storage: StorageSpec = StorageSpec()
    cluster: ClusterSpec = ClusterSpec()
    stages: list[StageSpec] | None = Field(
        None,
        min_length=2,
        description="A chain run by one `train` command, e.g. masked-lm then classification; "
        "each stage starts from the previous stage's best model.",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_stage_sections(cls, raw: Any) -> Any:
        # A stage's partial data/train/peft sit over the top-level ones, so it says only what
        # changes; merged here, before validation, so every stage is checked as a whole.
        if not isinstance(raw, dict) or not isinstance(raw.get("stages"), list):
            return raw
        stages = []
        for stage in raw["stages"]:
            if isinstance(stage, dict):
                stage = dict(stage)
                for section in STAGE_MERGED_SECTIONS:
                    if isinstance(stage.get(section), dict) and isinstance(raw.get(section), dict):
                        stage[section] = _deep_merge(raw[section], stage[section])
            stages.append(stage)
        return {**raw, "stages": stages}

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        metrics = self.task.metrics
        if self.train.metric is not None and self.train.metric not in metrics:
            raise ValueError(
                f"train.metric: {self.train.metric!r} is not reported by task {self.task.type!r}; "
                f"expected one of {', '.join(metrics)}"
            )
        columns = set(self.task.input_columns)
        for which in ("train", "validation", "test"):
            source = getattr(self.data, which)
            if source is not None and source.file_column and source.file_column.name in columns:
                # It would silently replace a column the task reads with file names.
                raise ValueError(
                    f"data.{which}.file_column.name: {source.file_column.name!r} is a column "
                    f"the {self.task.type} task reads; expected a new column name"
                )
        if self.peft.method != "none" and self.model.init == "random":
            raise ValueError(
                "peft.method: an adapter over a randomly initialised model trains on frozen "
                "random weights; expected model.init: pretrained, or peft.method: none"
            )
        if (
            self.sweep is not None
            and self.sweep.scheduler.is_population
            and (self.scaling.num_workers > 1 or "scaling.num_workers" in self.sweep.space)
        ):
            # A worker group's reports reach Tune without a Tune checkpoint to exploit.
            raise ValueError(
                f"sweep.scheduler.name: {self.sweep.scheduler.name} needs one-worker trials "
                "(scaling.num_workers: 1, not in the space); use asha or hyperband for "
                "multi-worker trials"
            )
        if self.stages is not None:
            if self.sweep is not None:
                raise ValueError("stages: a chain cannot be swept; sweep one stage's spec")
            if self.storage.is_remote:
                # Each stage's workers load the previous stage's best model from a folder.
                raise ValueError(
                    "stages: a chain needs a local or shared storage.path (each stage starts "
                    f"from the previous stage's best-model folder); got {self.storage.path!r}"
                )
            for index, stage in enumerate(self.stages):
                try:  # each stage must be a valid spec on its own
                    self.stage_spec(index)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    raise ValueError(
                        f"stages.{index} ({stage.name}): {where + ': ' if where else ''}"
                        f"{first['msg'].removeprefix('Value error, ')}"
                    ) from None
        return self

    # ------------------------------------------------------------------ derived values

    @property
    def metric(self) -> str:
        """The validation metric that picks the best checkpoint and scores sweep trials."""
        return self.train.metric or self.task.DEFAULT_METRIC

    @property
    def metric_mode(self) -> str:
        return self.task.metrics[self.metric]

    def stage_spec(self, index: int, model: ModelSpec | None = None) -> ExperimentSpec:
        """Stage `index` as a spec of its own (named NAME-STAGE); `model` replaces the
        top-level model (later stages start from the previous stage's best model)."""
        assert self.stages is not None
        stage = self.stages[index]
        data = self.model_dump(mode="json", exclude={"stages", "sweep"}) | {
            "name": f"{self.name}-{stage.name}"[:40].rstrip("-"),
            "task": stage.task.model_dump(mode="json"),
        }
        for section in STAGE_MERGED_SECTIONS:
            value = getattr(stage, section)
            if value is not None:
                data[section] = value.model_dump(mode="json")
        if model is not None:
            data["model"] = model.model_dump(mode="json")
        return ExperimentSpec.model_validate(data)

    @property
    def global_batch_size(self) -> int:
        """Examples per optimizer step across all workers."""
        return (
            self.train.micro_batch_size
            * self.train.gradient_accumulation_steps
            * self.scaling.num_workers
        )

    @property
    def search_seed(self) -> int:
        assert self.sweep is not None
        return self.seed if self.sweep.search.seed is None else self.sweep.search.seed

    def schedule(self, num_train_examples: int) -> Schedule:
        """Steps, warmup and eval cadence for a training split of this size."""
        per_worker = math.ceil(num_train_examples / self.scaling.num_workers)
        micro_batches = math.ceil(per_worker / self.train.micro_batch_size)
        steps_per_epoch = max(1, micro_batches // self.train.gradient_accumulation_steps)
        total = steps_per_epoch * self.train.epochs
        if self.train.max_steps is not None:
            total = min(total, self.train.max_steps)
        every = self.train.eval_every
        eval_every_steps = steps_per_epoch if every == "epoch" else min(every, total)
        return Schedule(
            steps_per_epoch=steps_per_epoch,
            total_steps=total,
            warmup_steps=math.ceil(total * self.train.warmup_ratio),
            eval_every_steps=eval_every_steps,
        )


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
