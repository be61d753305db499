"""The out-of-memory retry policy: half the micro-batch, twice the accumulation, a limit."""

from __future__ import annotations

import pytest
import torch
from helpers import minimal_spec

from raytune_ft.spec import validate_spec
from raytune_ft.sweep.oom import halved, is_out_of_memory, run_with_oom_retries


def spec(micro: int, accumulation: int = 1):
    return validate_spec(
        minimal_spec(train={"micro_batch_size": micro, "gradient_accumulation_steps": accumulation})
    )


def test_halving_keeps_the_global_batch_or_gives_up() -> None:
    smaller = halved(spec(16, 2))
    assert smaller is not None
    assert (smaller.train.micro_batch_size, smaller.train.gradient_accumulation_steps) == (8, 4)
    assert halved(spec(1)) is None and halved(spec(6 + 1)) is None  # cannot halve exactly


def test_out_of_memory_is_recognised_through_wrappers() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    wrapped = RuntimeError("worker group failed")
    wrapped.__cause__ = RuntimeError("CUDA error: out of memory")
    assert is_out_of_memory(wrapped)
    assert not is_out_of_memory(ValueError("bad value"))


def fits(limit: int, seen: list[int]):
    def attempt(candidate, retries: int) -> None:  # an injected OOM above `limit`
        seen.append(candidate.train.micro_batch_size)
        if candidate.train.micro_batch_size > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    return attempt


def test_retries_halve_until_it_fits() -> None:
    seen, notes = [], []
    final = run_with_oom_retries(spec(16), fits(4, seen), retries=2, note=notes.append)
    assert seen == [16, 8, 4]
    assert (final.train.micro_batch_size, final.train.gradient_accumulation_steps) == (4, 4)
    assert [(n["micro_batch_size"], n["retry_micro_batch_size"]) for n in notes] == [
        (16, 8),
        (8, 4),
    ]


def test_retries_stop_at_the_limit_and_other_errors_are_not_retried() -> None:
    seen = []
    with pytest.raises(torch.OutOfMemoryError):
        run_with_oom_retries(spec(16), fits(2, seen), retries=1, note=lambda _: None)
    assert seen == [16, 8]

    def broken(candidate, retries: int) -> None:
        seen.append(retries)
        raise ValueError("train.learning_rate: bad")

    seen.clear()
    with pytest.raises(ValueError):
        run_with_oom_retries(spec(16), broken, retries=2, note=lambda _: None)
    assert seen == [0]
