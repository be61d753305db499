"""Every example spec in experiments/ runs (shortened with --set), and the SFT example is the
learnability test: a tiny Llama from random init learns to reverse strings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import ROOT

from raytune_ft.spec import load_spec
from raytune_ft.train.runner import run_chain, run_training

pytestmark = pytest.mark.integration
EXAMPLES = ROOT / "experiments"
SHORT = ["train.max_steps=6", "train.eval_every=3", "scaling.num_workers=1"]


def test_sft_example_learns_to_reverse_strings(ray_local: None, tmp_path: Path) -> None:
    """Learnability: >= 0.9 greedy exact match on held-out prompts (2 workers, ZeRO-2,
    packing), from random init, as the example spec stands."""
    spec = load_spec(EXAMPLES / "sft.yaml", [f"storage.path={tmp_path}"])
    assert (spec.model.init, spec.task.packing, spec.scaling.num_workers) == ("random", True, 2)
    summary = run_training(spec).summary
    assert summary["best_validation"] >= 0.9, summary["validation_metrics"]
    assert summary["test_metrics"]["test_exact_match"] >= 0.9, summary["test_metrics"]
    prompts = set()
    for split in ("validation", "test"):
        prompts |= set(_words(summary["prepared_data"], split))
    assert not prompts & set(_words(summary["prepared_data"], "train"))  # held out


def _words(prepared: str, split: str) -> list[str]:
    from raytune_ft.data.prepare import load_prepared

    data = load_prepared(prepared)[split]
    if split == "train":  # packed rows: read the prompts back out of the token ids
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(EXAMPLES / "models" / "tiny-llama"))
        text = tokenizer.batch_decode(data["input_ids"], skip_special_tokens=True)
        return [w.split("\n")[0] for row in text for w in row.split("reverse: ")[1:]]
    return [r.split("reverse: ")[1].split("\n")[0] for r in _decoded(data)]


def _decoded(data) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(EXAMPLES / "models" / "tiny-llama"))
    return tokenizer.batch_decode(data["prompt_ids"], skip_special_tokens=True)


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name != "sft.yaml"),
)
def test_example_spec_runs(ray_local: None, tmp_path: Path, name: str) -> None:
    spec = load_spec(EXAMPLES / name, [f"storage.path={tmp_path}", *SHORT])
    if spec.stages is not None:
        outcomes = run_chain(spec)
        assert len(outcomes) == len(spec.stages)
    else:
        outcomes = [run_training(spec)]
    for outcome in outcomes:
        summary = outcome.summary
        assert math.isfinite(summary["best_validation"])
        assert summary["test_metrics"], summary
        assert (outcome.run_dir / "best-model" / "config.json").exists()
