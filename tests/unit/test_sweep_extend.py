"""Extending a sweep: the searcher goes on from its saved state; the policies on errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.storage import Location
from raytune_ft.sweep.runner import _check_extensible
from raytune_ft.sweep.space import param_space
from raytune_ft.sweep.tuner import (
    continued_searcher,
    max_failures,
    restore_flags,
    tune_dirs,
)

SPACE = {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}, "peft.r": {"choice": [4, 8]}}


def local(path: Path) -> Location:
    from pyarrow import fs

    return Location(fs.LocalFileSystem(), str(path), "")


def sweep_spec(**sweep: object):
    return validate_spec(minimal_spec(sweep={"space": SPACE, "search": {"seed": 3}, **sweep}))


def test_an_extension_restores_tpe_with_every_result_it_was_told(tmp_path: Path) -> None:
    from raytune_ft.sweep.registry import make_searcher

    spec = sweep_spec()
    first = make_searcher(spec, 1).algorithm
    first.set_search_properties(spec.metric, spec.metric_mode, param_space(spec.sweep))
    told = []
    for i in range(4):
        config = first.suggest(f"t{i}")
        told.append(config["train.learning_rate"])
        first.on_trial_complete(f"t{i}", {spec.metric: 0.5 + 0.1 * i})
    first.searcher.save_to_dir(str(tmp_path))

    restored = continued_searcher(spec, local(tmp_path), 1, max_concurrent=2)
    assert restored.has_own_space  # the Tuner must not hand it a space again
    study = restored.algorithm.searcher._ot_study
    assert [t.value for t in study.trials] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert [t.params["train.learning_rate"] for t in study.trials] == pytest.approx(told)
    nxt = restored.algorithm.suggest("t4")
    assert 1e-5 <= nxt["train.learning_rate"] <= 1e-3 and nxt["peft.r"] in (4, 8)


def test_an_extension_without_a_saved_searcher_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"has no saved searcher state"):
        continued_searcher(sweep_spec(), local(tmp_path), 1, max_concurrent=1)


def test_random_search_extends_with_the_next_seed() -> None:
    """The same seed would draw the sweep's configurations again: an extension draws new
    ones, and the same ones each time it is made (still seeded)."""
    from raytune_ft.sweep.registry import make_searcher
    from raytune_ft.sweep.space import param_space

    spec = sweep_spec(search={"algorithm": "random", "seed": 3})
    space = param_space(spec.sweep)

    def draws(searcher: Any) -> list[float]:
        rng = searcher.algorithm._random_state
        return [space["train.learning_rate"].sample(random_state=rng) for _ in range(4)]

    first = draws(make_searcher(spec, 1))
    extension = continued_searcher(spec, local(Path("/nonexistent")), 2, max_concurrent=1)
    assert not extension.has_own_space
    again = continued_searcher(spec, local(Path("/nonexistent")), 2, max_concurrent=1)
    assert draws(extension) == draws(again)
    assert not set(draws(continued_searcher(spec, local(Path("/x")), 2, 1))) & set(first)


def test_a_grid_cannot_be_extended() -> None:
    grid = validate_spec(
        minimal_spec(sweep={"search": {"algorithm": "grid"}, "space": {"peft.r": {"grid": [4, 8]}}})
    )
    with pytest.raises(UserError, match=r"^--extend: a grid sweep has no more points to add"):
        _check_extensible(grid, "--extend")
    _check_extensible(sweep_spec(), "--extend")


def test_the_errored_trial_policy_maps_to_tune() -> None:
    assert restore_flags(sweep_spec()) == {"resume_errored": True, "restart_errored": False}
    restart = sweep_spec(errored_trials={"on_resume": "restart"})
    assert restore_flags(restart) == {"resume_errored": False, "restart_errored": True}
    skip = sweep_spec(errored_trials={"on_resume": "skip"})
    assert restore_flags(skip) == {"resume_errored": False, "restart_errored": False}
    assert max_failures(sweep_spec(errored_trials={"retries": 3})) == 3
    two = validate_spec(
        minimal_spec(
            scaling={"num_workers": 2, "max_failures": 5},
            sweep={"space": SPACE, "errored_trials": {"retries": 1}},
        )
    )
    assert max_failures(two) == 1  # the worker group's own restarts are its TorchTrainer's


def test_the_sweeps_experiments_are_listed_in_order(tmp_path: Path) -> None:
    for name in ("ray-tune-ext10", "ray-tune", "ray-tune-ext2", "trials", "ray-tune-x"):
        (tmp_path / name).mkdir()
    assert [d.name for d in tune_dirs(local(tmp_path))] == [
        "ray-tune",
        "ray-tune-ext2",
        "ray-tune-ext10",
    ]
