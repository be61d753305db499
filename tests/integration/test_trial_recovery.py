"""How a trial recovers, with the real recipe in this process (no Ray; a session that keeps
its checkpoints): PBT/PB2 hand a lagging trial a better trial's checkpoint under new values,
and the restored run must train with the spec's learning rate, not the checkpoint's; a trial
that runs out of memory tries again with half the micro-batch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from helpers import keyword_spec

from raytune_ft.data.prepare import prepare
from raytune_ft.spec import validate_spec
from raytune_ft.storage import storage_root
from raytune_ft.train.loop import WorkerArgs, run_recipe
from raytune_ft.train.session import one_rank_process_group


class KeepingSession:
    """One rank; checkpoints moved aside as they come; resumes from a given one."""

    rank, world = 0, 1

    def __init__(self, keep: Path, restore_from: Path | None = None) -> None:
        self.keep, self.restore_from = keep, restore_from
        self.reports: list[dict[str, float]] = []
        self.checkpoints: list[Path] = []

    def restored(self) -> Any | None:
        from ray.train import Checkpoint

        return None if self.restore_from is None else Checkpoint.from_directory(self.restore_from)

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            target = self.keep / f"checkpoint-{int(metrics['step'])}"
            shutil.move(str(checkpoint_dir), target)
            self.checkpoints.append(target)


def run(spec_dict: dict, name: str, session: KeepingSession, oom_retries: int = 0) -> None:
    spec = validate_spec(spec_dict)
    data = prepare(spec)
    args = WorkerArgs(
        spec=spec.model_dump(mode="json"),
        run_dir=(storage_root(spec.storage) / name).uri,
        use_gpu=False,
        prepared_dir=str(data.path),
        evaluate_test=False,
        oom_retries=oom_retries,
    )
    with one_rank_process_group(use_gpu=False):
        run_recipe(args, session)


def test_a_restored_trial_trains_with_its_new_learning_rate(
    tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    def spec(lr: float, steps: int) -> dict:
        return keyword_spec(
            tiny_bert,
            keyword_data,
            tmp_path / "runs",
            learning_rate=lr,
            lr_scheduler="constant",
            max_steps=steps,
            eval_every=5,
        ) | {"scaling": {"num_workers": 1}}

    leader = KeepingSession(tmp_path / "kept")
    (tmp_path / "kept").mkdir()
    run(spec(3e-3, 10), "leader", leader)
    assert [r["learning_rate"] for r in leader.reports] == [3e-3, 3e-3]
    # The lagging trial continues from the leader's step-10 checkpoint with a new value.
    follower = KeepingSession(tmp_path / "kept", restore_from=leader.checkpoints[-1])
    run(spec(1e-5, 20), "follower", follower)
    assert [r["step"] for r in follower.reports] == [10, 15, 20]  # resumed at step 10
    assert [r["learning_rate"] for r in follower.reports] == [1e-5, 1e-5, 1e-5]


def test_a_trial_out_of_memory_retries_with_half_the_micro_batch(
    tiny_bert: Path, keyword_data: Path, tmp_path: Path, monkeypatch
) -> None:
    import torch
    from transformers import BertForSequenceClassification

    from raytune_ft.sweep.oom import run_with_oom_retries

    forward = BertForSequenceClassification.forward

    def small_device(self, input_ids=None, **kwargs):  # an injected out-of-memory error
        if input_ids is not None and input_ids.shape[0] > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(BertForSequenceClassification, "forward", small_device)
    spec = validate_spec(
        keyword_spec(tiny_bert, keyword_data, tmp_path / "runs", max_steps=10, eval_every=5)
        | {"scaling": {"num_workers": 1}}
    )
    assert (spec.train.micro_batch_size, spec.train.gradient_accumulation_steps) == (16, 1)
    session, notes = KeepingSession(tmp_path), []

    def attempt(candidate, retries: int) -> None:
        run(candidate.model_dump(mode="json"), f"try{retries}", session, oom_retries=retries)

    final = run_with_oom_retries(spec, attempt, retries=2, note=notes.append)
    assert (final.train.micro_batch_size, final.train.gradient_accumulation_steps) == (8, 2)
    assert [n["retry_micro_batch_size"] for n in notes] == [8]
    assert "OutOfMemoryError" in notes[0]["error"]
    # The retry ran the whole schedule (same global batch: the same 10 optimizer steps), and
    # its results say how it ran.
    assert [r["step"] for r in session.reports] == [5, 10]
    assert {
        (r["micro_batch_size"], r["gradient_accumulation_steps"], r["oom_retries"])
        for r in session.reports
    } == {(8, 2, 1)}
