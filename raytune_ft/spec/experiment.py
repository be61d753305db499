"""The whole experiment: sections plus the values derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field

from raytune_ft.spec.sections import (
    ClusterSpec,
    DataSpec,
    DeepSpeedSpec,
    ModelSpec,
    PeftSpec,
    ScalingSpec,
    Section,
    StorageSpec,
    SweepSpec,
    TrainSpec,
)


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


class ExperimentSpec(Section):
    name: str = Field(
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        max_length=40,
        description="Lowercase letters, digits and dashes (it names runs, jobs and k8s objects).",
    )
    seed: int = Field(42, ge=0, le=2**32 - 1)
    model: ModelSpec
    peft: PeftSpec = PeftSpec()
    data: DataSpec
    train: TrainSpec = TrainSpec()
    deepspeed: DeepSpeedSpec = DeepSpeedSpec()
    scaling: ScalingSpec = ScalingSpec()
    sweep: SweepSpec | None = None
    storage: StorageSpec = StorageSpec()
    cluster: ClusterSpec = ClusterSpec()

    # ------------------------------------------------------------------ derived values

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
