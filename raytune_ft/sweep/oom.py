"""Out-of-memory-aware trials: a trial that runs out of memory tries again with half the
micro-batch and twice the gradient accumulation (the same global batch, so the same run as
far as the optimizer can tell), up to `sweep.oom_retries` times."""

from __future__ import annotations

from collections.abc import Callable

from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.train.failures import root_cause

OOM_TEXT = ("out of memory", "outofmemoryerror")


def is_out_of_memory(exc: BaseException) -> bool:
    """A device (or host) out-of-memory error, through Ray's wrappers."""
    import torch

    cause = root_cause(exc)
    if isinstance(cause, torch.OutOfMemoryError | MemoryError):
        return True
    text = f"{type(cause).__name__}: {cause}".lower()
    return any(marker in text for marker in OOM_TEXT)


def halved(spec: ExperimentSpec) -> ExperimentSpec | None:
    """The same global batch in micro-batches half as large; None when it cannot be halved."""
    micro = spec.train.micro_batch_size
    if micro < 2 or micro % 2:
        return None
    data = spec.model_dump(mode="json")
    data["train"]["micro_batch_size"] = micro // 2
    data["train"]["gradient_accumulation_steps"] = spec.train.gradient_accumulation_steps * 2
    return ExperimentSpec.model_validate(data)


def run_with_oom_retries(
    spec: ExperimentSpec,
    attempt: Callable[[ExperimentSpec, int], None],
    retries: int,
    note: Callable[[dict], None],
) -> ExperimentSpec:
    """Run `attempt(spec, retries_so_far)`; on out-of-memory, again with `halved(spec)`.
    `note` gets one record per retry. Returns the spec that ran to the end."""
    for done in range(retries + 1):
        try:
            attempt(spec, done)
            return spec
        except BaseException as exc:
            smaller = halved(spec) if done < retries and is_out_of_memory(exc) else None
            if smaller is None:
                raise
            note(
                {
                    "event": "oom",
                    "micro_batch_size": spec.train.micro_batch_size,
                    "retry_micro_batch_size": smaller.train.micro_batch_size,
                    "retry_gradient_accumulation_steps": smaller.train.gradient_accumulation_steps,
                    "error": f"{type(root_cause(exc)).__name__}: {str(root_cause(exc))[:200]}",
                }
            )
            spec = smaller
    raise AssertionError("unreachable")  # the last attempt returns or raises
