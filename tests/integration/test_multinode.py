"""A real two-node Ray cluster on 127.0.0.1 (a head and a second node, each with its own
`trainer_slot`), driven by `raytune-ft` as a separate process, as against a real cluster.

Each node offers one `trainer_slot` and each worker asks for one, so a 2-worker run can only
be placed across both nodes; the tests check where the workers really ran (Ray node ids each
rank recorded), not where they should have.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import keyword_spec
from ray_cluster import LocalCluster, client_env, start_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[LocalCluster]:
    cluster = start_cluster([{"node_a": 1, "trainer_slot": 1}, {"node_b": 1, "trainer_slot": 1}])
    try:
        yield cluster
    finally:
        cluster.stop()


def run_cli(command: str, spec: dict, where: Path, timeout: float = 400):
    path = where / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return subprocess.run(
        [sys.executable, "-m", "raytune_ft", command, str(path)],
        cwd=where,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def on_cluster(cluster: LocalCluster, spec: dict, storage: Path, **scaling: object) -> dict:
    return spec | {
        "cluster": {"address": cluster.gcs_address},
        "storage": {"path": str(storage), "shared": True},  # one machine: truly shared
        "scaling": {"num_workers": 2, "resources_per_worker": {"trainer_slot": 1}, **scaling},
    }


def test_every_server_of_the_cluster_listens_on_loopback(two_nodes: LocalCluster) -> None:
    pids = {p.pid for p in two_nodes.processes()}
    listening = [
        (psutil.Process(c.pid).name(), c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.pid in pids and c.status == psutil.CONN_LISTEN
    ]
    assert sum(name == "raylet" for name, _, _ in listening) >= 2  # both nodes, not vacuous
    assert [s for s in listening if s[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")] == []


def test_two_worker_zero2_training_spans_both_nodes(
    two_nodes: LocalCluster, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = on_cluster(
        two_nodes, keyword_spec(tiny_bert, keyword_data, tmp_path, epochs=2), tmp_path
    )
    done = run_cli("train", spec, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [run_dir] = tmp_path.glob("kw-train-*")
    runtime = json.loads((run_dir / "runtime.json").read_text())
    assert runtime["zero_stage"] == 2 and runtime["world_size"] == 2
    assert sorted(runtime["worker_nodes"]) == sorted(two_nodes.nodes)  # one rank per node
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["nodes"] == 2
    assert summary["best_validation"] > 0.9  # ZeRO-2 across nodes still learns


def test_sweep_trials_land_on_both_nodes(
    two_nodes: LocalCluster, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    base = keyword_spec(tiny_bert, keyword_data, tmp_path, epochs=1, eval_every=10, max_steps=20)
    spec = on_cluster(two_nodes, base, tmp_path, num_workers=1) | {
        "sweep": {
            "num_samples": 2,
            "search": {"algorithm": "random", "seed": 0},
            "scheduler": {"name": "fifo"},
            "space": {"train.learning_rate": {"loguniform": [1e-3, 3e-3]}},
        }
    }
    done = run_cli("tune", spec, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [sweep_dir] = tmp_path.glob("kw-tune-*")
    nodes = [
        json.loads(p.read_text())["worker_nodes"]
        for p in sorted(sweep_dir.glob("trials/*/runtime.json"))
    ]
    # One trainer_slot per node: the two trials ran at once, one on each node.
    assert sorted(n for trial in nodes for n in trial) == sorted(two_nodes.nodes)


def test_node_local_storage_is_refused_on_two_nodes(
    two_nodes: LocalCluster, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = on_cluster(two_nodes, keyword_spec(tiny_bert, keyword_data, tmp_path), tmp_path)
    spec["storage"] = {"path": str(tmp_path / "runs")}
    done = run_cli("train", spec, tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: storage.path: '{tmp_path / 'runs'}' is on this node's disk, but the cluster "
        "has 2 nodes; expected s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, or a path mounted at "
        "the same place on every node with storage.shared: true"
    )
    assert "Traceback" not in done.stderr


def test_a_worker_no_node_can_hold_is_refused_before_launch(
    two_nodes: LocalCluster, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = on_cluster(
        two_nodes,
        keyword_spec(tiny_bert, keyword_data, tmp_path),
        tmp_path,
        resources_per_worker={"trainer_slot": 2},
    )
    done = run_cli("train", spec, tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: scaling: each worker needs 1 CPU, 2 trainer_slot, but no node")
    assert "1 trainer_slot" in last and "cluster.node_groups" in last
