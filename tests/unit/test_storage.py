"""Storage locations: the spec's forms, and a real S3 server (moto on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.spec import validate_spec
from raytune_ft.spec.sections import StorageSpec
from raytune_ft.storage import (
    Location,
    StepLog,
    check_storage,
    latest_run,
    location_of,
    new_run,
    storage_root,
)


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        (
            {"path": "hdfs://nn/runs"},
            "storage.path: 'hdfs://nn/runs': unknown scheme 'hdfs://'; expected a local path",
        ),
        ({"path": "s3://"}, "no bucket; expected s3://BUCKET/PREFIX"),
        ({"path": "file://runs"}, "expected an absolute path, file:///abs/path"),
        ({"path": "runs", "endpoint_url": "http://x:9000"}, "for s3:// or gs:// storage"),
        ({"path": "s3://b/p", "shared": True}, "object storage is shared already"),
        ({"path": "gs://b/p", "region": "eu"}, "region: for s3:// storage only"),
        ({"path": "s3://b/p", "endpoint_url": "127.0.0.1:9000"}, "storage.endpoint_url"),
    ],
)
def test_storage_forms_refused_name_the_field(storage: dict, expected: str) -> None:
    with pytest.raises(UserError) as caught:
        validate_spec(minimal_spec(storage=storage))
    assert expected in caught.value.problems[0]


def test_local_forms_resolve_to_absolute_paths(tmp_path: Path) -> None:
    assert storage_root(StorageSpec(path=f"file://{tmp_path}")).path == str(tmp_path)
    root = storage_root(StorageSpec(path=str(tmp_path / "x")))
    assert root.is_local and root.uri == str(tmp_path / "x")
    run = new_run(root, "demo", "train")
    assert run.local_path.is_dir() and latest_run(root, "demo", "train") == run


def test_run_folders_in_a_bucket(s3_server) -> None:
    storage = StorageSpec(**s3_server.storage("unit/runs"))
    root = check_storage(storage)
    assert root.uri == f"s3://{s3_server.bucket}/unit/runs"
    first = new_run(root, "demo", "train")
    second = new_run(root, "demo", "train")  # same second: a suffix, never the same folder
    assert first != second and latest_run(root, "demo", "train") == second
    assert latest_run(root, "other", "train") is None

    (second / "spec.yaml").write_text("name: demo\n")
    again = location_of(second.uri, storage)  # what a worker rebuilds from the uri
    assert (again / "spec.yaml").read_text() == "name: demo\n"
    assert f"unit/runs/{second.name}/spec.yaml" in s3_server.keys("unit/runs/")


def test_folders_upload_and_download_whole(s3_server, tmp_path: Path) -> None:
    root = check_storage(StorageSpec(**s3_server.storage("unit/copy")))
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(b"\0" * 1000)
    (root / "best-model").upload(source)
    with pytest.raises(FileExistsError):  # never overwritten silently
        (root / "best-model").upload(source)
    back = tmp_path / "back"
    (root / "best-model").download(back)
    assert (back / "sub" / "weights.bin").read_bytes() == b"\0" * 1000
    assert not list(tmp_path.glob(".back.partial"))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_folders_copy_and_move_within_storage_without_overwriting(
    s3_server, tmp_path: Path, where: str
) -> None:
    """How an export becomes best-model/ (a move) and a sweep's best-model/ (a copy)."""
    if where == "s3":
        root = check_storage(StorageSpec(**s3_server.storage("unit/move")))
    else:
        root = check_storage(StorageSpec(path=str(tmp_path / "runs")))
    source = tmp_path / "export"
    source.mkdir()
    (source / "config.json").write_text('{"a": 1}')
    (source / "weights.bin").write_bytes(b"\1" * 2048)
    (root / "exports" / "best-1").upload(source)
    (root / "exports" / "best-1").copy_to(root / "sweep-best")
    with pytest.raises(FileExistsError):
        (root / "exports" / "best-1").copy_to(root / "sweep-best")
    (root / "exports" / "best-1").move_to(root / "best-model")
    assert not (root / "exports" / "best-1").exists()
    assert (root / "best-model" / "config.json").read_text() == '{"a": 1}'
    assert (root / "best-model").size_bytes() == (root / "sweep-best").size_bytes() == 2056
    assert (root / "best-model").parent.path == root.path
    (root / "best-model" / "config.json").remove_file()
    assert not (root / "best-model" / "config.json").exists()


def test_step_log_in_a_bucket_is_rewritten_whole_and_continues_after_resume(s3_server) -> None:
    run = new_run(check_storage(StorageSpec(**s3_server.storage("unit/steps"))), "d", "train")
    log = StepLog(run / "steps.jsonl")
    log.append({"step": 1})
    assert not (run / "steps.jsonl").exists()  # kept until the next evaluation
    log.append({"step": 2})
    log.flush()
    resumed = StepLog(run / "steps.jsonl")  # a restarted worker group
    resumed.append({"event": "resumed", "step": 2})
    resumed.flush()
    lines = (run / "steps.jsonl").read_text().splitlines()
    assert lines == ['{"step": 1}', '{"step": 2}', '{"event": "resumed", "step": 2}']


def test_unreachable_or_missing_bucket_is_one_line(s3_server) -> None:
    with pytest.raises(UserError) as caught:
        check_storage(
            StorageSpec(path="s3://no-such-bucket/x", endpoint_url=s3_server.endpoint_url)
        )
    assert caught.value.problems == [
        f"storage.path: bucket 'no-such-bucket' does not exist at {s3_server.endpoint_url}; "
        "expected an existing bucket"
    ]
    with pytest.raises(UserError) as caught:
        check_storage(StorageSpec(path="s3://b/x", endpoint_url="http://127.0.0.1:9"))
    (line,) = caught.value.problems
    assert line.startswith("storage.path: cannot reach s3://b at http://127.0.0.1:9: ")
    assert line.endswith("expected a bucket this machine's credentials can read and write")


def test_prepared_data_travels_through_the_bucket(s3_server, tmp_path: Path) -> None:
    """The driver publishes prepared data; a node without it fetches it by fingerprint."""
    from raytune_ft.data.prepare import fetch_prepared, prepare, publish_prepared

    spec = validate_spec(
        minimal_spec(
            storage=s3_server.storage("unit/prepared"),
            data={**minimal_spec()["data"], "cache_dir": str(tmp_path / "driver")},
        )
    )
    made = prepare(spec)
    publish_prepared(spec, made.path)
    publish_prepared(spec, made.path)  # a second time: already there, nothing re-sent
    keys = s3_server.keys("unit/prepared/prepared/")
    assert f"unit/prepared/prepared/{made.path.name}/meta.json" in keys
    elsewhere = tmp_path / "node-2" / made.path.name
    fetched = fetch_prepared(spec, elsewhere)
    assert fetched.sizes() == made.sizes()
    assert fetched["train"][0]["input_ids"] == made["train"][0]["input_ids"]


def test_location_is_plain_data_for_ray(s3_server) -> None:
    import pickle

    root = storage_root(StorageSpec(**s3_server.storage("unit/pickle")))
    copy = pickle.loads(pickle.dumps(root / "x"))
    assert isinstance(copy, Location) and copy.uri == f"s3://{s3_server.bucket}/unit/pickle/x"
