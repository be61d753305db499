"""spec.task -> the Task that implements it. The only place that maps task types to code."""

from __future__ import annotations

from typing import Any

from raytune_ft.tasks.base import Task
from raytune_ft.tasks.classification import ClassificationTask, MultiLabelTask, RegressionTask
from raytune_ft.tasks.language_modeling import CausalLmTask, MaskedLmTask, SftTask
from raytune_ft.tasks.seq2seq import Seq2SeqTask

TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "multi-label": MultiLabelTask,
    "regression": RegressionTask,
    "causal-lm-sft": SftTask,
    "causal-lm": CausalLmTask,
    "seq2seq": Seq2SeqTask,
    "masked-lm": MaskedLmTask,
}


def task_for(section: Any) -> Task:
    """The task for a spec's `task` section."""
    return TASKS[section.type](section)
