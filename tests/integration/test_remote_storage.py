"""Runs whose storage is a bucket on a real S3-compatible server (moto, on 127.0.0.1).

Everything a run makes must land in the bucket (nothing in the working directory), and
`--resume` must continue a run from the bucket alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import keyword_spec

from raytune_ft.spec import validate_spec
from raytune_ft.sweep.runner import run_sweep

pytestmark = pytest.mark.integration


def objects_in_runs(s3_server, prefix: str) -> list[str]:
    return [key.removeprefix(prefix) for key in s3_server.keys(prefix)]


def test_train_writes_every_artifact_to_the_bucket_and_resumes_from_it(
    s3_server, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = keyword_spec(tiny_bert, keyword_data, tmp_path, epochs=2, micro_batch_size=8)
    spec |= {"name": "s3run", "storage": s3_server.storage("train-runs")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    work = tmp_path / "work"
    work.mkdir()
    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "raytune_ft", "train", str(path)]
    proc = subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # Stop it once the bucket's step log shows two checkpoints (Ray registers a reported
    # checkpoint asynchronously: only the first of two is surely there to resume from).
    deadline = time.monotonic() + 300
    client = s3_server.client()
    while proc.poll() is None and time.monotonic() < deadline:
        logs = [k for k in s3_server.keys("train-runs/") if k.endswith("/steps.jsonl")]
        if logs:
            body = client.get_object(Bucket=s3_server.bucket, Key=logs[0])["Body"].read()
            if body.decode().count('"event": "checkpoint"') >= 2:
                break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    # SIGTERM (what `kill`, systemd and Kubernetes send; it once aborted with a C stack dump):
    # the one signal test of `train`. Ctrl-C goes through the same handler in the sweep's
    # signal test (tests/integration/test_interrupts.py).
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    [run] = {k.split("/")[1] for k in s3_server.keys("train-runs/s3run-train-")}
    uri = f"s3://{s3_server.bucket}/train-runs/{run}"
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last == (
        f"interrupted (SIGTERM); Ray stopped; run folder: {uri}; resume with: raytune-ft "
        f"train {path} --resume"
    )
    for symptom in ("Traceback", "Fatal Python error", "failed:"):
        assert symptom not in stderr, stderr[-3000:]

    done = subprocess.run(
        [*command, "--resume"], cwd=work, env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(uri)

    prefix = f"train-runs/{run}/"
    keys = objects_in_runs(s3_server, prefix)
    for name in ("spec.yaml", "data_report.json", "runtime.json", "steps.jsonl", "summary.json"):
        assert name in keys, keys
    assert "best-model/config.json" in keys and "best-model/tokenizer.json" in keys
    shards = [k for k in keys if k.startswith("ray-train/checkpoint_") and "optim_states" in k]
    assert len(shards) >= 2, keys  # both ranks' ZeRO-2 optimizer shards, per checkpoint
    assert any(k.endswith("/meta.json") for k in s3_server.keys("train-runs/prepared/"))
    # Nothing landed in the working directory; only the prepared-data cache is on local disk.
    assert list(work.iterdir()) == []

    body = client.get_object(Bucket=s3_server.bucket, Key=prefix + "steps.jsonl")["Body"].read()
    steps = [json.loads(line) for line in body.decode().splitlines()]
    [resumed] = [s for s in steps if s.get("event") == "resumed"]
    assert resumed["step"] >= 10  # from a checkpoint in the bucket, not from scratch
    assert max(s["step"] for s in steps if "loss" in s) == 80  # 640 / (2 x 8) x 2 epochs
    summary = json.loads(
        client.get_object(Bucket=s3_server.bucket, Key=prefix + "summary.json")["Body"].read()
    )
    assert summary["best_validation"] > 0.9
    assert summary["best_model"] == f"{uri}/best-model"
    assert summary["checkpoints"]["count"] >= 1 and all(summary["checkpoints"]["bytes"])
    keys = objects_in_runs(s3_server, prefix)
    assert "best-model/config.json" in keys
    assert any(k.startswith("ray-train/checkpoint_") for k in keys)


def test_a_sweep_in_a_bucket(
    ray_local: None, s3_server, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = keyword_spec(tiny_bert, keyword_data, tmp_path, epochs=1, eval_every=10)
    spec |= {
        "name": "s3sweep",
        "scaling": {"num_workers": 1},
        "storage": s3_server.storage("sweeps"),
        "sweep": {
            "num_samples": 2,
            "search": {"algorithm": "random", "seed": 0},
            "scheduler": {"name": "fifo"},
            "space": {"train.learning_rate": {"loguniform": [1e-3, 3e-3]}},
        },
        "train": {**spec["train"], "max_steps": 20},
    }
    outcome = run_sweep(validate_spec(spec))
    uri = outcome.run_dir.uri
    assert uri.startswith(f"s3://{s3_server.bucket}/sweeps/s3sweep-tune-")
    prefix = uri.split("/", 3)[3] + "/"
    keys = objects_in_runs(s3_server, prefix)
    for name in ("spec.yaml", "summary.json", "results.csv", "best-spec.yaml"):
        assert name in keys, keys
    # (pyarrow marks folders it creates in a bucket with empty "name/" objects)
    trials = {k.split("/")[1] for k in keys if k.startswith("trials/")} - {""}
    assert len(trials) == 2
    for trial in trials:
        for name in ("spec.yaml", "steps.jsonl", "runtime.json"):
            assert f"trials/{trial}/{name}" in keys
        # One-worker trials train in their Tune trial's process: the best model is exported
        # in the trial's folder, resume checkpoints are Tune's (under ray-tune/).
        assert f"trials/{trial}/exports/best.json" in keys
    assert any(k.startswith("ray-tune/") for k in keys)  # Tune's own state, for --resume
    # Tune's resume checkpoints were written to the bucket, and deleted there once the
    # trials had ended (sweep.retain's default); each trial's record names them.
    assert not any(k.startswith("ray-tune/") and "/checkpoint_" in k for k in keys)
    client = s3_server.client()
    for trial in trials:
        body = client.get_object(
            Bucket=s3_server.bucket, Key=f"{prefix}trials/{trial}/retention.json"
        )
        [record] = json.loads(body["Body"].read())["deleted"]
        assert record["checkpoints"] and "export" not in record
        for checkpoint in record["checkpoints"]:
            assert checkpoint["path"].startswith(f"{uri}/ray-tune/") and checkpoint["bytes"] > 0
    assert outcome.summary["best_model"] == f"{uri}/best-model"
    assert "best-model/config.json" in keys
    assert outcome.summary["trials"]["finished"] == 2
    # The test split was scored from the best model, read back from the bucket.
    assert {"test_accuracy", "test_loss"} <= set(outcome.summary["test_metrics"])
