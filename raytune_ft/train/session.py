"""Where a worker's reports and checkpoints go, behind one small interface.

The recipe runs the same way in a Ray Train worker group (`RayTrainSession`) and alone inside
a Tune trial's own process (`raytune_ft.sweep.in_process`): it asks the session for its rank,
its restored checkpoint, and hands it metrics and an optional checkpoint folder.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


class WorkerSession(Protocol):
    rank: int
    world: int

    def restored(self) -> Any | None:
        """The checkpoint to resume from (a ray.train.Checkpoint), or None."""

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        """Hand over metrics and, optionally, a checkpoint folder. The session owns the folder
        afterwards (it deletes it once persisted)."""


class RayTrainSession:
    """A rank of a Ray Train worker group. Checkpoints upload in Ray's background thread, so
    the next steps run while the files travel (CheckpointUploadMode.ASYNC)."""

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()

    def restored(self) -> Any | None:
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        import ray.train
        from ray.train import CheckpointUploadMode

        if checkpoint_dir is None:
            ray.train.report(metrics)
            return
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint_dir)),
            checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
            delete_local_checkpoint_after_upload=True,
        )


class LocalSession:
    """One rank outside Ray (benchmarks, debugging): reports are kept, checkpoints dropped."""

    rank = 0
    world = 1

    def __init__(self) -> None:
        self.reports: list[dict[str, float]] = []

    def restored(self) -> Any | None:
        return None

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        self.reports.append(metrics)
        if checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


@contextlib.contextmanager
def one_rank_process_group(use_gpu: bool) -> Iterator[None]:
    """A process group of one rank, its store in memory: DeepSpeed wants a group, and a TCP
    store would open a port for nobody. Torn down afterwards (a reused process may run the
    next trial), with the GPU memory the run held."""
    import torch
    import torch.distributed as dist

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    backend = "nccl" if use_gpu and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        # DeepSpeed's own teardown: it also drops the groups it cached (a next run in this
        # process would otherwise broadcast over a group of the destroyed world).
        import deepspeed.comm

        try:
            deepspeed.comm.destroy_process_group()
        except Exception:  # DeepSpeed never set up (the run failed before): torch's own
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
