"""Run a classifier over examples: predictions and per-example losses. No Ray."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


@torch.no_grad()
def predict(
    forward: Callable[..., Any],
    features: list[dict[str, Any]],
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device,
) -> tuple[list[int], list[float]]:
    """Argmax predictions and cross-entropy losses, one per feature, in order."""
    predictions: list[int] = []
    losses: list[float] = []
    for start in range(0, len(features), batch_size):
        batch = collate(features[start : start + batch_size])
        labels = batch.pop("labels").to(device)
        logits = forward(**{k: v.to(device) for k, v in batch.items()}).logits.float()
        losses.extend(F.cross_entropy(logits, labels, reduction="none").tolist())
        predictions.extend(logits.argmax(dim=-1).tolist())
    return predictions, losses
