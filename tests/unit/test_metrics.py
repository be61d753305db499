"""Metric functions against hand-computed values: perfect cases, small known cases, edge cases."""

from __future__ import annotations

import math

import pytest

from raytune_ft.evaluation.metrics import (
    generation_metrics,
    multilabel_metrics,
    regression_metrics,
    token_metrics,
)


def test_multilabel_perfect_prediction() -> None:
    labels = [[1, 0, 1], [0, 1, 0]]
    metrics = multilabel_metrics(labels, labels, losses=[0.2, 0.4])
    assert metrics == {
        "eval_micro_f1": 1.0,
        "eval_macro_f1": 1.0,
        "eval_subset_accuracy": 1.0,
        "eval_examples": 2.0,
        "eval_loss": pytest.approx(0.3),
    }


def test_multilabel_micro_and_macro_differ_on_imbalanced_labels() -> None:
    # Label 0 is always right (F1 1); the rare label 1 is always missed (F1 0).
    # Micro pools decisions: TP 3, FP 0, FN 1 -> P 1, R 3/4 -> F1 6/7.
    labels = [[1, 0], [1, 0], [1, 1]]
    predictions = [[1, 0], [1, 0], [1, 0]]
    metrics = multilabel_metrics(labels, predictions, prefix="val")
    assert metrics["val_micro_f1"] == pytest.approx(6 / 7)
    assert metrics["val_macro_f1"] == pytest.approx(0.5)
    assert metrics["val_subset_accuracy"] == pytest.approx(2 / 3)
    assert metrics["val_examples"] == 3.0
    assert "val_loss" not in metrics


def test_multilabel_label_never_present_nor_predicted_counts_as_zero_in_macro() -> None:
    metrics = multilabel_metrics([[1, 0]], [[1, 0]])
    assert metrics["eval_micro_f1"] == 1.0
    assert metrics["eval_macro_f1"] == pytest.approx(0.5)


def test_regression_perfect_prediction() -> None:
    targets = [0.5, -1.0, 2.0]
    metrics = regression_metrics(targets, targets)
    assert metrics["eval_mse"] == 0.0
    assert metrics["eval_mae"] == 0.0
    assert metrics["eval_r2"] == 1.0
    assert metrics["eval_spearman"] == pytest.approx(1.0)
    assert metrics["eval_examples"] == 3.0
    assert "eval_loss" not in metrics


def test_regression_monotone_nonlinear_ranks_perfectly_but_fits_badly() -> None:
    targets = [1.0, 2.0, 3.0, 4.0]
    predictions = [1.0, 4.0, 9.0, 16.0]
    metrics = regression_metrics(targets, predictions, losses=[1.0, 3.0])
    # Errors 0, 2, 6, 12; SS_res 184, SS_tot 5.
    assert metrics["eval_mse"] == pytest.approx(46.0)
    assert metrics["eval_mae"] == pytest.approx(5.0)
    assert metrics["eval_r2"] == pytest.approx(1 - 184 / 5)
    assert metrics["eval_spearman"] == pytest.approx(1.0)
    assert metrics["eval_loss"] == pytest.approx(2.0)


def test_regression_spearman_is_zero_when_undefined() -> None:
    constant = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert constant["eval_spearman"] == 0.0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_regression_single_example_has_zero_spearman_and_undefined_r2() -> None:
    metrics = regression_metrics([1.0], [1.5])
    assert metrics["eval_spearman"] == 0.0
    assert math.isnan(metrics["eval_r2"])
    assert metrics["eval_mae"] == pytest.approx(0.5)


def test_regression_reversed_order_is_minus_one() -> None:
    metrics = regression_metrics([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert metrics["eval_spearman"] == pytest.approx(-1.0)


def test_token_perplexity_of_log4_is_4() -> None:
    metrics = token_metrics(loss_sum=3 * math.log(4), tokens=3, correct=2, prefix="test")
    assert metrics == {
        "test_loss": pytest.approx(math.log(4)),
        "test_perplexity": pytest.approx(4.0),
        "test_token_accuracy": pytest.approx(2 / 3),
        "test_tokens": 3.0,
    }


def test_token_perplexity_is_finite_for_a_diverged_loss() -> None:
    metrics = token_metrics(loss_sum=1e6, tokens=2, correct=0)
    assert metrics["eval_loss"] == 5e5
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(50))


def test_token_metrics_without_tokens_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one scored token"):
        token_metrics(loss_sum=0.0, tokens=0, correct=0)


def test_generation_identical_text_is_perfect() -> None:
    texts = ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog"]
    metrics = generation_metrics(texts, list(texts))
    assert metrics["eval_exact_match"] == 1.0
    assert metrics["eval_rougeL"] == pytest.approx(1.0)
    assert metrics["eval_bleu"] == pytest.approx(100.0)
    assert metrics["eval_chrf"] == pytest.approx(100.0)
    assert metrics["eval_generated"] == 2.0


def test_generation_disjoint_text_scores_near_zero() -> None:
    metrics = generation_metrics(["xyz qqq"], ["abc def"])
    assert metrics["eval_exact_match"] == 0.0
    assert metrics["eval_rougeL"] == 0.0
    assert metrics["eval_bleu"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["eval_chrf"] < 1.0


def test_generation_exact_match_strips_whitespace() -> None:
    metrics = generation_metrics([" fedcba \n", "abc"], ["fedcba", "abd"])
    assert metrics["eval_exact_match"] == 0.5


def test_generation_rouge_l_is_lcs_f_measure() -> None:
    # LCS "the cat" = 2 tokens: precision 2/2, recall 2/4 -> F 2/3.
    metrics = generation_metrics(["the cat"], ["the cat sat down"])
    assert metrics["eval_rougeL"] == pytest.approx(2 / 3)


def test_generation_rouge_ignores_punctuation_but_exact_match_does_not() -> None:
    metrics = generation_metrics(["Hello, world!"], ["hello world"])
    assert metrics["eval_rougeL"] == pytest.approx(1.0)
    assert metrics["eval_exact_match"] == 0.0


def test_generation_empty_input_gives_no_metrics() -> None:
    assert generation_metrics([], []) == {}


def test_generation_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        generation_metrics(["a", "b"], ["a"])
