"""Classification metrics from labels and predictions. Plain functions, no Ray."""

from __future__ import annotations

from collections import Counter

from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(
    labels: list[int],
    predictions: list[int],
    losses: list[float] | None = None,
    prefix: str = "eval",
) -> dict[str, float]:
    metrics = {
        f"{prefix}_accuracy": float(accuracy_score(labels, predictions)),
        f"{prefix}_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        f"{prefix}_majority_accuracy": majority_accuracy(labels),
        f"{prefix}_examples": float(len(labels)),
    }
    if losses:
        metrics[f"{prefix}_loss"] = float(sum(losses) / len(losses))
    return metrics


def majority_accuracy(labels: list[int]) -> float:
    """Accuracy of always predicting the most common label: the bar a model must clear."""
    if not labels:
        return 0.0
    return Counter(labels).most_common(1)[0][1] / len(labels)
