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
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import keyword_spec
from ray_cluster import LocalCluster, client_env, start_cluster

pytestmark = pytest.mark.integration


SECOND_NODE = {"node_b": 1, "trainer_slot": 1}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Starts as the head alone; the second node joins during the first test (as an
    autoscaler's node would) or when a later test needs it."""
    cluster = start_cluster([{"node_a": 1, "trainer_slot": 1}])
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def two_nodes(cluster: LocalCluster) -> LocalCluster:
    if len(cluster.nodes) == 1:
        cluster.add_node(SECOND_NODE)
    return cluster


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


def test_trials_queue_for_a_declared_node_and_run_on_it_when_it_joins(
    cluster: LocalCluster, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    """Only the head is up, but the spec declares a group of up to 2 one-slot nodes: the sweep
    runs 2 trials at once (from the declared shape, not the live snapshot), the second waits
    in Tune's queue for a node (a one-worker trial holds its worker's resources itself), and
    runs on the node that joins."""
    assert len(cluster.nodes) == 1
    # The first trial (a grid runs in order) long enough (1,600 tiny steps, ~30 s) that it
    # still holds the head's slot when the second node has joined; the second, which only
    # has to run on the node that joins, short.
    base = keyword_spec(tiny_bert, keyword_data, tmp_path, epochs=40, eval_every=800)
    spec = on_cluster(cluster, base, tmp_path, num_workers=1) | {
        "sweep": {
            "search": {"algorithm": "grid"},
            "scheduler": {"name": "fifo"},
            "space": {"train.max_steps": {"grid": [1600, 20]}},
        }
    }
    group = {"name": "slots", "cpus": 2, "memory": "4Gi", "max_nodes": 2}
    spec["cluster"]["node_groups"] = [group | {"resources": {"trainer_slot": 1}}]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "raytune_ft", "tune", str(path)],
        cwd=tmp_path,
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # One trial trains on the head's slot; the other waits for a node.
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list(tmp_path.glob("kw-tune-*/trials/*/runtime.json"))) == 1:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(2)
    assert len(list(tmp_path.glob("kw-tune-*/trials/*/runtime.json"))) == 1  # still waiting
    joined = cluster.add_node(SECOND_NODE)
    _, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr[-3000:]
    # The sweep said how many trials run at once, and why the second was waiting.
    assert "sweep: 2 of 2 trials at a time (the cluster holds 2 trials of" in stderr
    [waiting] = [line for line in stderr.splitlines() if " is pending: " in line]
    assert waiting.startswith("sweep: trial ") and waiting.endswith("(short of 1 trainer_slot)")
    nodes = [
        json.loads(p.read_text())["worker_nodes"]
        for p in sorted(tmp_path.glob("kw-tune-*/trials/*/runtime.json"))
    ]
    assert sorted(n for trial in nodes for n in trial) == sorted([cluster.nodes[0], joined])


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
