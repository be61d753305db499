from __future__ import annotations

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.sweep.registry import make_scheduler, make_searcher
from raytune_ft.sweep.runner import _check_space
from raytune_ft.sweep.space import apply_params, param_space

SPACE = {
    "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
    "train.warmup_ratio": {"uniform": [0.0, 0.2]},
    "peft.r": {"int": [4, 16]},
    "train.micro_batch_size": {"choice": [8, 16]},
}


def test_param_space_samples_within_bounds() -> None:
    spec = validate_spec(minimal_spec(sweep={"space": SPACE}))
    space = param_space(spec.sweep)
    for _ in range(50):
        sample = {k: v.sample() for k, v in space.items()}
        assert 1e-5 <= sample["train.learning_rate"] <= 1e-3
        assert 0.0 <= sample["train.warmup_ratio"] <= 0.2
        assert 4 <= sample["peft.r"] <= 16  # inclusive range
        assert sample["train.micro_batch_size"] in (8, 16)


def test_apply_params_sets_dotted_fields_and_creates_missing_sections() -> None:
    base = minimal_spec()
    out = apply_params(base, {"train.learning_rate": 3e-4, "peft.r": 4})
    assert out["train"]["learning_rate"] == 3e-4 and out["peft"]["r"] == 4
    assert "train" not in base  # the base spec is left alone
    assert validate_spec(out).train.learning_rate == 3e-4


def test_space_bounds_that_break_the_spec_are_named() -> None:
    spec = validate_spec(
        minimal_spec(sweep={"space": {"train.warmup_ratio": {"uniform": [0.5, 1.5]}}})
    )
    with pytest.raises(UserError) as info:
        _check_space(spec, 1000)
    assert info.value.problems == [
        'sweep.space."train.warmup_ratio" value 1.5: train.warmup_ratio: '
        "Input should be less than 1 (got 1.5)"
    ]


def test_asha_max_t_covers_the_longest_trial_in_the_space() -> None:
    spec = validate_spec(
        minimal_spec(
            train={"micro_batch_size": 32, "epochs": 1},
            sweep={"space": {"train.micro_batch_size": {"choice": [8, 32]}}},
        )
    )
    assert spec.schedule(640).num_evaluations == 1
    most = _check_space(spec, 640).max_t
    assert most == 1  # eval per epoch: one evaluation whatever the batch size
    per_steps = validate_spec(
        minimal_spec(
            train={"micro_batch_size": 32, "epochs": 1, "eval_every": 5},
            sweep={"space": {"train.micro_batch_size": {"choice": [8, 32]}}},
        )
    )
    assert _check_space(per_steps, 640).max_t == 16  # 80 steps at batch 8, every 5 steps
    assert make_scheduler(per_steps, 16)._max_t == 16


def test_registries_build_the_named_searcher_with_its_concurrency_limit() -> None:
    spec = validate_spec(
        minimal_spec(sweep={"space": SPACE, "search": {"algorithm": "optuna", "seed": 7}})
    )
    limited = make_searcher(spec, 1).algorithm
    assert type(limited.searcher).__name__ == "OptunaSearch"
    limited.set_search_properties(spec.train.metric, "max", param_space(spec.sweep))
    assert limited.suggest("trial-1") is not None
    assert limited.suggest("trial-2") is None  # one trial at a time until the first ends
    limited.on_trial_complete("trial-1", {spec.train.metric: 0.5})
    assert limited.suggest("trial-2") is not None
    spec = validate_spec(
        minimal_spec(
            sweep={"space": SPACE, "search": {"algorithm": "random"}, "scheduler": {"name": "fifo"}}
        )
    )
    # Random search: Tune ignores TuneConfig.max_concurrent_trials, so the generator holds it.
    generator = make_searcher(spec, 2).algorithm
    assert type(generator).__name__ == "BasicVariantGenerator"
    assert generator.max_concurrent == 2
    assert type(make_scheduler(spec, 4)).__name__ == "FIFOScheduler"


def test_trial_concurrency_fits_trials_to_resources() -> None:
    from raytune_ft.launch.resources import NodeShape, Placement
    from raytune_ft.sweep.runner import trial_concurrency

    def spec(workers: int, cpus: int = 1, samples: int = 8, cap: int | None = None):
        return validate_spec(
            minimal_spec(
                scaling={"num_workers": workers, "cpus_per_worker": cpus},
                sweep={"num_samples": samples, "max_concurrent_trials": cap, "space": SPACE},
            )
        )

    def on(cpus: float, gpus: float = 0, nodes: int = 1, use_gpu: bool = False) -> Placement:
        return Placement(use_gpu, [NodeShape("n", cpus, gpus, nodes)], nodes)

    assert trial_concurrency(spec(1), on(2)) == 2
    assert trial_concurrency(spec(2, cpus=2), on(16)) == 4
    assert trial_concurrency(spec(4), on(2)) == 1  # never zero
    assert trial_concurrency(spec(2), on(64, gpus=8, use_gpu=True)) == 4  # GPUs bound
    assert trial_concurrency(spec(1, samples=3), on(64)) == 3
    assert trial_concurrency(spec(1, cap=1), on(64)) == 1
    # Workers are gang-placed per node: 3 nodes of 3 CPUs hold 3 two-CPU workers, not 4.
    assert trial_concurrency(spec(1, cpus=2), on(3, nodes=3)) == 3


def test_keys_valid_alone_but_not_together_are_refused_before_any_trial() -> None:
    spec = validate_spec(
        minimal_spec(
            sweep={
                "space": {
                    "deepspeed.zero_stage": {"choice": [0, 2]},
                    "deepspeed.offload_optimizer": {"choice": ["none", "cpu"]},
                }
            }
        )
    )
    with pytest.raises(UserError) as info:
        _check_space(spec, 1000)
    assert info.value.problems == [
        "sweep.space: deepspeed.zero_stage=0, deepspeed.offload_optimizer='cpu' together: "
        "deepspeed: offload_optimizer needs zero_stage >= 1"
    ]
    fine = validate_spec(
        minimal_spec(
            sweep={
                "space": {
                    "deepspeed.zero_stage": {"choice": [1, 2]},
                    "deepspeed.offload_optimizer": {"choice": ["none", "cpu"]},
                    "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
                }
            }
        )
    )
    assert _check_space(fine, 1000).max_t >= 1


def test_a_corner_of_the_space_that_never_fits_the_cluster_is_refused_with_its_label() -> None:
    from raytune_ft.launch.resources import NodeShape, Placement

    spec = validate_spec(
        minimal_spec(
            scaling={"use_gpu": True},
            sweep={"space": {"scaling.num_workers": {"choice": [1, 4]}}},
        )
    )
    checked = _check_space(spec, 1000)
    assert checked.most_cpus == 4  # a local Ray is sized for the largest trial
    three_gpus = Placement(True, [NodeShape("a10", 8, 1, 3)], 1)
    with pytest.raises(UserError) as caught:
        checked.check_fits(three_gpus)
    assert caught.value.problems == [
        'sweep.space."scaling.num_workers" value 4: a trial needs 4 workers of 1 CPU, 1 GPU at '
        "once, but the cluster holds at most 3 such workers (3 × a10 (8 CPU, 1 GPU)); expected "
        "scaling.num_workers <= 3, smaller workers, or more nodes (cluster.node_groups)"
    ]
    checked.check_fits(Placement(True, [NodeShape("a10", 8, 1, 4)], 1))  # four fit


def test_trials_skip_their_own_memory_check_only_when_the_pre_flight_covered_every_point() -> None:
    """Memory grows with each numeric key and choices are corners: when every joint corner
    was checked against a known memory (a local Ray: this host), samples need no check."""
    small = validate_spec(minimal_spec(sweep={"space": SPACE}))
    assert _check_space(small, 1000).every_point_fits
    # Over MAX_CHECKED_COMBINATIONS (4096) corners: each trial checks its own sample.
    six = [1, 2, 3, 4, 5, 6]
    wide = SPACE | {
        "train.weight_decay": {"choice": [0.0, 0.01, 0.1, 0.2, 0.3, 0.4]},
        "train.max_grad_norm": {"choice": [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]},
        "train.gradient_accumulation_steps": {"choice": six},
        "train.epochs": {"choice": [1, 2]},
    }  # 2^4 x 6^3 x 2 = 6912 corners
    large = validate_spec(minimal_spec(sweep={"space": wide}))
    assert not _check_space(large, 1000).every_point_fits
    # A remote cluster with no declared node groups: its memory is unknown here.
    remote = validate_spec(
        minimal_spec(cluster={"address": "ray://10.0.0.1:10001"}, sweep={"space": SPACE})
    )
    assert not _check_space(remote, 1000).every_point_fits
