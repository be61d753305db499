"""Every example spec in experiments/ runs, shortened, and the SFT example is the learnability
test: a tiny Llama from random init learns to reverse strings. The chain example is also the
test that each stage starts from the previous stage's trained weights.

An example of a tiny random-init model runs on 2 Ray Train workers under ZeRO-2 for 20 steps,
and is its task's test there (loss falls; every metric computed on the validation and the
test split). An example that finetunes the real MiniLM runs 6 steps on one worker (a
two-worker MiniLM step took 3.5 to 6 s on this machine's two cores); its tasks' two-worker
tests are in test_tasks.py."""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, TASK_METRICS

from raytune_ft.spec import load_spec, validate_spec
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.train.runner import TrainOutcome, run_chain, run_training

pytestmark = pytest.mark.integration
EXAMPLES = ROOT / "experiments"
TINY_STEPS, PRETRAINED_STEPS = 20, 6  # two evaluations each: halfway and at the end


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


def shortened(name: str, storage: Path) -> tuple[dict, int]:
    """(the example's mapping with every run, each stage of a chain too, cut short and logging
    every step; its steps): a random-init example on 2 workers, a pretrained one on 1."""
    raw = yaml.safe_load((EXAMPLES / name).read_text())
    tiny = raw["model"].get("init") == "random"
    steps = TINY_STEPS if tiny else PRETRAINED_STEPS
    raw["storage"] = {"path": str(storage)}
    raw["scaling"] = {**raw.get("scaling", {}), "num_workers": 2 if tiny else 1}
    for section in [raw, *raw.get("stages", [])]:
        # MiniLM's masked-LM evaluations: the chain took 131 s with 10% splits, 104 s with 5%.
        if "data" in section and not tiny:
            section["data"]["split"] = {"validation": 0.05, "test": 0.05}
        if "train" in section:
            short = {"max_steps": steps, "eval_every": steps // 2, "log_every": 1}
            if not tiny:  # a MiniLM masked-LM step of 32 rows took 4-5 s on one core
                short["micro_batch_size"] = 8
            section["train"] = {**section["train"], **short}
            section["train"].pop("epochs", None)
    return raw, steps


@pytest.mark.parametrize(
    "name",
    # sft.yaml: above; quickstart.yaml: test_train.py's MiniLM test runs it.
    sorted(
        p.name for p in EXAMPLES.glob("*.yaml") if p.name not in ("sft.yaml", "quickstart.yaml")
    ),
)
def test_example_spec_runs_shortened(ray_local: None, tmp_path: Path, name: str) -> None:
    raw, steps = shortened(name, tmp_path)
    spec = validate_spec(raw, base_dir=EXAMPLES)
    assert spec.deepspeed.zero_stage == 2
    if spec.stages is not None:
        outcomes = run_chain(spec)
        assert len(outcomes) == len(spec.stages)
        check_each_stage_starts_from_the_last(spec, outcomes)
    else:
        outcomes = [run_training(spec)]
    for outcome in outcomes:
        check_the_task_trained(outcome, steps, spec.scaling.num_workers)


def check_each_stage_starts_from_the_last(spec: ExperimentSpec, outcomes: list) -> None:
    """Checked, not assumed: stage k+1 started from stage k's trained weights (which differ
    from the ones stage k started from), in a run folder of its own, named by its stage."""
    import torch
    from transformers import AutoModel

    from raytune_ft.modeling.sources import resolve_model_source
    from raytune_ft.train.loop import weights_digest

    @functools.cache
    def digest(path: str) -> str:  # each model folder loaded once
        with torch.no_grad():
            return weights_digest(AutoModel.from_pretrained(path))

    assert spec.stages is not None
    started = resolve_model_source(spec.model.name_or_path)
    for stage, outcome in zip(spec.stages, outcomes, strict=True):
        summary = outcome.summary
        assert summary["stage"] == stage.name and summary["task"] == stage.task.type
        assert outcome.run_dir.name.startswith(f"{spec.name}-{stage.name}-train-")
        assert json.loads((outcome.run_dir / "summary.json").read_text())["stage"] == stage.name
        assert summary["runtime"]["init_weights_sha256"] == digest(started)
        trained = summary["best_model"]
        assert digest(trained) != digest(started)
        started = trained
    for before, after in itertools.pairwise(outcomes):
        assert after.summary["started_from"] == before.summary["best_model"]


def check_the_task_trained(outcome: TrainOutcome, steps: int, workers: int) -> None:
    summary, run_dir = outcome.summary, outcome.run_dir.local_path
    records = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in records if "loss" in s]
    assert len(losses) == steps, summary["name"]
    if workers == 2:  # the task's test: 20 steps from random init
        assert sum(losses[-5:]) / 5 < 0.95 * sum(losses[:5]) / 5, (summary["name"], losses)
    assert [s["step"] for s in records if s.get("event") == "eval"] == [steps // 2, steps]
    validation, test = summary["validation_metrics"], summary["test_metrics"]
    assert summary["metric"] in validation
    for metric in ["eval_loss", *TASK_METRICS[summary["task"]]]:
        assert math.isfinite(validation[metric]), (metric, validation)
        assert math.isfinite(test["test_" + metric.removeprefix("eval_")]), (metric, test)
    assert math.isfinite(summary["best_validation"])
    runtime = summary["runtime"]
    assert (runtime["zero_stage"], runtime["world_size"]) == (2, workers)
    saved = {p.name for p in (run_dir / "best-model").iterdir()}
    assert {"config.json", "adapter_config.json"} & saved  # a model, or a LoRA adapter
