"""GPU use, trial capacity, fit and storage checks from the declared and live cluster shape."""

from __future__ import annotations

import pytest
from helpers import minimal_spec

from raytune_ft.errors import UserError
from raytune_ft.launch.resources import (
    NodeShape,
    check_storage_reach,
    check_worker_fits,
    declared_shapes,
    live_shapes,
    trial_capacity,
)
from raytune_ft.spec import validate_spec

GPU_GROUPS = [
    {"name": "cpu", "cpus": 8, "memory": "32Gi", "min_nodes": 1, "max_nodes": 2},
    {"name": "a10", "cpus": 8, "memory": "64Gi", "gpus": 1, "max_nodes": 4},
    {"name": "a100x8", "cpus": 96, "memory": "1Ti", "gpus": 8, "max_nodes": 2},
]


def spec_with(scaling: dict | None = None, groups: list | None = None, storage: dict | None = None):
    return validate_spec(
        minimal_spec(
            scaling=scaling or {},
            cluster={"address": "10.0.0.1:6379", "node_groups": groups or []},
            storage=storage or {"path": "s3://bucket/runs"},
        )
    )


def test_gpu_groups_that_start_at_zero_still_mean_gpus_and_count_at_full_size() -> None:
    spec = spec_with({"num_workers": 2, "use_gpu": True}, GPU_GROUPS)
    shapes = declared_shapes(spec)
    # 4 one-GPU nodes + 2 eight-GPU nodes = 20 GPU workers: 10 two-worker trials.
    assert trial_capacity(spec, True, shapes) == 10
    check_worker_fits(spec, True, shapes)


def test_fractional_gpus_let_small_trials_share_a_gpu() -> None:
    spec = spec_with({"num_workers": 1, "use_gpu": True, "gpus_per_worker": 0.25}, GPU_GROUPS)
    assert trial_capacity(spec, True, declared_shapes(spec)) == 4 * 4 + 2 * 32


def test_a_worker_no_node_type_can_hold_is_refused_with_the_numbers() -> None:
    spec = spec_with({"use_gpu": True, "gpus_per_worker": 16}, GPU_GROUPS)
    with pytest.raises(UserError) as caught:
        check_worker_fits(spec, True, declared_shapes(spec))
    line = caught.value.problems[0]
    assert line.startswith("scaling: each worker needs 1 CPU, 16 GPU, but no node type has")
    assert "a100x8 (96 CPU, 8 GPU)" in line


def test_custom_resources_must_exist_on_some_node() -> None:
    spec = spec_with({"resources_per_worker": {"trainer_slot": 1}})
    live = live_shapes(
        [{"Alive": True, "NodeManagerHostname": "head", "Resources": {"CPU": 4.0, "memory": 1}}]
    )
    with pytest.raises(UserError, match=r"1 trainer_slot.*head \(4 CPU\).*cluster.node_groups"):
        check_worker_fits(spec, False, live)
    live = live_shapes(
        [
            {
                "Alive": True,
                "NodeManagerHostname": "a",
                "Resources": {"CPU": 2.0, "trainer_slot": 1},
            },
            {
                "Alive": True,
                "NodeManagerHostname": "b",
                "Resources": {"CPU": 2.0, "trainer_slot": 1},
            },
            {"Alive": False, "NodeManagerHostname": "dead", "Resources": {"CPU": 64.0}},
        ]
    )
    check_worker_fits(spec, False, live)
    assert [s.name for s in live] == ["a", "b"]
    assert trial_capacity(spec, False, live) == 2  # one slot per node, not two CPUs each


def test_node_local_storage_is_refused_on_more_than_one_node() -> None:
    local = spec_with(storage={"path": "/data/runs"})
    check_storage_reach(local, nodes=1, declared=False)
    with pytest.raises(UserError) as caught:
        check_storage_reach(local, nodes=2, declared=False)
    assert caught.value.problems == [
        "storage.path: '/data/runs' is on this node's disk, but the cluster has 2 nodes; "
        "expected s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, or a path mounted at the same place "
        "on every node with storage.shared: true"
    ]
    with pytest.raises(UserError, match="declared node groups"):
        check_storage_reach(local, nodes=1, declared=True)
    shared = spec_with(storage={"path": "/mnt/nfs/runs", "shared": True})
    check_storage_reach(shared, nodes=3, declared=True)
    check_storage_reach(spec_with(), nodes=3, declared=True)  # a bucket


def test_worker_slots_take_the_scarcest_resource() -> None:
    node = NodeShape("n", cpus=8, gpus=2, count=1, resources={"slot": 3})
    assert node.worker_slots({"CPU": 1, "GPU": 1}) == 2
    assert node.worker_slots({"CPU": 3}) == 2
    assert node.worker_slots({"CPU": 1, "slot": 1}) == 3
    assert node.worker_slots({"CPU": 1, "GPU": 0.5}) == 4


HEAD_ONLY = [{"Alive": True, "NodeManagerHostname": "head", "Resources": {"CPU": 4.0}}]


def test_an_autoscaling_cluster_with_gpu_groups_at_zero_runs_on_gpus() -> None:
    """Only the head is up (no GPUs yet): `use_gpu: auto` still means GPUs, concurrency counts
    the groups at full size, and trials wait for the nodes instead of running on CPU."""
    from raytune_ft.launch.resources import decide_placement

    spec = spec_with({"num_workers": 2}, GPU_GROUPS)
    placement = decide_placement(spec, HEAD_ONLY)
    assert placement.use_gpu and placement.nodes == 1
    assert placement.trial_capacity(spec) == 10
    # A local run of the same spec: the declared groups are some other cluster's.
    local = decide_placement(spec_with({"num_workers": 2}, GPU_GROUPS), HEAD_ONLY, local_cpus=2)
    assert not local.use_gpu and local.trial_capacity(spec) == 1


def test_without_declared_groups_the_live_cluster_decides() -> None:
    from raytune_ft.launch.resources import decide_placement

    placement = decide_placement(spec_with({"num_workers": 1}), HEAD_ONLY)
    assert not placement.use_gpu and placement.trial_capacity(spec_with()) == 4
    with pytest.raises(UserError, match=r"scaling.use_gpu: true, but no node of the cluster"):
        decide_placement(spec_with({"use_gpu": True}), HEAD_ONLY)


def test_the_autoscalers_node_types_are_the_shape_when_the_spec_declares_none() -> None:
    """KubeRay and `ray up` publish their node types in the GCS: a GPU group at zero nodes
    still means GPU trials, even when the spec names no node groups."""
    from types import SimpleNamespace

    from raytune_ft.launch.resources import autoscaler_shapes, decide_placement

    def group(name: str, count: int, **resources: float) -> SimpleNamespace:
        return SimpleNamespace(name=name, max_count=count, resources=resources)

    config = SimpleNamespace(
        node_group_configs=[
            group("head", 1, CPU=0.0, memory=8e9),
            group("gpu", 4, CPU=8.0, GPU=1.0, memory=3e10),
            group("unused", 0, CPU=64.0),
        ]
    )
    shapes = autoscaler_shapes(config)
    assert [(s.name, s.count, s.gpus) for s in shapes] == [("head", 1, 0.0), ("gpu", 4, 1.0)]
    spec = spec_with({"num_workers": 2})
    placement = decide_placement(spec, HEAD_ONLY, autoscaled=shapes)
    assert placement.use_gpu and placement.trial_capacity(spec) == 2
    with pytest.raises(UserError, match="the cluster has declared node groups"):
        decide_placement(spec_with(storage={"path": "/data/runs"}), HEAD_ONLY, autoscaled=shapes)


def test_ray_client_drivers_cannot_use_a_local_folder() -> None:
    spec = validate_spec(
        minimal_spec(cluster={"address": "ray://10.0.0.5:10001"}, storage={"path": "/tmp/runs"})
    )
    with pytest.raises(UserError, match=r"is on this machine, but Ray Client"):
        check_storage_reach(spec, nodes=1, declared=False)


def test_a_trial_whose_workers_never_fit_together_is_refused_with_the_numbers() -> None:
    """Each worker fits on some node, but not all of them at once: the trial would wait for
    its worker group forever."""
    from raytune_ft.launch.resources import decide_placement

    groups = [{"name": "a10", "cpus": 8, "memory": "64Gi", "gpus": 1, "max_nodes": 3}]
    fits = spec_with({"num_workers": 3, "use_gpu": True}, groups)
    assert decide_placement(fits, HEAD_ONLY).trial_capacity(fits) == 1
    with pytest.raises(UserError) as caught:
        decide_placement(spec_with({"num_workers": 4, "use_gpu": True}, groups), HEAD_ONLY)
    assert caught.value.problems == [
        "scaling: a trial needs 4 workers of 1 CPU, 1 GPU at once, but the cluster holds at "
        "most 3 such workers (3 × a10 (8 CPU, 1 GPU)); expected scaling.num_workers <= 3, "
        "smaller workers, or more nodes (cluster.node_groups)"
    ]


def test_a_local_ray_runs_more_cpu_workers_than_cores_but_not_more_gpus() -> None:
    from raytune_ft.launch.resources import decide_placement

    gpu_box = [{"Alive": True, "NodeManagerHostname": "box", "Resources": {"CPU": 3, "GPU": 1}}]
    local = {"num_workers": 4}
    cpu = decide_placement(spec_with(local | {"use_gpu": False}), gpu_box, local_cpus=2)
    assert not cpu.use_gpu and cpu.trial_fits(spec_with(local)) is None
    with pytest.raises(UserError, match=r"^scaling: a trial needs 4 workers of 1 GPU at once"):
        decide_placement(spec_with(local | {"use_gpu": True}), gpu_box, local_cpus=2)
