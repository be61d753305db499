"""A single-worker trial trained inside its Tune trial's own process.

A trial that needs one worker does not need a worker group: no Ray Train controller, no
worker actor to start, no process group rendezvous (about 8-25 s a trial here). The recipe
runs in the trial's thread with a one-rank process group held in memory, reports to Tune,
and Tune persists its checkpoints, restores a failed trial from the last one and reuses the
warm process (imports done, CUDA initialised) for the next trial.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from raytune_ft.train.loop import WorkerArgs, run_recipe


class TuneTrialSession:
    """The recipe's session inside a Tune function trainable: rank 0 of 1."""

    rank = 0
    world = 1

    def restored(self) -> Any | None:
        from ray import tune

        return tune.get_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        from ray import tune
        from ray.tune import Checkpoint

        if checkpoint_dir is None:
            tune.report(metrics)
            return
        try:  # Tune copies the folder to the trial's storage before returning
            tune.report(metrics, checkpoint=Checkpoint.from_directory(str(checkpoint_dir)))
        finally:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


def train_in_trial(args: WorkerArgs) -> None:
    """Run the recipe here, in this trial's process, as a world of one."""
    with _one_rank_group(args.use_gpu):
        run_recipe(args, TuneTrialSession())


@contextlib.contextmanager
def _one_rank_group(use_gpu: bool) -> Iterator[None]:
    """A process group of one rank, its store in memory: DeepSpeed wants a group, and a TCP
    store would open a port for nobody. Torn down after the trial (Tune may reuse this
    process for the next one), with the GPU memory the trial held."""
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    backend = "nccl" if use_gpu and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        # DeepSpeed's own teardown: it also drops the groups it cached (a next trial in this
        # process would otherwise broadcast over a group of the destroyed world).
        import deepspeed.comm

        try:
            deepspeed.comm.destroy_process_group()
        except Exception:  # DeepSpeed never set up (the trial failed before): torch's own
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
