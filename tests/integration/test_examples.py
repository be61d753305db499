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
    # Generation was scored on held-out prompts: no validation or test word is trained on.
    from transformers import AutoTokenizer

    from raytune_ft.data.prepare import load_prepared

    prepared = load_prepared(summary["prepared_data"])
    tokenizer = AutoTokenizer.from_pretrained(str(EXAMPLES / "models" / "tiny-llama"))
    packed = tokenizer.batch_decode(list(prepared["train"]["input_ids"]), skip_special_tokens=True)
    trained = {piece.split("\n")[0] for row in packed for piece in row.split("reverse: ")[1:]}
    held_out = set(prepared["validation"]["reference"]) | set(prepared["test"]["reference"])
    assert len(trained) > 1500 and len(held_out) >= 250
    assert not {word[::-1] for word in held_out} & trained


@pytest.mark.parametrize(
    "name",
    # sft.yaml: above; quickstart.yaml: test_train.py's MiniLM test runs it.
    sorted(
        p.name for p in EXAMPLES.glob("*.yaml") if p.name not in ("sft.yaml", "quickstart.yaml")
    ),
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
        saved = {p.name for p in (outcome.run_dir.local_path / "best-model").iterdir()}
        assert {"config.json", "adapter_config.json"} & saved  # a model, or a LoRA adapter
