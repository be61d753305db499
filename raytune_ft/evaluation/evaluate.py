"""Metrics of a saved model on one split, overall and per group. Runs without Ray."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from raytune_ft.data.prepare import LABEL_ID_KEY, PreparedData, prepare_data
from raytune_ft.data.tokenization import make_collator, tokenize_rows
from raytune_ft.evaluation.metrics import classification_metrics
from raytune_ft.evaluation.predict import predict
from raytune_ft.modeling.loading import load_trained_model
from raytune_ft.spec.experiment import ExperimentSpec


def evaluate_model_dir(
    spec: ExperimentSpec,
    model_dir: str | Path,
    split: str = "test",
    data: PreparedData | None = None,
) -> dict[str, Any]:
    """`{split}_accuracy`, `{split}_f1`, ... plus `slices` per data.group_column value."""
    from transformers import AutoTokenizer

    data = data or prepare_data(spec.data, spec.seed)
    rows = getattr(data, split)
    if not rows:
        return {}
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = load_trained_model(model_dir, spec.model).eval()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    features = tokenize_rows(rows, tokenizer, spec.data.text_column, spec.data.max_length)
    predictions, losses = predict(
        model, features, make_collator(tokenizer), spec.train.micro_batch_size * 2, device
    )
    labels = [r[LABEL_ID_KEY] for r in rows]
    result: dict[str, Any] = classification_metrics(labels, predictions, losses, prefix=split)
    if spec.data.group_column:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            groups[str(row[spec.data.group_column])].append(i)
        result["slices"] = {
            group: classification_metrics(
                [labels[i] for i in idx], [predictions[i] for i in idx], prefix=split
            )
            for group, idx in sorted(groups.items())
        }
    return result
