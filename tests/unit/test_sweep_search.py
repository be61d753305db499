"""Issue 9 items 1-3: the space's distributions and conditions, the searcher registry, the
schedulers and their time unit. Searchers run here without Ray: they only suggest."""

from __future__ import annotations

import math

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.spec.sweep_sections import LIBRARY_STARTUP_TRIALS
from raytune_ft.sweep.registry import make_scheduler, make_searcher, startup_line
from raytune_ft.sweep.runner import _check_space
from raytune_ft.sweep.space import param_space, trial_params, trial_spec

CONDITIONAL = {
    "peft.method": {"choice": ["lora", "none"]},
    "peft.r": {"logint": [4, 64], "when": {"peft.method": "lora"}},
    "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
}


def sweep_spec(space: dict, **sweep) -> object:
    return validate_spec(minimal_spec(sweep={"space": space, **sweep}))


def suggestions(spec, n: int) -> list[dict]:
    searcher = make_searcher(spec, n).algorithm
    if not make_searcher(spec, n).has_own_space:
        searcher.set_search_properties(spec.metric, spec.metric_mode, param_space(spec.sweep))
    out = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        out.append(config)
        searcher.on_trial_complete(f"t{i}", {spec.metric: 0.5 + i / 100})
    return out


def test_new_distributions_sample_within_their_bounds() -> None:
    spec = sweep_spec(
        {
            "train.warmup_ratio": {"quniform": [0.0, 0.2, 0.05]},
            "peft.r": {"logint": [2, 64]},
        }
    )
    space = param_space(spec.sweep)
    seen = set()
    for _ in range(2000):
        warmup, r = space["train.warmup_ratio"].sample(), space["peft.r"].sample()
        assert 0.0 <= warmup <= 0.2 and math.isclose(warmup / 0.05, round(warmup / 0.05))
        assert isinstance(r, int) and 2 <= r <= 64
        seen.add(r)
    assert max(seen) >= 60  # the upper bound is inclusive (and reachable)
    assert {2, 3, 4, 5} <= seen  # log scale: small ranks are common


def test_optuna_asks_for_a_conditional_key_only_when_its_condition_holds() -> None:
    spec = sweep_spec(CONDITIONAL, search={"algorithm": "optuna", "seed": 3})
    assert make_searcher(spec, 1).has_own_space
    configs = suggestions(spec, 12)
    methods = {c["peft.method"] for c in configs}
    assert methods == {"lora", "none"}
    for config in configs:
        assert ("peft.r" in config) is (config["peft.method"] == "lora"), config
        if "peft.r" in config:
            assert 4 <= config["peft.r"] <= 64
    base = spec.model_dump(mode="json")
    none = next(c for c in configs if c["peft.method"] == "none")
    assert "peft.r" not in trial_params(spec.sweep, base, none)


def test_random_search_drops_a_conditional_key_whose_condition_fails() -> None:
    spec = sweep_spec(CONDITIONAL, search={"algorithm": "random", "seed": 1})
    base = spec.model_dump(mode="json")
    params = trial_params(spec.sweep, base, {"peft.method": "none", "peft.r": 32})
    assert params == {"peft.method": "none"}
    trial = validate_spec(trial_spec(base, {"peft.method": "lora", "peft.r": 32}))
    assert (trial.peft.method, trial.peft.r) == ("lora", 32)


def test_a_choice_of_whole_sections_replaces_the_section() -> None:
    spec = sweep_spec(
        {
            "peft": {"choice": [{"method": "lora", "r": 4, "alpha": 8}, {"method": "none"}]},
            "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
        },
        search={"algorithm": "optuna", "seed": 0},
    )
    configs = suggestions(spec, 6)
    assert {c["peft"] for c in configs} <= {0, 1}  # Optuna sees an index per section
    base = spec.model_dump(mode="json")
    lora = validate_spec(trial_spec(base, {"peft": 0, "train.learning_rate": 1e-4}))
    assert (lora.peft.method, lora.peft.r, lora.peft.alpha) == ("lora", 4, 8)
    plain = validate_spec(trial_spec(base, {"peft": 1, "train.learning_rate": 1e-4}))
    assert plain.peft.method == "none"
    assert _check_space(spec, 1000).max_t >= 1  # both sections pass the pre-flight


def test_grid_runs_every_combination_once_and_points_come_first() -> None:
    from ray.tune.search.variant_generator import generate_variants

    spec = sweep_spec(
        {
            "train.learning_rate": {"choice": [1e-4, 3e-4]},
            "train.micro_batch_size": {"grid": [8, 16, 32]},
        },
        search={"algorithm": "grid"},
        points_to_evaluate=[{"train.learning_rate": 3e-4, "train.micro_batch_size": 16}],
    )
    assert spec.sweep.samples == 1 and spec.sweep.total_trials == 6
    variants = [v for _, v in generate_variants(param_space(spec.sweep))]
    pairs = {(v["train.learning_rate"], v["train.micro_batch_size"]) for v in variants}
    assert len(variants) == 6 and len(pairs) == 6
    generator = make_searcher(spec, 6).algorithm
    assert generator._points_to_evaluate == [
        {"train.learning_rate": 3e-4, "train.micro_batch_size": 16}
    ]


def test_points_to_evaluate_reach_optuna_first() -> None:
    point = {"peft.method": "lora", "peft.r": 16, "train.learning_rate": 2e-4}
    spec = sweep_spec(
        CONDITIONAL, search={"algorithm": "optuna", "seed": 5}, points_to_evaluate=[point]
    )
    first = suggestions(spec, 1)[0]
    assert first == point


def test_searchers_are_seeded() -> None:
    space = {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}, "peft.r": {"int": [2, 32]}}
    a = suggestions(sweep_spec(space, search={"algorithm": "optuna", "seed": 11}), 5)
    b = suggestions(sweep_spec(space, search={"algorithm": "optuna", "seed": 11}), 5)
    c = suggestions(sweep_spec(space, search={"algorithm": "optuna", "seed": 12}), 5)
    assert a == b and a != c

    def first_draws(seed: int) -> list[float]:  # what the random generator samples with
        spec = sweep_spec(space, search={"algorithm": "random", "seed": seed})
        return list(make_searcher(spec, 1).algorithm._random_state.rng.random(3))

    assert first_draws(11) == first_draws(11) != first_draws(12)


def test_multivariate_tpe_is_passed_to_optuna() -> None:
    spec = sweep_spec(CONDITIONAL, search={"algorithm": "optuna"})
    sampler = make_searcher(spec, 1).algorithm.searcher._sampler
    assert sampler._multivariate and sampler._group  # the default; conditional keys: grouped
    spec = sweep_spec(CONDITIONAL, search={"algorithm": "optuna", "multivariate": False})
    sampler = make_searcher(spec, 1).algorithm.searcher._sampler
    assert sampler._multivariate is False and not sampler._group


LR_SPACE = {"train.learning_rate": {"loguniform": [1e-5, 1e-1]}}


def test_start_up_trials_reach_optuna_and_hyperopt_and_only_them() -> None:
    optuna = sweep_spec(LR_SPACE, search={"algorithm": "optuna", "startup_trials": 3})
    assert make_searcher(optuna, 1).algorithm.searcher._sampler._n_startup_trials == 3
    hyperopt = sweep_spec(LR_SPACE, search={"algorithm": "hyperopt", "startup_trials": 4})
    assert make_searcher(hyperopt, 1).algorithm.searcher.algo.keywords["n_startup_jobs"] == 4
    with pytest.raises(UserError, match=r"startup_trials: for algorithm optuna or hyperopt"):
        sweep_spec(LR_SPACE, search={"algorithm": "random", "startup_trials": 3})


@pytest.mark.parametrize(
    ("algorithm", "num_samples", "startup"),
    [
        ("optuna", 6, 2),  # the quickstart: modelled, not random to its end
        ("optuna", 16, 4),
        ("optuna", 200, 10),  # Optuna's own
        ("hyperopt", 8, 2),
        ("hyperopt", 200, 20),  # HyperOpt's own
    ],
)
def test_unset_start_up_is_a_quarter_of_the_sweep_within_the_librarys_own(
    algorithm: str, num_samples: int, startup: int
) -> None:
    spec = sweep_spec(LR_SPACE, num_samples=num_samples, search={"algorithm": algorithm})
    searcher = make_searcher(spec, 1).algorithm.searcher
    if algorithm == "optuna":
        assert searcher._sampler._n_startup_trials == startup
        assert startup_line(spec, num_samples) == (
            f"sweep: optuna TPE draws at random until {startup} of {num_samples} trials have "
            "ended, then models the results (sweep.search.startup_trials)"
        )
    else:
        assert searcher.algo.keywords["n_startup_jobs"] == startup
        assert startup_line(spec, num_samples) == (
            f"sweep: hyperopt TPE draws its first {startup} of {num_samples} trials at "
            "random, then models the results (sweep.search.startup_trials)"
        )


def test_the_library_defaults_the_start_up_is_capped_at_are_the_libraries_own() -> None:
    import inspect

    import optuna
    from ray.tune.search.hyperopt import HyperOptSearch

    optuna_default = inspect.signature(optuna.samplers.TPESampler).parameters["n_startup_trials"]
    hyperopt_default = inspect.signature(HyperOptSearch).parameters["n_initial_points"]
    assert {
        "optuna": optuna_default.default,
        "hyperopt": hyperopt_default.default,
    } == LIBRARY_STARTUP_TRIALS


def test_searchers_without_a_start_up_get_none_and_say_nothing() -> None:
    for search, scheduler in [("random", "fifo"), ("grid", "fifo"), ("bohb", "hyperband")]:
        space = {"train.learning_rate": {"choice": [1e-4, 1e-3]}}
        spec = sweep_spec(space, search={"algorithm": search}, scheduler={"name": scheduler})
        assert spec.sweep.tpe_startup_trials is None and startup_line(spec, 8) is None


def test_given_points_count_in_the_start_up_and_the_random_draws_stay_a_quarter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Optuna counts an enqueued point in its start-up: with one point and 8 trials the
    start-up is 3, and TPE draws exactly 2 trials at random (a quarter of 8)."""
    import optuna

    points = [{"train.learning_rate": 1e-3}]
    spec = sweep_spec(LR_SPACE, num_samples=8, points_to_evaluate=points, search={"seed": 0})
    assert spec.sweep.tpe_startup_trials == 3
    assert startup_line(spec, 8) == (
        "sweep: optuna TPE draws at random until 3 of 8 trials have ended, counting the 1 "
        "given in points_to_evaluate, then models the results (sweep.search.startup_trials)"
    )
    random_draws = []
    draw = optuna.samplers.RandomSampler.sample_independent

    def counted(sampler: object, study: object, trial: object, name: str, dist: object) -> object:
        random_draws.append(trial.number)
        return draw(sampler, study, trial, name, dist)

    monkeypatch.setattr(optuna.samplers.RandomSampler, "sample_independent", counted)
    searcher = make_searcher(spec, 1).algorithm
    searcher.set_search_properties(spec.metric, spec.metric_mode, param_space(spec.sweep))
    lrs = []
    for i in range(8):
        lrs.append(searcher.suggest(f"t{i}")["train.learning_rate"])
        searcher.on_trial_complete(f"t{i}", {spec.metric: -abs(math.log10(lrs[-1]) + 3)})
    assert lrs[0] == 1e-3  # the given point
    assert random_draws == [1, 2]  # then 2 random draws; the other 5 are TPE's


def test_a_sweep_that_never_gets_past_its_start_up_says_so() -> None:
    spec = sweep_spec(LR_SPACE, num_samples=6, search={"algorithm": "optuna", "startup_trials": 10})
    assert startup_line(spec, 6) == (
        "sweep: optuna TPE never models the results: its start-up of 10 trials covers all 6 "
        "(sweep.search.startup_trials)"
    )


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (
            {"space": {"train.learning_rate": {"grid": [1e-4, 1e-3]}}},
            'sweep: space."train.learning_rate": grid needs search.algorithm random or grid, '
            "not optuna (use choice)",
        ),
        (
            {
                "space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}},
                "search": {"algorithm": "grid"},
            },
            'sweep: space."train.learning_rate": search grid takes choice or grid values, '
            "not loguniform",
        ),
        (
            {"space": {"peft.r": {"int": [4, 8], "when": {"peft.methd": "lora"}}}},
            'sweep: space."peft.r".when."peft.methd": no spec field \'methd\' there; expected '
            "a dotted path such as train.learning_rate",
        ),
        (
            {
                "space": {
                    "peft.method": {"choice": ["lora", "none"]},
                    "peft.r": {"int": [4, 8], "when": {"peft.method": "lorax"}},
                }
            },
            'sweep: space."peft.r".when."peft.method": \'lorax\' is not one of its values '
            "['lora', 'none']",
        ),
        (
            {
                "space": {
                    "peft.alpha": {"choice": [8, 16], "when": {"peft.r": 4}},
                    "peft.r": {"choice": [4, 8], "when": {"peft.alpha": 8}},
                }
            },
            'sweep: space."peft.alpha": its when-conditions form a cycle',
        ),
        (
            {
                "space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}},
                "points_to_evaluate": [{"train.learning_rate": 0.1}],
            },
            'sweep: points_to_evaluate[0]."train.learning_rate": 0.1 is outside its distribution',
        ),
        (
            {
                "space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}},
                "search": {"algorithm": "bohb"},
            },
            "sweep: scheduler.name: search bohb needs scheduler hyperband (BOHB's own), not asha",
        ),
        (
            {
                "space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}},
                "search": {"algorithm": "random", "multivariate": True},
            },
            "sweep.search: multivariate: for algorithm optuna only, not random",
        ),
        (
            {"space": {"train.warmup_ratio": {"quniform": [0.0, 0.2, 0.03]}}},
            'sweep.space."train.warmup_ratio".quniform: quniform [0.0, 0.2, 0.03]: expected high - low '
            "to be a multiple of q",
        ),
    ],
)
def test_bad_sweeps_are_refused_with_the_field_named(sweep: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        validate_spec(minimal_spec(sweep=sweep))
    assert info.value.problems == [message]


@pytest.mark.parametrize(
    ("unit", "expected"),
    # 640 rows, micro-batch 8 or 32, 2 epochs, eval every 5 steps, max_length from minimal_spec
    [("evaluations", 32), ("steps", 160), ("epochs", 2.0)],
)
def test_max_t_in_the_time_unit_covers_the_longest_joint_combination(
    unit: str, expected: float
) -> None:
    spec = validate_spec(
        minimal_spec(
            train={"micro_batch_size": 32, "epochs": 2, "eval_every": 5},
            sweep={
                "space": {
                    "train.micro_batch_size": {"choice": [8, 32]},
                    "train.epochs": {"choice": [1, 2]},
                },
                "scheduler": {"name": "asha", "time_unit": unit},
            },
        )
    )
    assert _check_space(spec, 640).max_t == expected
    scheduler = make_scheduler(spec, expected)
    assert (
        scheduler._time_attr
        == {"evaluations": "training_iteration", "steps": "step", "epochs": "epoch"}[unit]
    )
    assert scheduler._max_t == expected


def test_tokens_budget_is_an_upper_bound_of_the_tokens_fed() -> None:
    spec = validate_spec(
        minimal_spec(
            train={"micro_batch_size": 8, "epochs": 1},
            sweep={
                "space": {"train.micro_batch_size": {"choice": [8, 16]}},
                "scheduler": {"name": "asha", "time_unit": "tokens", "grace_period": 1000},
            },
        )
    )
    # 640 rows: 80 steps of 8 (or 40 of 16) sequences of at most max_length tokens
    assert _check_space(spec, 640).max_t == 640 * spec.data.max_length


def test_each_scheduler_is_built_in_its_time_unit() -> None:
    def scheduler(name: str, **extra):
        spec = validate_spec(
            minimal_spec(
                sweep={
                    "space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}},
                    "scheduler": {"name": name, "time_unit": "steps", **extra},
                    **({"search": {"algorithm": "random"}} if name == "fifo" else {}),
                }
            )
        )
        return make_scheduler(spec, 100)

    hyperband = scheduler("hyperband", reduction_factor=3)
    assert type(hyperband).__name__ == "HyperBandScheduler"
    assert (hyperband._time_attr, hyperband._max_t_attr, hyperband._eta) == ("step", 100, 3)
    median = scheduler("median", grace_period=20)
    assert type(median).__name__ == "MedianStoppingRule"
    assert (median._time_attr, median._grace_period) == ("step", 20)
    assert type(scheduler("fifo")).__name__ == "FIFOScheduler"


def test_bohb_pairs_with_its_own_hyperband_or_names_the_missing_package() -> None:
    spec = validate_spec(
        minimal_spec(
            sweep={
                "space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}},
                "search": {"algorithm": "bohb"},
                "scheduler": {"name": "hyperband"},
            }
        )
    )
    assert type(make_scheduler(spec, 9)).__name__ == "HyperBandForBOHB"
    try:
        import hpbandster  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="bohb needs the hpbandster and ConfigSpace package"):
            make_searcher(spec, 1)
        return
    assert type(make_searcher(spec, 1).algorithm.searcher).__name__ == "TuneBOHB"


@pytest.mark.parametrize("algorithm", ["hyperopt", "bohb"])
def test_hyperopt_and_bohb_suggest_seeded_points_within_the_space(algorithm: str) -> None:
    pytest.importorskip({"hyperopt": "hyperopt", "bohb": "hpbandster"}[algorithm])
    space = {
        "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
        "peft.r": {"logint": [2, 32]},
        "train.micro_batch_size": {"choice": [8, 16]},
    }
    point = {"train.learning_rate": 2e-4, "peft.r": 8, "train.micro_batch_size": 16}
    scheduler = {"scheduler": {"name": "hyperband"}} if algorithm == "bohb" else {}

    def run(seed: int) -> list[dict]:
        spec = sweep_spec(
            space,
            search={"algorithm": algorithm, "seed": seed},
            points_to_evaluate=[point],
            **scheduler,
        )
        return suggestions(spec, 6)

    first = run(4)
    assert first[0] == point  # the known configuration first
    for config in first:
        assert 1e-5 <= config["train.learning_rate"] <= 1e-3
        assert 2 <= config["peft.r"] <= 32 and config["train.micro_batch_size"] in (8, 16)
    assert run(4) == first and run(5) != first


def population_spec(name: str, space: dict | None = None, **extra) -> object:
    return validate_spec(
        minimal_spec(
            sweep={
                "space": space
                or {
                    "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
                    "train.weight_decay": {"uniform": [0.0, 0.1]},
                    "peft.r": {"choice": [4, 8]},
                },
                "search": {"algorithm": "random"},
                "scheduler": {"name": name, "perturbation_interval": 2, **extra},
            }
        )
    )


def test_pbt_and_pb2_perturb_only_what_a_running_trial_can_change() -> None:
    pbt = make_scheduler(population_spec("pbt", quantile_fraction=0.5), 10)
    assert type(pbt).__name__ == "PopulationBasedTraining"
    assert set(pbt._hyperparam_mutations) == {"train.learning_rate", "train.weight_decay"}
    assert (pbt._perturbation_interval, pbt._quantile_fraction) == (2, 0.5)
    assert pbt._time_attr == "training_iteration"
    pb2 = make_scheduler(population_spec("pb2"), 10)
    assert type(pb2).__name__ == "PB2"
    assert pb2._hyperparam_bounds == {
        "train.learning_rate": [1e-5, 1e-3],
        "train.weight_decay": [0.0, 0.1],
    }


def test_population_trials_checkpoint_at_every_evaluation_and_keep_fresh_processes() -> None:
    from raytune_ft.sweep.tuner import reuse_trial_processes as _reuse_trial_processes

    spec = population_spec("pbt")
    base = spec.model_dump(mode="json")
    trial = validate_spec(trial_spec(base, {"train.learning_rate": 1e-4, "peft.r": 4}))
    assert trial.train.checkpoint.every_evals == 1  # each perturbation round has a checkpoint
    assert not _reuse_trial_processes(spec)
    hyperband = validate_spec(
        minimal_spec(sweep={"space": CONDITIONAL, "scheduler": {"name": "hyperband"}})
    )
    paused = validate_spec(trial_spec(hyperband.model_dump(mode="json"), {}))
    assert paused.train.checkpoint.every_evals == 1  # a paused trial resumes from it
    asha = validate_spec(minimal_spec(sweep={"space": CONDITIONAL}))
    assert _reuse_trial_processes(asha)
    assert validate_spec(trial_spec(asha.model_dump(mode="json"), {})).train.checkpoint == (
        asha.train.checkpoint
    )


@pytest.mark.parametrize(
    ("sweep", "extra", "message"),
    [
        (
            {"scheduler": {"name": "pbt"}},
            {},
            "sweep: search.algorithm: scheduler pbt picks its own values; expected random (its "
            "first population), not optuna",
        ),
        (
            {
                "space": {"peft.r": {"choice": [4, 8]}},
                "search": {"algorithm": "random"},
                "scheduler": {"name": "pbt"},
            },
            {},
            "sweep: space: scheduler pbt needs one of train.learning_rate, train.weight_decay, "
            "train.max_grad_norm in the space (the values a running trial can change)",
        ),
        (
            {
                "space": {"train.learning_rate": {"choice": [1e-4, 1e-3]}},
                "search": {"algorithm": "random"},
                "scheduler": {"name": "pb2"},
            },
            {},
            'sweep: space."train.learning_rate": pb2 takes continuous ranges (loguniform, '
            "uniform, quniform), not choice",
        ),
        (
            {"search": {"algorithm": "random"}, "scheduler": {"name": "pb2"}},
            {"scaling": {"num_workers": 2}},
            "sweep.scheduler.name: pb2 needs one-worker trials (scaling.num_workers: 1, not in "
            "the space); use asha or hyperband for multi-worker trials",
        ),
    ],
)
def test_population_sweeps_that_cannot_work_are_refused(
    sweep: dict, extra: dict, message: str
) -> None:
    sweep = {"space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}} | sweep
    with pytest.raises(UserError) as info:
        validate_spec(minimal_spec(sweep=sweep, **extra))
    assert info.value.problems == [message]


def test_values_a_searcher_returns_off_the_grid_are_put_back_on_it() -> None:
    import numpy as np

    spec = sweep_spec(
        {
            "train.warmup_ratio": {"quniform": [0.0, 0.2, 0.05]},
            "peft.r": {"logint": [2, 64]},
            "peft.alpha": {"choice": [8, 16]},
        }
    )
    params = trial_params(
        spec.sweep,
        spec.model_dump(mode="json"),
        {"train.warmup_ratio": 0.0731, "peft.r": np.float64(7.6), "peft.alpha": np.int64(16)},
    )
    assert params == {"train.warmup_ratio": pytest.approx(0.05), "peft.r": 8, "peft.alpha": 16}
    assert type(params["peft.r"]) is int and type(params["peft.alpha"]) is int


def test_tpe_follows_the_results_it_was_given() -> None:
    """Seeded TPE fed opposite rewards moves opposite ways (random search would not move)."""
    import statistics

    def later_suggestions(reward_low_lr: bool, **search: object) -> list[float]:
        spec = sweep_spec(
            {"train.learning_rate": {"loguniform": [1e-5, 1e-1]}},
            search={"algorithm": "optuna", "seed": 0, **search},
        )
        searcher = make_searcher(spec, 1).algorithm
        searcher.set_search_properties(spec.metric, spec.metric_mode, param_space(spec.sweep))
        lrs = []
        for i in range(30):
            lr = searcher.suggest(f"t{i}")["train.learning_rate"]
            lrs.append(lr)
            score = -math.log10(lr) if reward_low_lr else math.log10(lr)
            searcher.on_trial_complete(f"t{i}", {spec.metric: score})
        return lrs

    low, high = (
        later_suggestions(True, startup_trials=10),
        later_suggestions(False, startup_trials=10),
    )
    # After TPE's 10 random start-up trials (Optuna's own), and some model-guided ones:
    assert statistics.median(low[15:]) < 1e-4 < 1e-2 < statistics.median(high[15:])
    # Suggestions 4 to 9 are still the seeded random start-up, whatever the rewards...
    assert low[4:10] == high[4:10]
    # ... unless the start-up is 3 trials: then the rewards already steer them.
    low3, high3 = (
        later_suggestions(True, startup_trials=3),
        later_suggestions(False, startup_trials=3),
    )
    assert statistics.median(low3[4:10]) < statistics.median(high3[4:10])
