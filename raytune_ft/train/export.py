"""Hugging Face exports of the model: `best-model/` (and `final-model/` if asked).

An export holds weights in the training dtype (16-bit on GPU) and, for PEFT, only the trained
parameters: no optimizer state, no frozen base. Rank 0 copies the weights to host memory once
(under ZeRO-3 DeepSpeed gathers them onto rank 0 only) and a background thread writes and
uploads them while training goes on. Each export lands in `exports/<kind>-<step>/`, and only
then does `exports/<kind>.json` point at it: a crash leaves the previous export whole.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from raytune_ft.storage import Location

EXPORTS_DIR = "exports"
PUBLISHED = {"best": "best-model", "final": "final-model"}

State = dict[str, torch.Tensor]


def host_copy(engine: Any, trained_only: bool) -> State | None:
    """The module's weights on the host, on rank 0 (None elsewhere). Collective under ZeRO-3.

    `trained_only` keeps the parameters that train (PEFT adapters and new heads); otherwise
    the whole state dict. Tensors that share storage (tied embeddings) stay shared, which
    `save_pretrained` relies on to drop the duplicates.
    """
    if engine.zero_optimization_partition_weights():
        state = engine._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=trained_only)
        return state if engine.global_rank == 0 else None
    if engine.global_rank != 0:
        return None
    module = engine.module
    if trained_only:
        source = {n: p for n, p in module.named_parameters() if p.requires_grad}
    else:
        source = module.state_dict()
    copies: dict[tuple[int, Any], torch.Tensor] = {}
    state: State = {}
    for name, tensor in source.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape)
        if key not in copies:
            copies[key] = tensor.detach().to("cpu", copy=True)
        state[name] = copies[key]
    return state


def restore(engine: Any, state: State | None) -> None:
    """Load a `host_copy` back into the module on every rank (rank 0 holds it)."""
    import deepspeed
    import torch.distributed as dist

    module = engine.module
    params = list(module.parameters())
    if engine.zero_optimization_partition_weights():
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            if engine.global_rank == 0:
                module.load_state_dict(state, strict=False)
        return
    if engine.global_rank == 0:
        module.load_state_dict(state, strict=False)
    if dist.is_initialized() and dist.get_world_size() > 1:
        names = set(state or {}) if engine.global_rank == 0 else None
        shared: list[Any] = [names]
        dist.broadcast_object_list(shared, src=0)
        for name, param in module.named_parameters():
            if name in shared[0]:
                dist.broadcast(param.data, src=0)


class Exporter:
    """Writes exports from rank 0 on one background thread (one at a time, in order)."""

    def __init__(self, run_dir: Location, tokenizer: Any, module: Any, rank: int):
        self.run_dir = run_dir
        self.tokenizer = tokenizer
        self.module = module
        self.rank = rank
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="export") if rank == 0 else None
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" bars, one per export
        self._pending: list[Future[dict[str, Any]]] = []

    def submit(self, kind: str, state: State | None, step: int, info: dict[str, Any]) -> None:
        """Write `state` (rank 0's host copy) as export `kind` ('best' or 'final')."""
        if self._pool is None or state is None:
            return
        self._pending.append(self._pool.submit(self._write, kind, state, step, info))

    def finished(self) -> list[dict[str, Any]]:
        """Wait for every pending export; their records (seconds, bytes). Raises a failed
        export's error."""
        done = [future.result() for future in self._pending]
        self._pending.clear()
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _write(self, kind: str, state: State, step: int, info: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        exports = self.run_dir / EXPORTS_DIR
        # A new name each time: an attempt before a restart may have exported this step, and
        # the pointer may name that folder until this one is whole.
        target = exports / f"{kind}-{step:08d}-{uuid.uuid4().hex[:8]}"
        local = Path(tempfile.mkdtemp(prefix="raytune-ft-export-"))
        try:
            self.module.save_pretrained(str(local), state_dict=state)
            self.tokenizer.save_pretrained(str(local))
            size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
            target.upload(local)
        finally:
            shutil.rmtree(local, ignore_errors=True)
        pointer = exports / f"{kind}.json"
        previous = exported(self.run_dir, kind)
        pointer.write_json(info | {"step": step, "folder": f"{EXPORTS_DIR}/{target.name}"})
        if previous is not None and previous[0].path != target.path and previous[0].exists():
            previous[0].remove()
        return {
            "event": "export",
            "kind": kind,
            "step": step,
            "bytes": size,
            "seconds": round(time.monotonic() - started, 3),
        }


def exported(run_dir: Location, kind: str) -> tuple[Location, dict[str, Any]] | None:
    """The export `kind` ('best' or 'final') with its record (step, validation metrics);
    None if the run has none."""
    pointer = run_dir / EXPORTS_DIR / f"{kind}.json"
    if not pointer.exists():
        return None
    record = json.loads(pointer.read_text())
    return run_dir / record["folder"], record


def publish(run_dir: Location) -> dict[str, tuple[Location, dict[str, Any]]]:
    """Move the exports to `best-model/` and `final-model/` (replacing any an earlier attempt
    published); returns {kind: (folder, record)} of what the run has."""
    published: dict[str, tuple[Location, dict[str, Any]]] = {}
    for kind, name in PUBLISHED.items():
        found = exported(run_dir, kind)
        if found is None:
            continue
        folder, record = found
        target = run_dir / name
        if folder.path != target.path and folder.exists():
            if target.exists():
                target.remove()
            folder.move_to(target)
            record = record | {"folder": name}
            (run_dir / EXPORTS_DIR / f"{kind}.json").write_json(record)
        published[kind] = (target, record)
    return published
