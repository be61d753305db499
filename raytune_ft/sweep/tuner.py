"""The Tune experiments of one sweep folder: the first (`ray-tune/`) and one per extension
(`ray-tune-ext1/`, ...). Each is a whole Tune experiment with its own state, so a resume
restores only the newest; an extension is a new experiment whose searcher starts from the
previous one's saved state (its history, and its random state), which is the public way to
add trials: Tune's own restore keeps the old `num_samples`.

Also used by `bench/sweep_scale.py`, which runs a stand-in trainable through the same tuner.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.storage import Location
from raytune_ft.sweep.registry import Searcher, make_scheduler, make_searcher, startup_line
from raytune_ft.sweep.retention import Retention
from raytune_ft.sweep.space import param_space
from raytune_ft.sweep.trackers import tracker_callbacks
from raytune_ft.sweep.trial_checkpoints import ResumeFromNewest

TUNE_DIR = "ray-tune"
_EXTENSION = re.compile(rf"^{TUNE_DIR}-ext(\d+)$")

# PBT copies another trial's checkpoint a moment after that trial reported it, and HyperBand
# resumes a paused trial from its own: with too few kept, Tune deletes them first (its warning
# says <= 2 is unsafe).
KEPT_FOR_PAUSED_TRIALS = 4


def tune_dirs(sweep_dir: Location) -> list[Location]:
    """The sweep's Tune experiments, oldest first."""
    found = []
    for child in sweep_dir.children():
        if child.name == TUNE_DIR:
            found.append((0, child))
        elif match := _EXTENSION.match(child.name):
            found.append((int(match[1]), child))
    return [location for _, location in sorted(found, key=lambda f: f[0])]


def extension_name(index: int) -> str:
    return f"{TUNE_DIR}-ext{index}"


def restore_flags(spec: ExperimentSpec) -> dict[str, bool]:
    """Tuner.restore's flags for the spec's policy on trials that had errored."""
    assert spec.sweep is not None
    policy = spec.sweep.errored_trials.on_resume
    return {"resume_errored": policy == "resume", "restart_errored": policy == "restart"}


def max_failures(spec: ExperimentSpec) -> int:
    """How often Tune starts an errored trial again within the sweep. A one-worker trial
    trains in the trial's own process, so its worker's failures are the trial's."""
    assert spec.sweep is not None
    retries = spec.sweep.errored_trials.retries
    if spec.scaling.num_workers == 1:
        return max(retries, spec.scaling.max_failures)
    return retries


def checkpoints_kept(spec: ExperimentSpec) -> int:
    assert spec.sweep is not None
    keep = spec.train.checkpoint.keep
    return max(keep, KEPT_FOR_PAUSED_TRIALS) if spec.sweep.scheduler.pauses_trials else keep


def reuse_trial_processes(spec: ExperimentSpec) -> bool:
    """One-worker trials reuse a warm process; not under PBT/PB2, which restart trials under
    new configs from other trials' checkpoints."""
    assert spec.sweep is not None
    if spec.sweep.scheduler.is_population:
        return False
    return spec.scaling.num_workers == 1 and "scaling.num_workers" not in spec.sweep.space


def make_tuner(
    spec: ExperimentSpec,
    trainable: Any,
    sweep_dir: Location,
    *,
    name: str,
    num_samples: int,
    max_concurrent: int,
    max_t: float,
    searcher: Searcher | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A new Tune experiment `sweep_dir/name` of `num_samples` trials. Without a `searcher`
    it makes the spec's and prints what its TPE start-up will do (`startup_line`)."""
    from ray import tune

    if searcher is None:  # a searcher passed in (an extension's restored one) keeps its own
        searcher = make_searcher(spec, max_concurrent)
        line = startup_line(spec, num_samples)
        if line:
            print(line, file=sys.stderr, flush=True)
    assert spec.sweep is not None
    return tune.Tuner(
        trainable,
        # A searcher that holds its own space (Optuna's conditional one, a restored one)
        # gets none here.
        param_space={} if searcher.has_own_space else param_space(spec.sweep),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.metric_mode,
            search_alg=searcher.algorithm,
            scheduler=make_scheduler(spec, max_t),
            num_samples=num_samples,
            # A warm trial process (imports done, CUDA up) takes the next trial; not when
            # trials run worker groups, which a stopped trial may still hold.
            reuse_actors=reuse_trial_processes(spec),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=sweep_dir.path,
            storage_filesystem=sweep_dir.fs,
            # A one-worker trial that dies restarts from its last checkpoint here (a worker
            # group restarts inside its TorchTrainer first).
            failure_config=tune.FailureConfig(max_failures=max_failures(spec)),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=checkpoints_kept(spec)),
            callbacks=[
                *tracker_callbacks(spec, sweep_dir),
                # Pickled with the experiment, so a resumed sweep has it.
                ResumeFromNewest(prefer_newest=not spec.sweep.scheduler.is_population),
                Retention(spec, sweep_dir),
                *(callbacks or []),
            ],
        ),
    )


def restore_tuner(spec: ExperimentSpec, trainable: Any, experiment: Location) -> Any:
    """The experiment as Tune saved it: finished trials stay, unfinished ones go on, errored
    ones per `sweep.errored_trials.on_resume`."""
    from ray import tune

    return tune.Tuner.restore(
        experiment.path,
        trainable=trainable,
        storage_filesystem=experiment.fs,
        **restore_flags(spec),
    )


def load_grid(experiment: Location) -> Any:
    """A finished experiment's results, without running anything."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    return ResultGrid(ExperimentAnalysis(experiment.path, storage_filesystem=experiment.fs))


def continued_searcher(
    spec: ExperimentSpec, previous: Location, index: int, max_concurrent: int
) -> Searcher:
    """The searcher for extension `index`: the previous experiment's searcher as it was saved
    (every result it was told, its random state), or for random search a new seed (the same
    seed would draw the same configurations again)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    assert spec.sweep is not None
    algorithm = spec.sweep.search.algorithm
    if algorithm == "random":
        seed = None if spec.search_seed is None else spec.search_seed + index
        return Searcher(
            BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent),
            has_own_space=False,
        )
    base = make_searcher(spec, max_concurrent).algorithm.searcher
    with tempfile.TemporaryDirectory(prefix="raytune-ft-searcher-") as tmp:
        state = _newest_searcher_state(previous, Path(tmp))
        if state is None:
            raise UserError(
                f"--extend: {previous.uri} has no saved searcher state (searcher-state-*.pkl); "
                "expected the sweep's Tune folder as Tune left it"
            )
        base.restore_from_dir(str(state))
    # The restored searcher has its space: Tune's param_space must be empty.
    return Searcher(ConcurrencyLimiter(base, max_concurrent=max_concurrent), has_own_space=True)


def _newest_searcher_state(experiment: Location, scratch: Path) -> Path | None:
    """A local folder holding the experiment's newest searcher state (downloaded from a
    bucket: Ray's restore_from_dir reads local paths only)."""
    name = experiment.newest("searcher-state-", ".pkl")
    if name is None:
        return None
    if experiment.is_local:
        return experiment.local_path
    with experiment.fs.open_input_stream(f"{experiment.path}/{name}") as stream:
        (scratch / name).write_bytes(stream.read())
    return scratch


def trainable_with(
    trial: Callable[..., None], resources: Callable[[dict[str, Any]], dict[str, float]], **bound
) -> Any:
    """Tune's trainable: `trial` with `bound` arguments, reserving `resources(params)`."""
    from ray import tune
    from ray.tune import PlacementGroupFactory

    return tune.with_resources(
        tune.with_parameters(trial, **bound),
        lambda params: PlacementGroupFactory([resources(params)]),
    )
