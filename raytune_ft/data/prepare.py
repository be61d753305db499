"""read -> check -> clean -> split -> tokenize, once per fingerprint, on the driver.

The prepared splits are Arrow files under <cache>/<fingerprint>/: every worker, trial and test
evaluation memory-maps them (`load_prepared`); nothing re-reads or re-tokenizes. The
fingerprint covers everything the result depends on: the data and task sections, the seed,
the tokenizer's content and each input file's size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_ft.data.cleaning import CleanReport, clean_dataset
from raytune_ft.data.loading import SOURCE_KEY, Row, read_source, resolve_files
from raytune_ft.data.splitting import hold_out, split_rows, subsample
from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.tasks.base import Task
from raytune_ft.tasks.registry import task_for

PIPELINE_VERSION = 1  # bump when preparation changes what it writes
SPLITS = ("train", "validation", "test")
GROUP_KEY = "_group"
META_FILE = "meta.json"
_INDEX = "_index"


@dataclass
class Prepared:
    """Prepared splits (memory-mapped Arrow) and what preparing them found."""

    path: Path
    splits: dict[str, Any]
    meta: dict[str, Any]

    @property
    def labels(self) -> list[str] | None:
        return self.meta["labels"]

    def sizes(self) -> dict[str, int]:
        return {name: len(data) for name, data in self.splits.items()}

    def __getitem__(self, split: str) -> Any:
        return self.splits[split]


@dataclass
class RowSplits:
    """Checked, cleaned and split rows before tokenization (Datasets in memory)."""

    splits: dict[str, Any]
    labels: list[str] | None
    clean_report: dict[str, CleanReport]

    def sizes(self) -> dict[str, int]:
        return {name: len(data) for name, data in self.splits.items()}


# --------------------------------------------------------------------------- rows


def prepare_rows(spec: ExperimentSpec, task: Task | None = None) -> RowSplits:
    """Deterministic for a spec and seed: every caller gets the same splits."""
    task = task or task_for(spec.task)
    loaded: dict[str, Any] = {}
    reports: dict[str, CleanReport] = {}
    for which in SPLITS:
        if getattr(spec.data, which) is not None:
            loaded[which], reports[which] = _load_clean(spec, task, which)

    labels = getattr(spec.task, "labels", None)
    if labels is not None:  # before splitting, so an unknown label is named by its row
        for data in loaded.values():
            task.check_labels(data, labels)

    train = loaded["train"]
    split = spec.data.split
    stratify = task.label_column if split.stratify else None  # None: a plain random split
    index, on = _index_rows(train, stratify), stratify is not None
    if "validation" not in loaded and "test" not in loaded:
        parts = split_rows(index, stratify, split.validation, split.test, on, spec.seed)
        train, loaded["validation"], loaded["test"] = _select(train, parts)
    elif "validation" not in loaded:
        field = "data.split.validation"
        parts = hold_out(index, split.validation, stratify, on, spec.seed, field)
        train, loaded["validation"] = _select(train, parts)
    elif "test" not in loaded:
        field = "data.split.test"
        parts = (
            hold_out(index, split.test, stratify, on, spec.seed, field)
            if split.test > 0
            else (index, [])
        )
        train, loaded["test"] = _select(train, parts)
    if spec.data.max_train_samples is not None and spec.data.max_train_samples < len(train):
        index = _index_rows(train, stratify)
        subset = subsample(index, spec.data.max_train_samples, stratify, on, spec.seed)
        (train,) = _select(train, (subset,))
    loaded["train"] = train

    labels = task.label_names(train)
    if labels is not None:
        if spec.task.labels is None:  # listed labels were checked before the split
            for which in SPLITS:
                task.check_labels(loaded[which], labels)
        if len(labels) < 2:
            where = (
                "task.labels"
                if spec.task.labels
                else f"task.label_column {spec.task.label_column!r}"
            )
            raise UserError(f"{where}: only one class {labels}; expected at least 2")
    return RowSplits({w: loaded[w] for w in SPLITS}, labels, reports)


def _load_clean(spec: ExperimentSpec, task: Task, which: str) -> tuple[Any, CleanReport]:
    from datasets import Dataset

    field = f"data.{which}"
    rows = read_source(getattr(spec.data, which), field)
    if not rows:
        raise UserError(f"{field}: no rows after reading the files")
    needed = list(spec.task.input_columns)
    group = spec.data.group_column
    typed = []
    for row in rows:
        _check_columns(row, needed + ([group] if group else []), field)
        clean = task.normalize(row)
        clean[SOURCE_KEY] = row[SOURCE_KEY]
        if group:
            if row[group] is None:
                raise UserError(f"{row[SOURCE_KEY]}: {group!r} is null; expected a value")
            clean[GROUP_KEY] = str(row[group])
        typed.append(clean)
    data = Dataset.from_list(typed)
    collapse = spec.data.clean.collapse_whitespace
    if collapse is None:
        collapse = not task.generative
    data, report = clean_dataset(
        data, task.text_columns, task.key_columns, task.label_column, spec.data.clean, collapse
    )
    if len(data) == 0:
        raise UserError(f"{field}: every row was dropped by cleaning ({report.as_dict()})")
    return data, report


def _check_columns(row: Row, needed: list[str], field: str) -> None:
    """Every row has every column the task needs: checked here, not mid-run."""
    for column in needed:
        if column not in row:
            have = ", ".join(sorted(c for c in row if c != SOURCE_KEY))
            raise UserError(
                f"{row[SOURCE_KEY]}: no column {column!r} (this row has: {have}); "
                f"every row of {field} needs {', '.join(map(repr, needed))}"
            )


def _index_rows(data: Any, label_column: str | None) -> list[Row]:
    """Light rows for the splitters: index, source and (when stratifying) the label."""
    labels = data[label_column] if label_column else [None] * len(data)
    return [
        {_INDEX: i, SOURCE_KEY: source, label_column or "_": label}
        for i, (source, label) in enumerate(zip(data[SOURCE_KEY], labels, strict=True))
    ]


def _select(data: Any, parts: tuple[list[Row], ...]) -> tuple[Any, ...]:
    return tuple(data.select([r[_INDEX] for r in part]) for part in parts)


# --------------------------------------------------------------------------- features


def prepare(spec: ExperimentSpec, tokenizer: Any = None) -> Prepared:
    """The prepared splits of this spec: read from the cache, or made once and stored there.

    Concurrent callers (trials of a sweep) wait on a file lock; one prepares, the others read.
    """
    from filelock import FileLock

    from raytune_ft.modeling.loading import load_tokenizer

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.model)
    path = cache_root(spec) / data_fingerprint(spec, tokenizer)
    if (path / META_FILE).exists():
        return load_prepared(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        field = "data.cache_dir" if spec.data.cache_dir else "storage.path"
        raise UserError(
            f"{field}: cannot create {path.parent} (prepared data): {exc.strerror}; expected "
            "a folder you can write"
        ) from None
    with FileLock(str(path) + ".lock"):
        if not (path / META_FILE).exists():
            _prepare_into(spec, tokenizer, path)
    return load_prepared(path)


def _prepare_into(spec: ExperimentSpec, tokenizer: Any, path: Path) -> None:
    import datasets

    datasets.disable_progress_bars()
    started = time.monotonic()
    task = task_for(spec.task)
    rows = prepare_rows(spec, task)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    sizes, dropped, schemas = {}, {}, {}
    for which, data in rows.splits.items():
        features = _tokenize(task, data, tokenizer, spec.data.max_length, rows.labels)
        dropped[which] = len(data) - len(features)
        if which != "test" and len(data) and not len(features):
            raise UserError(
                f"data.{which}: all {len(data)} rows lost every label token to truncation at "
                f"data.max_length {spec.data.max_length}; expected a larger max_length or "
                "shorter prompts"
            )
        features = task.finish_split(features, which, tokenizer, spec.data.max_length)
        if len(features):
            schemas[which] = features.features
        else:
            # An empty split (e.g. data.split.test: 0) has no rows to infer its columns from:
            # it takes those of the split it stands in for, and one explicit shard (with
            # none, `datasets` saves no Arrow file and cannot load the split back).
            like = schemas.get("validation") or schemas.get("train")
            if like is not None:
                features = datasets.Dataset.from_dict({n: [] for n in like}, features=like)
        features.save_to_disk(str(tmp / which), **({} if len(features) else {"num_shards": 1}))
        sizes[which] = len(features)
    meta = {
        "fingerprint": path.name,
        "labels": rows.labels,
        "rows": rows.sizes(),
        "sizes": sizes,
        "dropped_by_truncation": dropped,
        "clean": {k: v.as_dict() for k, v in rows.clean_report.items()},
        "task": spec.task.type,
        "prepare_seconds": round(time.monotonic() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # readers see the whole folder or none of it


def _tokenize(task: Task, data: Any, tokenizer: Any, max_length: int, labels: Any) -> Any:
    passthrough = [c for c in (SOURCE_KEY, GROUP_KEY) if c in data.column_names]

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        features, kept = task.tokenize(batch, tokenizer, max_length, labels)
        return features | {c: [batch[c][i] for i in kept] for c in passthrough}

    return data.map(tokenize, batched=True, remove_columns=data.column_names, desc="tokenize")


def load_prepared(path: str | Path) -> Prepared:
    """Memory-map prepared splits (workers, trials, test evaluation)."""
    from datasets import load_from_disk

    path = Path(path)
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    splits = {which: load_from_disk(str(path / which)) for which in SPLITS}
    return Prepared(path, splits, meta)


def model_inputs(data: Any, columns: list[str]) -> Any:
    """The split with only the collator's columns (sources, groups and references stay out)."""
    return data.select_columns([c for c in columns if c in data.column_names])


def cache_root(spec: ExperimentSpec) -> Path:
    """data.cache_dir; else <storage>/prepared for a local storage path; else (a bucket) a
    cache on this machine, published to the bucket for workers on other nodes."""
    if spec.data.cache_dir:
        root = spec.data.cache_dir
    elif spec.storage.is_remote:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "raytune-ft" / "prepared")
    else:
        root = str(Path(spec.storage.path.removeprefix("file://")) / "prepared")
    return Path(root).expanduser().resolve()


def _published(spec: ExperimentSpec, path: Path) -> Any:
    from raytune_ft.storage import storage_root

    return storage_root(spec.storage) / "prepared" / path.name


def publish_prepared(spec: ExperimentSpec, path: Path) -> None:
    """With bucket storage, copy prepared data there once (meta.json last, so a folder with
    meta.json is whole): workers on other nodes fetch it from there."""
    if not spec.storage.is_remote:
        return
    target = _published(spec, path)
    if (target / META_FILE).exists():
        return
    for which in SPLITS:
        if (target / which).exists():  # left by an interrupted publish: start again
            target.fs.delete_dir(f"{target.path}/{which}")
        (target / which).upload(path / which)
    (target / META_FILE).write_text((path / META_FILE).read_text(encoding="utf-8"))


def fetch_prepared(spec: ExperimentSpec, path: Path) -> Prepared:
    """The prepared data at `path` on this node; with bucket storage, downloaded there first
    when this node does not have it (once per node: others wait on the lock)."""
    if (path / META_FILE).exists() or not spec.storage.is_remote:
        return load_prepared(path)
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not (path / META_FILE).exists():
            _published(spec, path).download(path)
    return load_prepared(path)


def data_fingerprint(spec: ExperimentSpec, tokenizer: Any) -> str:
    """What the prepared data depends on, hashed: any change gives a new cache folder."""
    files = []
    for which in SPLITS:
        source = getattr(spec.data, which)
        if source is not None and source.path is not None:
            for file in resolve_files(source, f"data.{which}"):
                stat = file.stat()
                files.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    identity = {
        "version": PIPELINE_VERSION,
        "data": spec.data.model_dump(mode="json", exclude={"cache_dir"}),
        "task": spec.task.model_dump(mode="json"),
        "seed": spec.seed,
        "files": files,
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }
    blob = json.dumps(identity, sort_keys=True).encode()
    return f"{spec.task.type}-{hashlib.sha256(blob).hexdigest()[:16]}"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what the tokenizer does (vocabulary, rules, special tokens, chat template),
    not of where it was loaded from: a copy saved with a checkpoint hashes the same."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Calling a fast tokenizer with truncation=True stores that setting in its backend:
        # per-call state, not what the tokenizer does, so it is left out.
        state = json.loads(backend.to_str())
        state["truncation"] = state["padding"] = None
        content = json.dumps(state, sort_keys=True)
    else:
        content = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    parts = [
        type(tokenizer).__name__,
        content,
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
        str(getattr(tokenizer, "chat_template", None)),
        tokenizer.padding_side,
        tokenizer.truncation_side,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
