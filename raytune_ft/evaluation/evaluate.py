"""Statistics and metrics of a model on prepared rows, for any task. Runs without Ray.

The training recipe calls `collect_stats` / `collect_generations` on its shard of the
validation split and gathers them across ranks; `evaluate_model_dir` scores a saved model on
a whole split (the test evaluation), overall and per data.group_column value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from raytune_ft.data.prepare import GROUP_KEY, load_prepared, model_inputs
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.tasks.base import Stats, Task
from raytune_ft.tasks.registry import task_for


@torch.no_grad()
def collect_stats(
    model: Callable[..., Any],
    task: Task,
    features: Any,
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> Stats:
    """The task's per-example statistics for rows `indices`, in order."""
    stats: Stats = []
    for start in range(0, len(indices), batch_size):
        rows = [features[i] for i in indices[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(rows).items()}
        logits = model(**batch).logits
        stats.extend(task.example_stats(logits, batch))
    return stats


@torch.no_grad()
def collect_generations(
    model: Any,
    task: Task,
    tokenizer: Any,
    data: Any,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
    synced: bool = False,
) -> Stats:
    """(generated, reference) for rows `indices`, by the task's greedy decoding."""
    out: Stats = []
    for start in range(0, len(indices), batch_size):
        rows = [data[i] for i in indices[start : start + batch_size]]
        out.extend(task.generate(model, tokenizer, rows, device, synced))
    return out


def evaluate_model_dir(
    spec: ExperimentSpec, model_dir: str | Path, split: str, prepared_dir: str | Path
) -> dict[str, Any]:
    """`{split}_<metric>` for the task's metrics, plus `slices` per data.group_column value."""
    from transformers import AutoTokenizer

    from raytune_ft.modeling.loading import load_trained_model

    prepared = load_prepared(prepared_dir)
    data = prepared[split]
    if not len(data):
        return {}
    task = task_for(spec.task)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = load_trained_model(model_dir, spec.model, task, prepared.labels).eval()  # saved dtype
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    indices = list(range(len(data)))
    stats = collect_stats(
        model,
        task,
        model_inputs(data, task.feature_columns(split)),
        task.collator(tokenizer, next(model.parameters()).dtype, split),
        indices,
        spec.train.micro_batch_size * 2,
        device,
    )
    generated = None
    if task.generation is not None:
        sample = indices[: task.generation.samples]
        generated = collect_generations(
            model, task, tokenizer, data, sample, spec.train.micro_batch_size, device
        )
    return split_metrics(task, data, stats, split, generated)


def split_metrics(
    task: Task, data: Any, stats: Stats, split: str, generated: Stats | None = None
) -> dict[str, Any]:
    """`{split}_<metric>` from every row's statistics (and generations), plus `slices`: the
    same metrics per data.group_column value when the data has groups."""
    result: dict[str, Any] = task.metrics(stats, split)
    if generated is not None:
        result |= task.generation_metrics(generated, split)
    if GROUP_KEY in data.column_names:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, group in enumerate(data[GROUP_KEY]):
            groups[group].append(i)
        result["slices"] = {
            group: task.metrics([stats[i] for i in idx], split)
            for group, idx in sorted(groups.items())
        }
    return result
