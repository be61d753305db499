"""What the cluster can hold, from the spec's declared node groups and the live nodes.

An autoscaling cluster whose GPU groups start at zero shows no GPUs at start: reading only
`ray.cluster_resources()` then would run a sweep on CPU, one trial at a time. Declared node
groups (`cluster.node_groups`) say what the autoscaler can add, so GPU use and trial
concurrency follow the cluster's shape, trials queue until nodes arrive, and a worker that no
node type can hold is refused before launch. Pure functions over `NodeShape`s: unit-tested
without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec


@dataclass(frozen=True)
class NodeShape:
    """One kind of node: what each offers to Ray, and how many there can be."""

    name: str
    cpus: float
    gpus: float
    count: int
    resources: dict[str, float] = field(default_factory=dict)

    def offers(self) -> dict[str, float]:
        return {"CPU": self.cpus, "GPU": self.gpus} | self.resources

    def worker_slots(self, need: dict[str, float]) -> int:
        """How many workers with these needs fit on one such node."""
        offered = self.offers()
        slots = [int(offered.get(name, 0.0) // amount + 1e-9) for name, amount in need.items()]
        return min(slots) if slots else 0


def declared_shapes(spec: ExperimentSpec) -> list[NodeShape]:
    return [
        NodeShape(g.name, g.cpus, g.gpus, g.max_nodes, dict(g.resources))
        for g in spec.cluster.node_groups
    ]


def live_shapes(nodes: list[dict], local_cpus: int | None = None) -> list[NodeShape]:
    """The alive nodes of `ray.nodes()`, one shape each. `local_cpus`: for a Ray this process
    started, the real cores (its extra logical CPU is for trial drivers, not workers)."""
    shapes = []
    for node in nodes:
        if not node.get("Alive"):
            continue
        offered = dict(node.get("Resources") or {})
        cpus = offered.pop("CPU", 0.0) if local_cpus is None else float(local_cpus)
        offered.pop("CPU", None)
        gpus = offered.pop("GPU", 0.0)
        custom = {
            k: v
            for k, v in offered.items()
            if k not in ("memory", "object_store_memory") and not k.startswith("node:")
        }
        shapes.append(NodeShape(node.get("NodeManagerHostname", "node"), cpus, gpus, 1, custom))
    return shapes


def autoscaler_shapes(config: object | None) -> list[NodeShape]:
    """The node types an autoscaler may start, from Ray's cluster config (KubeRay and `ray up`
    publish it in the GCS); [] without an autoscaler. An unlimited group counts as 1,000."""
    shapes = []
    for group in getattr(config, "node_group_configs", []):
        offered = dict(group.resources)
        count = group.max_count if group.max_count >= 0 else 1000
        if count == 0:
            continue
        cpus, gpus = offered.pop("CPU", 0.0), offered.pop("GPU", 0.0)
        custom = {k: v for k, v in offered.items() if k not in ("memory", "object_store_memory")}
        shapes.append(NodeShape(group.name or "node-type", cpus, gpus, count, custom))
    return shapes


def check_worker_fits(spec: ExperimentSpec, use_gpu: bool, shapes: list[NodeShape]) -> None:
    """Refuse a worker that no node type can hold: it would wait for a node forever."""
    need = spec.scaling.worker_resources(use_gpu)
    if any(shape.worker_slots(need) >= 1 for shape in shapes):
        return
    wanted = ", ".join(f"{_amount(v)} {k}" for k, v in need.items())
    largest = ", ".join(
        f"{s.name} ({', '.join(f'{_amount(v)} {k}' for k, v in s.offers().items() if v)})"
        for s in shapes
    )
    hint = (
        ""
        if spec.cluster.node_groups
        else "; if the autoscaler can add larger nodes, declare them in cluster.node_groups"
    )
    raise UserError(
        f"scaling: each worker needs {wanted}, but no node type has that much "
        f"(nodes: {largest or 'none'}); expected at most what one node offers{hint}"
    )


def trial_fits(
    spec: ExperimentSpec, use_gpu: bool, shapes: list[NodeShape], oversubscribe_cpu: bool
) -> str | None:
    """Why a trial's workers can never all run at once (they start together or not at all:
    a Ray Train worker group is one placement group), or None. `oversubscribe_cpu`: a Ray
    this process started counts CPUs loosely (more workers than cores still run)."""
    need = spec.scaling.worker_resources(use_gpu)
    if oversubscribe_cpu:
        need = {k: v for k, v in need.items() if k != "CPU"}
    if not need:
        return None
    slots = sum(shape.count * shape.worker_slots(need) for shape in shapes)
    workers = spec.scaling.num_workers
    if slots >= workers:
        return None
    wanted = ", ".join(f"{_amount(v)} {k}" for k, v in need.items())
    offered = "; ".join(f"{s.count} × {s.name} ({_offer(s)})" for s in shapes)
    return (
        f"a trial needs {workers} workers of {wanted} at once, but the cluster holds at most "
        f"{slots} such workers ({offered or 'no nodes'}); expected scaling.num_workers <= "
        f"{slots}, smaller workers, or more nodes (cluster.node_groups)"
    )


def trial_capacity(spec: ExperimentSpec, use_gpu: bool, shapes: list[NodeShape]) -> int:
    """How many whole trials (all their workers at once) the cluster can hold at its largest."""
    need = spec.scaling.worker_resources(use_gpu)
    slots = sum(shape.count * shape.worker_slots(need) for shape in shapes)
    return max(1, slots // spec.scaling.num_workers)


def check_storage_reach(spec: ExperimentSpec, nodes: int, declared: bool) -> None:
    """A folder on this node's disk is invisible to workers on other nodes: their checkpoints
    would land on their own disks and be lost. Refused, unless it is declared shared."""
    storage = spec.storage
    if storage.is_remote or storage.shared:
        return
    if spec.cluster.address.startswith("ray://"):
        # Ray Client: this driver is not on the cluster at all.
        raise UserError(
            f"storage.path: {storage.path!r} is on this machine, but Ray Client "
            f"({spec.cluster.address}) runs the workers on the cluster's nodes; expected "
            "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, or a path mounted on this machine and on "
            "every node with storage.shared: true"
        )
    if nodes <= 1 and not declared:
        return
    where = f"{nodes} nodes" if nodes > 1 else "declared node groups (more nodes than this one)"
    raise UserError(
        f"storage.path: {storage.path!r} is on this node's disk, but the cluster has {where}; "
        "expected s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, or a path mounted at the same place "
        "on every node with storage.shared: true"
    )


def _offer(shape: NodeShape) -> str:
    return ", ".join(f"{_amount(v)} {k}" for k, v in shape.offers().items() if v)


def _amount(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Placement:
    """Decided once Ray is connected: devices, the node types, how many trials fit."""

    use_gpu: bool
    shapes: list[NodeShape]
    nodes: int
    oversubscribe_cpu: bool = False  # a Ray this process started for itself

    def trial_capacity(self, spec: ExperimentSpec) -> int:
        return trial_capacity(spec, self.use_gpu, self.shapes)

    def trial_fits(self, spec: ExperimentSpec) -> str | None:
        return trial_fits(spec, self.use_gpu, self.shapes, self.oversubscribe_cpu)


def check_trial_fits(spec: ExperimentSpec, placement: Placement, label: str) -> None:
    """Refuse, before launch, a trial whose workers can never all run at once."""
    problem = placement.trial_fits(spec)
    if problem is not None:
        raise UserError(f"{label}: {problem}")


def plan_placement(spec: ExperimentSpec) -> Placement:
    """GPU use, fit and storage checks against the connected cluster (Ray must be connected)."""
    import os

    import ray

    from raytune_ft.launch.local_ray import starts_local_ray

    local = starts_local_ray(spec.cluster)
    if local:
        return decide_placement(spec, ray.nodes(), local_cpus=os.cpu_count() or 1)
    try:  # a private API (what Ray Data reads too): without it, the spec's groups only
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:
        config = None
    return decide_placement(spec, ray.nodes(), autoscaled=autoscaler_shapes(config))


def decide_placement(
    spec: ExperimentSpec,
    nodes: list[dict],
    local_cpus: int | None = None,
    autoscaled: list[NodeShape] | None = None,
) -> Placement:
    """The placement for `ray.nodes()`; `local_cpus` when this process started Ray itself
    (then declared node groups describe some other cluster, not this machine). The cluster's
    shape is the spec's node groups, else the autoscaler's node types, else the live nodes."""
    from raytune_ft.train.policies import choose_use_gpu

    local = local_cpus is not None
    live = live_shapes(nodes, local_cpus)
    declared = [] if local else (declared_shapes(spec) or autoscaled or [])
    has_gpu = any(s.gpus > 0 for s in live + declared)
    lacking = "this machine has no CUDA GPU" if local else "no node of the cluster has GPUs"
    use_gpu = choose_use_gpu(spec, has_gpu, lacking + ("" if local else " (live or declared)"))
    check_worker_fits(spec, use_gpu, live + declared)
    placement = Placement(use_gpu, declared or live, len(live), oversubscribe_cpu=local)
    check_trial_fits(spec, placement, "scaling")
    # Spec groups are worker nodes beside the head; autoscaler node types include the head's.
    many = bool(spec.cluster.node_groups) or sum(s.count for s in autoscaled or []) > 1
    check_storage_reach(spec, len(live), declared=many and not local)
    return placement
