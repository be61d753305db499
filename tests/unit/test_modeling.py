from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raytune_ft.errors import UserError
from raytune_ft.modeling.loading import build_model, load_tokenizer, load_trained_model
from raytune_ft.modeling.sources import resolve_model_source
from raytune_ft.spec.sections import ModelSpec, PeftSpec
from raytune_ft.spec.task_sections import ClassificationTask
from raytune_ft.tasks.registry import task_for

CLS = task_for(ClassificationTask())


def test_minilm_names_resolve_to_packaged_weights() -> None:
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        folder = Path(resolve_model_source(name))
        assert (folder / "model.safetensors").exists()
    assert resolve_model_source("org/unknown-model") == "org/unknown-model"  # left to the hub


def test_hub_id_loads_through_the_hub_cache_offline(tiny_bert: Path, tmp_path: Path) -> None:
    """The real hub code path (hub id -> huggingface_hub -> cache snapshot), with no network."""
    commit = "0" * 40
    snapshot = tmp_path / "hub" / "models--acme--tiny-bert" / "snapshots" / commit
    shutil.copytree(tiny_bert, snapshot)
    refs = snapshot.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text(commit)
    code = (
        "from raytune_ft.modeling.loading import build_model, load_tokenizer\nfrom raytune_ft.tasks.registry import task_for\nfrom raytune_ft.spec.task_sections import ClassificationTask\nCLS = task_for(ClassificationTask())\n"
        "from raytune_ft.spec.sections import ModelSpec, PeftSpec\n"
        "m = ModelSpec(name_or_path='acme/tiny-bert')\n"
        "tok = load_tokenizer(m)\n"
        "model = build_model(m, PeftSpec(), CLS, ['neg', 'pos'])\n"
        "print(model.config.hidden_size, model.config.id2label[1], tok('hi')['input_ids'][0])\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["32", "pos", "101"]


def test_unreachable_hub_id_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"model\.name_or_path: cannot load 'acme/no-such-model'"):
        load_tokenizer(ModelSpec(name_or_path="acme/no-such-model"))


def test_lora_wraps_model_and_trains_only_adapters_and_head(
    tiny_bert: Path, tmp_path: Path
) -> None:
    spec = ModelSpec(name_or_path=str(tiny_bert))
    model = build_model(
        spec, PeftSpec(method="lora", r=4, target_modules=["query", "value"]), CLS, ["0", "1"]
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any("classifier" in n for n in trainable)
    model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_bert)
    reloaded = load_trained_model(tmp_path / "adapter", spec, CLS, ["0", "1"]).eval()
    batch = {"input_ids": torch.tensor([[101, 2204, 102]])}
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, reloaded(**batch).logits, atol=1e-6)


def test_bad_lora_target_is_a_user_error(tiny_bert: Path) -> None:
    with pytest.raises(UserError, match=r"peft\.target_modules"):
        build_model(
            ModelSpec(name_or_path=str(tiny_bert)),
            PeftSpec(method="lora", target_modules=["no_such_layer"]),
            CLS,
            ["0", "1"],
        )


def test_position_limits_only_for_absolute_position_tables() -> None:
    from transformers import BertConfig, DebertaV2Config, GPT2Config, LlamaConfig, RobertaConfig

    from raytune_ft.modeling.loading import absolute_positions

    assert absolute_positions(BertConfig(max_position_embeddings=128)) == 128
    assert absolute_positions(RobertaConfig(max_position_embeddings=514)) == 512  # pad offset
    assert absolute_positions(GPT2Config()) == 1024
    assert absolute_positions(BertConfig(position_embedding_type="relative_key")) is None
    assert absolute_positions(LlamaConfig()) is None  # rotary: no hard cap
    assert absolute_positions(DebertaV2Config()) is None  # relative


def test_random_init_from_a_config_with_overrides_in_the_training_dtype(tiny_bert: Path) -> None:
    pretrained = build_model(ModelSpec(name_or_path=str(tiny_bert)), PeftSpec(), CLS, ["a", "b"])
    spec = ModelSpec(
        name_or_path=str(tiny_bert), init="random", config_overrides={"num_hidden_layers": 1}
    )
    torch.manual_seed(123)
    fresh = build_model(spec, PeftSpec(), CLS, ["a", "b"], dtype=torch.bfloat16)
    assert fresh.config.num_hidden_layers == 1 and len(fresh.bert.encoder.layer) == 1
    assert {p.dtype for p in fresh.parameters()} == {torch.bfloat16}  # created in bf16
    # Not the saved weights: a fresh draw of the same shape.
    saved = pretrained.bert.embeddings.word_embeddings.weight
    drawn = fresh.bert.embeddings.word_embeddings.weight
    assert saved.shape == drawn.shape and not torch.allclose(saved, drawn.float())
    loaded = build_model(
        ModelSpec(name_or_path=str(tiny_bert)), PeftSpec(), CLS, ["a", "b"], dtype=torch.bfloat16
    )
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}  # read in bf16


def test_an_unknown_config_override_is_named(tiny_bert: Path) -> None:
    spec = ModelSpec(name_or_path=str(tiny_bert), config_overrides={"num_hiden_layers": 1})
    with pytest.raises(UserError) as info:
        build_model(spec, PeftSpec(), CLS, ["a", "b"], empty=True)
    assert info.value.problems == [
        "model.config_overrides.num_hiden_layers: BertConfig has no such field "
        "(a typo would otherwise be stored and ignored)"
    ]
