"""Shared test constants and builders (imported by tests; conftest.py holds only fixtures)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "experiments" / "data" / "sentiment"
# Each task's metrics beyond eval_loss, which its runs must report on validation and test.
TASK_METRICS = {
    "classification": ["eval_accuracy", "eval_f1"],
    "multi-label": ["eval_micro_f1", "eval_macro_f1", "eval_subset_accuracy"],
    "regression": ["eval_mse", "eval_mae", "eval_r2", "eval_spearman"],
    "causal-lm-sft": ["eval_perplexity", "eval_token_accuracy", "eval_exact_match", "eval_chrf"],
    "causal-lm": ["eval_perplexity", "eval_token_accuracy"],
    "seq2seq": ["eval_rougeL", "eval_bleu", "eval_chrf", "eval_exact_match"],
    "masked-lm": ["eval_perplexity", "eval_token_accuracy"],
}


def minimal_spec(**sections: object) -> dict:
    """The smallest valid spec mapping, with sections replaced or added."""
    spec: dict = {
        "name": "t",
        "model": {"name_or_path": "all-MiniLM-L6-v2"},
        "data": {
            "train": {"path": str(SENTIMENT / "*_labelled.txt"), "columns": ["text", "label"]}
        },
    }
    spec.update(sections)
    return spec


def keyword_spec(tiny_bert: Path, data: Path, storage: Path, **train: object) -> dict:
    """A 2-worker ZeRO-2 run of a tiny BERT on the keyword data (integration tests)."""
    return {
        "name": "kw",
        "model": {"name_or_path": str(tiny_bert)},
        "data": {"train": {"path": str(data)}, "max_length": 16},
        "train": {
            "epochs": 4,
            "micro_batch_size": 16,
            "learning_rate": 3e-3,
            "eval_every": 10,
            "log_every": 1,
            # A resume checkpoint at every evaluation: the tests kill and resume runs.
            "checkpoint": {"every_evals": 1},
            **train,
        },
        "deepspeed": {"zero_stage": 2},
        "scaling": {"num_workers": 2, "max_failures": 1},
        "storage": {"path": str(storage)},
    }


def prepared_rows(data: dict, task: dict | None = None, seed: int = 0):
    """Checked, cleaned and split rows (no tokenizer) for a data section and task."""
    from raytune_ft.data.prepare import prepare_rows
    from raytune_ft.spec import validate_spec

    extra = {"task": task} if task is not None else {}
    return prepare_rows(validate_spec(minimal_spec(data=data, seed=seed, **extra)))
