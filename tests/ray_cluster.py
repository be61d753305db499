"""A real multi-node Ray cluster on 127.0.0.1: a head and more nodes, each its own raylet with
its own resources, as on a real cluster; only the machine is shared.

`ray start --address` refuses a second node in Ray's single-machine mode, and outside that
mode Ray's servers listen on every interface (measured: GCS, raylets and agents on `::` and the
machine's address). Ray's own `ray.cluster_utils.Cluster` adds nodes without that check, so the
cluster runs in single-machine mode with every server on loopback. It is started by this file
run as a separate process (`python ray_cluster.py NODES_JSON`), which keeps the cluster apart
from the test process's own Ray, and shuts it down when its stdin closes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

MARKER = "RAYTUNE_FT_TEST_CLUSTER"
_SESSION_ENV = ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT", "RAYTUNE_FT_SESSION")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client_env(**extra: str) -> dict[str, str]:
    """This process's environment without a local session's Ray address or marker."""
    env = {k: v for k, v in os.environ.items() if k not in _SESSION_ENV and k != MARKER}
    return env | {"RAY_AUTH_MODE": "disabled"} | extra


@dataclass
class LocalCluster:
    process: subprocess.Popen[str]
    temp_dir: Path
    gcs_address: str
    dashboard_url: str
    nodes: list[str]  # node ids, head first

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: marked in their environment or writing into its temp dir
        (Ray's agents retitle themselves, which hides their environment)."""
        found = []
        for process in psutil.process_iter():
            if process.pid == os.getpid():
                continue
            try:
                marked = process.environ().get(MARKER) == str(self.temp_dir)
                writing = marked or any(
                    f.path.startswith(str(self.temp_dir)) for f in process.open_files()
                )
            except (psutil.Error, OSError):
                continue
            if marked or writing:
                found.append(process)
        return found

    def add_node(self, resources: dict[str, float]) -> str:
        """A node joins the running cluster (what an autoscaler does); returns its id."""
        self.process.stdin.write(f"add {json.dumps(resources)}\n")
        self.process.stdin.flush()
        node = json.loads(self.process.stdout.readline())["node"]
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        from raytune_ft.launch.sessions import stop_processes

        if self.process.poll() is None:
            self.process.stdin.close()  # the launcher shuts its cluster down
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        stop_processes(self.processes(), grace_s=5)  # anything Ray's shutdown left
        left = [p for p in self.processes() if p.is_running()]
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        assert not left, left


def start_cluster(node_resources: list[dict[str, float]], cpus_per_node: int = 2) -> LocalCluster:
    """A head plus len(node_resources) - 1 nodes; node i offers node_resources[i]."""
    # Short: Ray's unix sockets live under it and their paths must stay under 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rtcl-", dir="/tmp"))
    env = client_env(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        **{MARKER: str(temp_dir)},
    )
    request = {"nodes": node_resources, "cpus": cpus_per_node, "temp_dir": str(temp_dir)}
    process = subprocess.Popen(
        [sys.executable, __file__, json.dumps(request)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=60)
        raise RuntimeError(f"the cluster launcher exited with {process.returncode}")
    info = json.loads(line)
    return LocalCluster(
        process, temp_dir, info["address"], f"http://{info['dashboard']}", info["nodes"]
    )


def _serve(request: dict) -> None:
    """Start the cluster, print its addresses, and keep it until stdin closes."""
    # Ray writes the head's address to RAY_TMPDIR/ray/ray_current_cluster and fails when that
    # folder is missing (a fresh machine has no /tmp/ray); keeping it in this cluster's own
    # folder also leaves a user's `ray.init()` untouched.
    os.environ["RAY_TMPDIR"] = request["temp_dir"]
    Path(request["temp_dir"], "ray").mkdir(exist_ok=True)
    from ray.cluster_utils import Cluster

    common = {"num_cpus": request["cpus"], "num_gpus": 0, "node_ip_address": "127.0.0.1"}
    head, *others = request["nodes"]
    cluster = Cluster(
        initialize_head=True,
        head_node_args=common
        | {
            "resources": head,
            "temp_dir": request["temp_dir"],
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),
        },
    )
    try:
        nodes = [cluster.head_node] + [
            cluster.add_node(**common, resources=resources) for resources in others
        ]
        cluster.wait_for_nodes()
        print(
            json.dumps(
                {
                    "address": cluster.address,
                    "dashboard": cluster.head_node.address_info["webui_url"],
                    "nodes": [node.node_id for node in nodes],
                }
            ),
            flush=True,
        )
        for line in sys.stdin:  # "add RESOURCES_JSON": a node joins, as an autoscaler adds one
            node = cluster.add_node(**common, resources=json.loads(line.removeprefix("add ")))
            cluster.wait_for_nodes()
            print(json.dumps({"node": node.node_id}), flush=True)
        # stdin closed: the test is done with the cluster
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
