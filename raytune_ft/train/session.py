"""Where a worker's reports and checkpoints go, behind one small interface.

The recipe runs the same way in a Ray Train worker group (`RayTrainSession`) and alone inside
a Tune trial's own process (`raytune_ft.sweep.in_process`): it asks the session for its rank,
its restored checkpoint, and hands it metrics and an optional checkpoint folder.
"""

from __future__ import annotations

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
