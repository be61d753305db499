"""Evaluation metrics from labels and predictions. Plain functions, no Ray, no torch."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)


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


def multilabel_metrics(
    labels: list[list[int]],
    predictions: list[list[int]],
    losses: list[float] | None = None,
    prefix: str = "eval",
) -> dict[str, float]:
    """Micro/macro F1 and subset accuracy over multi-hot 0/1 label vectors.

    Micro F1 pools every (example, label) decision, so frequent labels dominate; macro F1
    averages per label, so a rare label the model never gets right pulls it down.
    """
    y_true = np.asarray(labels, dtype=int)
    y_pred = np.asarray(predictions, dtype=int)
    metrics = {
        f"{prefix}_micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        f"{prefix}_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        # sklearn's accuracy_score on multi-hot input is exactly subset (exact-match) accuracy.
        f"{prefix}_subset_accuracy": float(accuracy_score(y_true, y_pred)),
        f"{prefix}_examples": float(len(labels)),
    }
    _add_mean_loss(metrics, losses, prefix)
    return metrics


def regression_metrics(
    targets: list[float],
    predictions: list[float],
    losses: list[float] | None = None,
    prefix: str = "eval",
) -> dict[str, float]:
    """MSE, MAE, R² and Spearman rank correlation of predictions against targets.

    Spearman is reported as 0.0 when it is undefined (fewer than two points or a constant
    input), so a sweep can still rank trials on it instead of tripping over NaN. R² is
    sklearn's as is: NaN (with a warning) for a single example.
    """
    metrics = {
        f"{prefix}_mse": float(mean_squared_error(targets, predictions)),
        f"{prefix}_mae": float(mean_absolute_error(targets, predictions)),
        f"{prefix}_r2": float(r2_score(targets, predictions)),
        f"{prefix}_spearman": _spearman(targets, predictions),
        f"{prefix}_examples": float(len(targets)),
    }
    _add_mean_loss(metrics, losses, prefix)
    return metrics


def token_metrics(
    loss_sum: float, tokens: int, correct: int, prefix: str = "eval"
) -> dict[str, float]:
    """Per-token loss, perplexity and accuracy from sums accumulated over an eval pass.

    Callers pass sums rather than per-batch means so batches of different length weigh
    by their token count.
    """
    if tokens <= 0:
        raise ValueError(
            f"token_metrics needs at least one scored token, got tokens={tokens}: "
            "every label in the eval set was masked out (or the eval set is empty)"
        )
    loss = loss_sum / tokens
    return {
        f"{prefix}_loss": float(loss),
        # A diverging early trial can report a huge loss; exp() of it would overflow.
        f"{prefix}_perplexity": math.exp(min(loss, 50.0)),
        f"{prefix}_token_accuracy": correct / tokens,
        f"{prefix}_tokens": float(tokens),
    }


def generation_metrics(
    predictions: list[str], references: list[str], prefix: str = "eval"
) -> dict[str, float]:
    """Exact match, ROUGE-L, BLEU and chrF of generated text against one reference each.

    - exact match compares after `.strip()`, so trailing newlines or spaces don't count;
    - ROUGE-L is the mean per-example F-measure in 0..1. rouge-score's default tokenizer
      lowercases and drops every non-alphanumeric character, so punctuation-only
      differences score as identical and a string with no letters or digits scores 0;
    - BLEU and chrF are corpus-level sacrebleu scores on sacrebleu's 0..100 scale.

    Empty input gives {} rather than a row of meaningless zeros.
    """
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return {}
    # Imported here: rouge-score pulls in nltk, which only generation evals need to pay for.
    import sacrebleu
    from rouge_score import rouge_scorer

    pairs = list(zip(predictions, references, strict=True))
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in pairs]
    exact = [pred.strip() == ref.strip() for pred, ref in pairs]
    return {
        f"{prefix}_exact_match": sum(exact) / len(exact),
        f"{prefix}_rougeL": float(sum(rouge) / len(rouge)),
        f"{prefix}_bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score),
        f"{prefix}_chrf": float(sacrebleu.corpus_chrf(predictions, [references]).score),
        f"{prefix}_generated": float(len(predictions)),
    }


def _spearman(targets: list[float], predictions: list[float]) -> float:
    if len(targets) < 2:
        return 0.0
    # Constant input makes scipy warn and return NaN; we map that to 0.0 below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(targets, predictions).statistic
    rho = float(rho)
    return 0.0 if math.isnan(rho) else rho


def _add_mean_loss(metrics: dict[str, float], losses: list[float] | None, prefix: str) -> None:
    if losses:
        metrics[f"{prefix}_loss"] = float(sum(losses) / len(losses))
