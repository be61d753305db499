"""The `sweep:` section: the search space, the searcher, the scheduler."""

from __future__ import annotations

import builtins
import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, Discriminator, Field, Tag, model_validator

from raytune_ft.spec.sections import Section, field_type

Scalar = bool | int | float | str | None
Condition = Scalar | list[Scalar]


class _Distribution(Section):
    when: dict[str, Condition] | None = Field(
        None,
        description="Sample this key only when each named key (another space key, or a spec "
        "field) has this value (or one of these values); otherwise the spec's own value stays.",
    )

    @property
    def values(self) -> list[Any] | None:
        """The finite values it takes (choice, grid), or None for a range."""
        return None

    @property
    def corners(self) -> list[Any]:
        """What the pre-flight checks try: every value, or a range's two ends."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        raise NotImplementedError


class LogUniform(_Distribution):
    loguniform: tuple[float, float]

    @model_validator(mode="after")
    def _ordered_positive(self) -> LogUniform:
        low, high = self.loguniform
        if not 0 < low < high:
            raise ValueError(f"loguniform [{low:g}, {high:g}]: expected 0 < low < high")
        return self

    @property
    def corners(self) -> list[Any]:
        return list(self.loguniform)

    def contains(self, value: Any) -> bool:
        return _number(value) and self.loguniform[0] <= value <= self.loguniform[1]


class Uniform(_Distribution):
    uniform: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.uniform[0] < self.uniform[1]:
            raise ValueError(f"uniform {list(self.uniform)}: expected low < high")
        return self

    @property
    def corners(self) -> list[Any]:
        return list(self.uniform)

    def contains(self, value: Any) -> bool:
        return _number(value) and self.uniform[0] <= value <= self.uniform[1]


class QUniform(_Distribution):
    quniform: tuple[float, float, float] = Field(
        description="[low, high, q]: uniform, rounded to a multiple of q."
    )

    @model_validator(mode="after")
    def _ordered(self) -> QUniform:
        low, high, q = self.quniform
        if not (low < high and q > 0):
            raise ValueError(f"quniform {list(self.quniform)}: expected low < high and q > 0")
        if not _multiple(high - low, q):
            raise ValueError(
                f"quniform {list(self.quniform)}: expected high - low to be a multiple of q"
            )
        return self

    @property
    def corners(self) -> list[Any]:
        return list(self.quniform[:2])

    def contains(self, value: Any) -> bool:
        low, high, q = self.quniform
        return _number(value) and low <= value <= high and _multiple(value, q)


class IntRange(_Distribution):
    int: tuple[builtins.int, builtins.int] = Field(
        description="Inclusive integer range [low, high]."
    )

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if not self.int[0] <= self.int[1]:
            raise ValueError(f"int {list(self.int)}: expected low <= high")
        return self

    @property
    def corners(self) -> list[Any]:
        return list(self.int)

    def contains(self, value: Any) -> bool:
        return _integer(value) and self.int[0] <= value <= self.int[1]


class LogInt(_Distribution):
    logint: tuple[builtins.int, builtins.int] = Field(
        description="Inclusive integer range [low, high], sampled on a log scale (LoRA ranks)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> LogInt:
        if not 1 <= self.logint[0] < self.logint[1]:
            raise ValueError(f"logint {list(self.logint)}: expected 1 <= low < high")
        return self

    @property
    def corners(self) -> list[Any]:
        return list(self.logint)

    def contains(self, value: Any) -> bool:
        return _integer(value) and self.logint[0] <= value <= self.logint[1]


Value = Scalar | dict[str, Any]


class _Values(_Distribution):
    """A finite list of values (choice, grid), held in the field `_field` names."""

    _field: ClassVar[str]

    @property
    def values(self) -> list[Any]:
        return list(getattr(self, self._field))

    @property
    def corners(self) -> list[Any]:
        return self.values

    def contains(self, value: Any) -> bool:
        return value in getattr(self, self._field)


class Choice(_Values):
    _field = "choice"
    choice: list[Value] = Field(
        min_length=1,
        description="Values to pick from; a mapping replaces the whole section the key names "
        "(e.g. peft: {choice: [{method: lora, r: 8}, {method: none}]}).",
    )


class Grid(_Values):
    _field = "grid"
    grid: list[Value] = Field(
        min_length=1,
        description="Every value, each in its own trial (times num_samples); needs "
        "search.algorithm random or grid.",
    )


KINDS = ("loguniform", "uniform", "quniform", "int", "logint", "choice", "grid")
CONTINUOUS = ("loguniform", "uniform", "quniform")


def kind_of(value: object) -> str | None:
    if isinstance(value, BaseModel):
        return next(k for k in KINDS if k in type(value).model_fields)
    if isinstance(value, dict):
        return next((k for k in KINDS if k in value), None)
    return None


Distribution = Annotated[
    Annotated[LogUniform, Tag("loguniform")]
    | Annotated[Uniform, Tag("uniform")]
    | Annotated[QUniform, Tag("quniform")]
    | Annotated[IntRange, Tag("int")]
    | Annotated[LogInt, Tag("logint")]
    | Annotated[Choice, Tag("choice")]
    | Annotated[Grid, Tag("grid")],
    Discriminator(
        kind_of,
        custom_error_type="distribution",
        custom_error_message="expected one of {loguniform: [lo, hi]}, {uniform: [lo, hi]}, "
        "{quniform: [lo, hi, q]}, {int: [lo, hi]}, {logint: [lo, hi]}, {choice: [...]}, "
        "{grid: [...]} (each may add when: {KEY: VALUE})",
    ),
]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _multiple(value: float, q: float) -> bool:
    ratio = value / q
    return math.isclose(ratio, round(ratio), abs_tol=1e-9)


def names_a_spec_field(key: str) -> str:
    """A dotted path to a real field of the spec, outside `sweep` (checked against the schema)."""
    from raytune_ft.spec.experiment import ExperimentSpec

    node: Any = ExperimentSpec
    for part in key.split("."):
        node = field_type(node, part)
        if node is None:
            raise ValueError(
                f"no spec field {part!r} there; expected a dotted path such as train.learning_rate"
            )
    if key.split(".")[0] == "sweep":
        raise ValueError("a sweep cannot search its own settings; expected a field outside sweep")
    return key


SpaceKey = Annotated[str, AfterValidator(names_a_spec_field)]


class SearchSpec(Section):
    algorithm: Literal["optuna", "hyperopt", "bohb", "random", "grid"] = Field(
        "optuna",
        description="optuna: TPE (Bayesian, conditional spaces native); hyperopt: TPE; bohb: "
        "Bayesian optimisation + HyperBand (needs scheduler hyperband); random; grid: every "
        "combination of choice/grid values.",
    )
    seed: int | None = Field(None, description="Searcher seed; null uses the experiment seed.")
    multivariate: bool | None = Field(
        None,
        description="optuna only: true (what null means too, Optuna's own default for one "
        "objective) models the keys jointly; false: each key on its own.",
    )

    startup_trials: int | None = Field(
        None,
        ge=1,
        le=10000,
        description="optuna and hyperopt: the start-up trials, points_to_evaluate included, "
        "that TPE draws at random before it models the results (Optuna counts the trials that "
        "have ended, HyperOpt those it has drawn). null: the points_to_evaluate plus a quarter "
        "of sweep.num_samples, at least 2 and at most the library's own (Optuna 10, HyperOpt "
        "20), so that a small sweep is modelled at all. An extension's restored searcher keeps "
        "the start-up it began with.",
    )

    @model_validator(mode="after")
    def _optuna_only(self) -> SearchSpec:
        if self.multivariate is not None and self.algorithm != "optuna":
            raise ValueError(f"multivariate: for algorithm optuna only, not {self.algorithm}")
        if self.startup_trials is not None and self.algorithm not in ("optuna", "hyperopt"):
            raise ValueError(
                f"startup_trials: for algorithm optuna or hyperopt only, not {self.algorithm}"
            )
        return self

    @property
    def tpe_multivariate(self) -> bool:
        return self.multivariate is not False


# What Optuna's TPESampler and HyperOpt's TPE sample at random before modelling, by default.
LIBRARY_STARTUP_TRIALS = {"optuna": 10, "hyperopt": 20}


# What a running trial can change when PBT/PB2 hands it another trial's checkpoint: the loop
# re-applies these after every restore (the rest of a trial's config travels with the checkpoint).
MUTABLE_MID_RUN = ("train.learning_rate", "train.weight_decay", "train.max_grad_norm")
POPULATION_SCHEDULERS = ("pbt", "pb2")


class SchedulerSpec(Section):
    name: Literal["asha", "hyperband", "median", "pbt", "pb2", "fifo"] = Field(
        "asha",
        description="asha: asynchronous successive halving; hyperband (BOHB's own with search "
        "bohb); median: stop a trial below the median of the others at the same time; pbt / "
        "pb2: population-based training (a lagging trial continues from a leader's checkpoint "
        "with perturbed values; pb2 picks them with a GP bandit); fifo: no early stopping.",
    )
    time_unit: Literal["evaluations", "steps", "epochs", "tokens"] = Field(
        "evaluations",
        description="What grace_period, perturbation_interval and the schedule count: "
        "evaluations, optimizer steps, epochs or training tokens.",
    )
    grace_period: float = Field(
        1, gt=0, description="Time (in time_unit) every trial gets before it can be stopped."
    )
    reduction_factor: float = Field(
        2.0, gt=1, description="asha / hyperband: keep 1/reduction_factor at each rung."
    )
    perturbation_interval: float = Field(
        1,
        gt=0,
        description="pbt / pb2: time (in time_unit) between exploit-and-explore rounds; trials "
        "save a checkpoint at every evaluation so each round has one.",
    )
    quantile_fraction: float = Field(
        0.25, ge=0, le=0.5, description="pbt / pb2: the bottom fraction that copies the top."
    )
    resample_probability: float = Field(
        0.25, ge=0, le=1, description="pbt: chance a value is resampled instead of perturbed."
    )
    synch: bool = Field(
        False,
        description="pbt / pb2: perturb only once every trial has reached the interval (trials "
        "that get there first wait, paused): the same rounds whatever order trials start in.",
    )

    @model_validator(mode="after")
    def _population_only(self) -> SchedulerSpec:
        if self.synch and not self.is_population:
            raise ValueError(f"synch: for scheduler pbt or pb2 only, not {self.name}")
        return self

    @property
    def is_population(self) -> bool:
        return self.name in POPULATION_SCHEDULERS

    @property
    def pauses_trials(self) -> bool:
        """HyperBand pauses trials and PBT/PB2 restart them: each resumes from its latest
        checkpoint, so trials must save one at every evaluation."""
        return self.name == "hyperband" or self.is_population


class TrackersSpec(Section):
    """Where trial results go beside the sweep folder (Ray Tune's logger callbacks, on the
    driver). TensorBoard event files are always written, under RUN/ray-tune/<trial>/."""

    mlflow: bool = Field(False, description="One MLflow run per trial: its params and metrics.")
    mlflow_tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="null: a SQLite store in the sweep folder (RUN/mlflow.db); or any MLflow "
        "tracking URI (http://..., file:///..., databricks).",
    )
    wandb: bool = Field(False, description="One Weights & Biases run per trial.")
    wandb_project: str | None = Field(None, min_length=1, description="null: the spec's name.")
    wandb_mode: Literal["offline", "online"] = Field(
        "offline", description="offline: runs kept in RUN/wandb for `wandb sync` later."
    )


class ErroredTrialsSpec(Section):
    """What happens to a trial that raised (out-of-memory errors go to `oom_retries` first)."""

    retries: int = Field(
        0,
        ge=0,
        le=100,
        description="Start an errored trial again from its last checkpoint, up to this many "
        "times within the sweep (a one-worker trial also gets scaling.max_failures).",
    )
    on_resume: Literal["resume", "restart", "skip"] = Field(
        "resume",
        description="On `tune --resume`, trials that had errored: go on from their last "
        "checkpoint, start again from scratch, or stay errored.",
    )


class RetainSpec(Section):
    """What an ended trial (finished, or stopped by the scheduler) keeps on storage beyond its
    logs and spec. A sweep of a large model otherwise keeps every trial's exports (each the
    model's size; a LoRA adapter's) and its last resume checkpoint (with optimizer
    state, several times the model's size) long after no one can use them. A trial's files
    are deleted only once the sweep's saved state records it as ended (so `--resume` never
    needs them) and once `exports` (or `checkpoints`) ended trials rank strictly above it by
    the sweep's metric (so the best trial keeps its own); each such trial's `retention.json`
    says what went. Errored and paused trials keep everything."""

    exports: int | None = Field(
        3,
        ge=1,
        description="The best N ended trials keep their exports (best-model, and final-model "
        "if asked); null: every trial.",
    )
    checkpoints: int | None = Field(
        0,
        ge=0,
        description="The best N ended trials keep their resume checkpoints (to train one "
        "further); 0: none is kept (an ended trial never resumes); null: every trial.",
    )


class SweepSpec(Section):
    num_samples: int = Field(
        8, ge=1, le=100000, description="Trials to run (with grid keys: times the grid's size)."
    )
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="null: as many as the cluster's CPUs/GPUs fit."
    )
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    space: dict[SpaceKey, Distribution] = Field(
        min_length=1, description="Dotted spec field -> distribution, e.g. train.learning_rate."
    )
    oom_retries: int = Field(
        2,
        ge=0,
        le=8,
        description="On out-of-memory, a trial tries again with half the micro-batch and twice "
        "the gradient accumulation (the same global batch), up to this many times.",
    )
    errored_trials: ErroredTrialsSpec = ErroredTrialsSpec()
    trackers: TrackersSpec = TrackersSpec()
    retain: RetainSpec = RetainSpec()
    points_to_evaluate: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Configurations to try first (space key -> value), e.g. a known good one.",
    )

    @property
    def tpe_startup_trials(self) -> int | None:
        """TPE's start-up: the spec's, else the given points plus a quarter of the trials
        within [2, the library's own]. The libraries' own (10, 20) assume hundreds of cheap
        trials: a 6-trial finetuning sweep would stay a random search to its end, a 16-trial
        one for most of it. Both libraries count the given points in their start-up."""
        library = LIBRARY_STARTUP_TRIALS.get(self.search.algorithm)
        if library is None:
            return None
        if self.search.startup_trials is not None:
            return self.search.startup_trials
        return len(self.points_to_evaluate) + min(library, max(2, self.num_samples // 4))

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        problems = [
            *self._searcher_fits_space(),
            *self._conditions_are_sound(),
            *self._points_fit_space(),
        ]
        problems += self._population_fits_space()
        if self.search.algorithm == "bohb" and self.scheduler.name != "hyperband":
            problems.append(
                f"scheduler.name: search bohb needs scheduler hyperband (BOHB's own), "
                f"not {self.scheduler.name}"
            )
        if problems:  # the first: fixing it can change the others
            raise ValueError(problems[0])
        return self

    def _searcher_fits_space(self) -> list[str]:
        algorithm = self.search.algorithm
        problems = []
        for key, dist in self.space.items():
            kind = kind_of(dist)
            if kind == "grid" and algorithm not in ("random", "grid"):
                problems.append(
                    f'space."{key}": grid needs search.algorithm random or grid, not {algorithm} '
                    "(use choice)"
                )
            if algorithm == "grid" and dist.values is None:
                problems.append(
                    f'space."{key}": search grid takes choice or grid values, not {kind}'
                )
        return problems

    def _population_fits_space(self) -> list[str]:
        """PBT/PB2 perturb the keys a running trial can change; the others stay per trial."""
        name = self.scheduler.name
        if not self.scheduler.is_population:
            return []
        problems = []
        if self.search.algorithm != "random":
            problems.append(
                f"search.algorithm: scheduler {name} picks its own values; expected random "
                f"(its first population), not {self.search.algorithm}"
            )
        mutable = self.mutable_keys
        if not mutable:
            problems.append(
                f"space: scheduler {name} needs one of {', '.join(MUTABLE_MID_RUN)} in the "
                "space (the values a running trial can change)"
            )
        for key in mutable:
            dist = self.space[key]
            if dist.when:
                problems.append(f'space."{key}": scheduler {name} cannot perturb a conditional key')
            if name == "pb2" and kind_of(dist) not in CONTINUOUS:
                problems.append(
                    f'space."{key}": pb2 takes continuous ranges (loguniform, uniform, '
                    f"quniform), not {kind_of(dist)}"
                )
        return problems

    @property
    def mutable_keys(self) -> list[str]:
        """Space keys PBT/PB2 perturb."""
        return [key for key in self.space if key in MUTABLE_MID_RUN]

    def _conditions_are_sound(self) -> list[str]:
        problems = []
        for key, dist in self.space.items():
            for other, wanted in (dist.when or {}).items():
                label = f'space."{key}".when."{other}"'
                if other == key:
                    problems.append(f"{label}: a key cannot depend on itself")
                    continue
                if other not in self.space:
                    try:
                        names_a_spec_field(other)
                    except ValueError as exc:
                        problems.append(f"{label}: {exc}")
                    continue
                parent = self.space[other]
                if parent.values is None:
                    problems.append(
                        f"{label}: conditions need a choice or grid key, not {kind_of(parent)}"
                    )
                    continue
                missing = [w for w in _as_list(wanted) if w not in parent.values]
                if missing:
                    problems.append(
                        f"{label}: {missing[0]!r} is not one of its values {parent.values}"
                    )
        if not problems:
            try:
                self.sampling_order()
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    def _points_fit_space(self) -> list[str]:
        problems = []
        for i, point in enumerate(self.points_to_evaluate):
            for key, value in point.items():
                label = f'points_to_evaluate[{i}]."{key}"'
                if key not in self.space:
                    problems.append(f"{label}: not a key of sweep.space")
                elif not self.space[key].contains(value):
                    problems.append(f"{label}: {value!r} is outside its distribution")
            for key, dist in self.space.items():
                if key not in point and self.active(key, point) and not dist.when:
                    problems.append(f'points_to_evaluate[{i}]: no value for "{key}"')
        return problems

    def sampling_order(self) -> list[str]:
        """Space keys, each after the keys its `when` names (a cycle is an error)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(key: str) -> None:
            if key in order:
                return
            if key in visiting:
                raise ValueError(f'space."{key}": its when-conditions form a cycle')
            visiting.add(key)
            for other in self.space[key].when or {}:
                if other in self.space:
                    visit(other)
            visiting.discard(key)
            order.append(key)

        for key in self.space:
            visit(key)
        return order

    def active(self, key: str, chosen: dict[str, Any], base: dict[str, Any] | None = None) -> bool:
        """Whether `key` is sampled, given the values chosen so far (space keys) and the base
        spec (dumped, for conditions on fields outside the space)."""
        for other, wanted in (self.space[key].when or {}).items():
            if other in self.space:
                if other not in chosen or not self.active(other, chosen, base):
                    return False
                value = chosen[other]
            elif base is not None:
                value = _dotted(base, other)
            else:
                continue  # checked against the base spec when one is given
            if value not in _as_list(wanted):
                return False
        return True

    @property
    def samples(self) -> int:
        """Tune's num_samples: a grid search runs its grid once unless num_samples is set."""
        if self.search.algorithm == "grid" and "num_samples" not in self.model_fields_set:
            return 1
        return self.num_samples

    @property
    def total_trials(self) -> int:
        return self.samples * self.grid_size

    @property
    def has_conditions(self) -> bool:
        return any(dist.when for dist in self.space.values())

    @property
    def grid_size(self) -> int:
        """Trials per sample: the product of the grid keys' sizes (all keys, for search grid)."""
        sizes = [
            len(dist.values)
            for dist in self.space.values()
            if kind_of(dist) == "grid" or (self.search.algorithm == "grid" and dist.values)
        ]
        return math.prod(sizes) if sizes else 1


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _dotted(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
