"""A single-worker trial trained inside its Tune trial's own process.

A trial that needs one worker does not need a worker group: no Ray Train controller, no
worker actor to start, no process group rendezvous (about 8-25 s a trial here). The recipe
runs in the trial's thread with a one-rank process group held in memory, reports to Tune,
and Tune persists its checkpoints, restores a failed trial from the last one and reuses the
warm process (imports done, CUDA initialised) for the next trial.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from pathlib import Path
from typing import Any

from raytune_ft.sweep.trial_checkpoints import RESULT_FILE
from raytune_ft.train.loop import WorkerArgs, run_recipe
from raytune_ft.train.session import one_rank_process_group

# Reports so far of each trial run in this process: Tune's training_iteration, which a
# function trainable cannot read. A reused process may run a trial again (paused, then
# resumed), so a restored checkpoint's count wins.
_reports: dict[str, int] = {}


class TuneTrialSession:
    """The recipe's session inside a Tune function trainable: rank 0 of 1.

    Each checkpoint also carries the result reported with it (RESULT_FILE), so a resumed
    sweep can go on from a checkpoint newer than Tune's last snapshot
    (`sweep/trial_checkpoints.py`)."""

    rank = 0
    world = 1

    def __init__(self) -> None:
        from ray import tune

        self.trial_id = tune.get_context().get_trial_id()
        restored = self.restored()
        if restored is not None:  # one small file, not the whole checkpoint from a bucket
            try:
                with restored.filesystem.open_input_stream(f"{restored.path}/{RESULT_FILE}") as f:
                    count = int(json.loads(f.readall())["training_iteration"])
            except (OSError, ValueError, KeyError, TypeError):  # an older checkpoint
                count = 0
            _reports[self.trial_id] = count
        _reports.setdefault(self.trial_id, 0)

    def restored(self) -> Any | None:
        from ray import tune

        return tune.get_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        from ray import tune
        from ray.tune import Checkpoint

        _reports[self.trial_id] += 1
        if checkpoint_dir is None:
            tune.report(metrics)
            return
        result = {**metrics, "training_iteration": _reports[self.trial_id]}
        (checkpoint_dir / RESULT_FILE).write_text(json.dumps(result))
        try:  # Tune copies the folder to the trial's storage before returning
            tune.report(metrics, checkpoint=Checkpoint.from_directory(str(checkpoint_dir)))
        finally:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


def train_in_trial(args: WorkerArgs) -> None:
    """Run the recipe here, in this trial's process, as a world of one."""
    # Tune reuses this process for the next trial once this one unwinds (an export to wait
    # for, loader workers, the process group): allow more than its default 2 s.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "120")
    with one_rank_process_group(args.use_gpu):
        try:
            run_recipe(args, TuneTrialSession())
        except BaseException as exc:  # SystemExit when the scheduler stops the trial
            # The traceback's frames hold the engine: clear them so the group's teardown
            # frees its memory before the next trial in this process.
            traceback.clear_frames(exc.__traceback__)
            raise
