"""Exports of a real DeepSpeed engine (CPU, one rank): what is written, and how it lands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import minimal_spec

from raytune_ft.spec import validate_spec
from raytune_ft.storage import Location, storage_root
from raytune_ft.tasks.registry import task_for
from raytune_ft.train.export import Exporter, exported, host_copy, publish, restore
from raytune_ft.train.session import one_rank_process_group


def _engine(tiny_bert: Path, peft: dict) -> tuple:
    import deepspeed

    from raytune_ft.modeling.loading import build_model, load_tokenizer

    spec = validate_spec(minimal_spec(model={"name_or_path": str(tiny_bert)}, peft=peft))
    model = build_model(spec.model, spec.peft, task_for(spec.task), ["0", "1"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    config = {
        "train_batch_size": 2,
        "train_micro_batch_size_per_gpu": 2,
        "zero_optimization": {"stage": 2},
        "zero_allow_untested_optimizer": True,
    }
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine, load_tokenizer(spec.model)


def _local(path: Path) -> Location:
    return storage_root(validate_spec(minimal_spec(storage={"path": str(path)})).storage)


@pytest.mark.parametrize("peft", [{"method": "none"}, {"method": "lora", "r": 4}])
def test_best_export_holds_the_trained_weights_only_and_publishes_atomically(
    tiny_bert: Path, tmp_path: Path, peft: dict
) -> None:
    from raytune_ft.modeling.loading import load_trained_model

    run = _local(tmp_path / "run")
    lora = peft["method"] == "lora"
    with one_rank_process_group(use_gpu=False):
        engine, tokenizer = _engine(tiny_bert, peft)
        exporter = Exporter(run, tokenizer, engine.module, rank=0)
        state = host_copy(engine, trained_only=lora)
        trained = {n for n, p in engine.module.named_parameters() if p.requires_grad}
        assert state is not None
        if lora:  # adapters and the new head, not the frozen base
            assert set(state) == trained and len(state) < len(list(engine.module.parameters()))
        first = state
        # What the loop does: the exporter gets a shallow copy (save_pretrained empties it).
        exporter.submit("best", dict(state), 10, {"eval_accuracy": 0.6})
        [record] = exporter.finished()
        assert record["bytes"] > 0 and record["step"] == 10
        # The live weights change; a later, better export replaces the first one.
        with torch.no_grad():
            for name, param in engine.module.named_parameters():
                if name in trained:
                    param.add_(1.0)
        exporter.submit("best", host_copy(engine, trained_only=lora), 20, {"eval_accuracy": 0.8})
        exporter.finished()
        exporter.close()
        folder, info = exported(run, "best")
        assert folder.name.startswith("best-00000020-") and info["eval_accuracy"] == 0.8
        # The first export is superseded and deleted.
        assert [f.name for f in (tmp_path / "run" / "exports").iterdir() if f.is_dir()] == [
            folder.name
        ]
        # Restoring the first copy puts those weights back (what the test evaluation does).
        assert len(first) == len(trained if lora else engine.module.state_dict())
        restore(engine, first)
        for name, param in engine.module.named_parameters():
            if name in first:
                assert torch.equal(param.detach(), first[name])

    published = publish(run)
    best_model = tmp_path / "run" / "best-model"
    assert published["best"][0].local_path == best_model
    assert json.loads((tmp_path / "run" / "exports" / "best.json").read_text())["folder"] == (
        "best-model"
    )
    assert publish(run)["best"][0].local_path == best_model  # idempotent
    files = {f.name for f in best_model.iterdir()}
    assert ("adapter_model.safetensors" in files) == lora
    assert "optimizer" not in " ".join(files)
    model = load_trained_model(best_model, validate_spec(minimal_spec()).model, _task(), ["0", "1"])
    assert model is not None


def _task():
    return task_for(validate_spec(minimal_spec()).task)


def test_a_run_without_exports_publishes_nothing(tmp_path: Path) -> None:
    assert publish(_local(tmp_path)) == {}
