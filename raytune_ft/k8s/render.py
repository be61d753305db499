"""A validated spec -> the Kubernetes objects that run it on KubeRay, as plain dicts.

Pure: the only I/O is reading the small local files the spec names (its data, a model folder
beside it), which travel in a ConfigMap. `manifests.py` validates and writes the objects.

What is rendered, and why (KubeRay v1.7.0, Ray 2.60):
- a ServiceAccount for every pod, unless `cluster.kubernetes.service_account` names an existing
  one. KubeRay binds its autoscaler Role to the head pod's serviceAccountName, whatever it is
  (raycluster_controller.go reconcileAutoscalerRoleBinding, utils.GetHeadGroupServiceAccountName),
  and refuses a named account that does not exist, so no Role or RoleBinding is rendered here.
  The account does not mount its token; the head pod does, for the autoscaler sidecar;
- a ConfigMap with the spec file as written and the files it reads, mounted at SPEC_MOUNT with
  the spec folder's layout, so paths relative to the spec resolve in every pod;
- a PersistentVolumeClaim (ReadWriteMany) for a local storage.path, mounted at that path in
  every pod; s3:// and gs:// storage instead read credentials from a Secret, by reference;
- a RayJob that runs `python -m raytune_ft train|tune` on its own cluster, deleted after the
  job, and a RayCluster with the same spec for interactive use.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import yaml

from raytune_ft import __version__
from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec
from raytune_ft.spec.sections import DataSpec, NodeGroupSpec, TolerationSpec

# The runtime image (cluster/Dockerfile): Ray 2.60.0 (pyproject's pin), user ray = uid 1000 in
# group users = gid 100. KubeRay reads rayVersion to enable features (authOptions needs 2.52+).
RAY_VERSION = "2.60.0"
RAY_UID = 1000
RAY_GID = 100
SPEC_MOUNT = "/home/ray/spec"
GCS_KEY_DIR = "/var/run/secrets/raytune-ft/gcs"
GCS_KEY_FILE = "key.json"
GCS_SECRET_KEY = "GOOGLE_APPLICATION_CREDENTIALS_JSON"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# A ConfigMap holds 1 MiB in all (the API server's limit); the rest is for names and metadata.
CONFIGMAP_MAX_BYTES = 900 * 1024
# One worker's node when the spec declares no node groups: room for MiniLM-sized models.
DEFAULT_WORKER_MEMORY = "8Gi"
# Like cluster/*.yaml's idle_timeout_minutes: a sweep's next trial often reuses an idle node.
AUTOSCALER_IDLE_TIMEOUT_S = 600
# The submitter runs only `ray job submit` and follows the logs; KubeRay's default sizes.
SUBMITTER_RESOURCES = {
    "limits": {"cpu": "1", "memory": "1Gi"},
    "requests": {"cpu": "500m", "memory": "200Mi"},
}
HEAD_PORTS = [
    {"containerPort": 6379, "name": "gcs-server"},
    {"containerPort": 8265, "name": "dashboard"},
    {"containerPort": 10001, "name": "client"},
]
# Ray's KubeRay autoscaler reads rayStartParams.resources by dropping the first and last
# character and every backslash, then requires whole numbers (ray/autoscaler/_private/kuberay/
# autoscaling_config.py _get_custom_resources); KubeRay puts the value into `ray start` through
# a shell, so names are limited to characters no shell treats specially inside double quotes.
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9_.:/-]+")
_CONFIG_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]")


@dataclass(frozen=True)
class RenderRequest:
    """What `raytune-ft k8s render` was given.

    `spec` is the spec as validated (with the --cluster file and every --set); `spec_file` is
    the file as the user wrote it, which the job reads with `overrides` (the user's --set)
    applied again; `written` tells which paths were written absolute, which the job could not
    find. `cluster_replaced`: a --cluster file replaced the spec's cluster section,
    which the job's copy of the spec still has.
    """

    spec: ExperimentSpec
    spec_file: Path
    written: Mapping[str, Any]  # the spec file's mapping with the --set applied, unvalidated
    overrides: tuple[str, ...] = ()
    cluster_replaced: bool = False


@dataclass(frozen=True)
class ShippedFile:
    """A local file the job reads, placed at SPEC_MOUNT/`rel`; `field` names who reads it."""

    field: str
    rel: str
    content: bytes


# ---------------------------------------------------------------------------------- entry


def render(request: RenderRequest) -> list[dict[str, Any]]:
    """Every object, in the order they should be created."""
    spec = request.spec
    volume = storage_volume_path(spec)
    groups = worker_groups(spec)
    _check_placement(spec, groups)
    shipped = shipped_files(request.spec_file, spec, volume, request.written)
    config_map = _config_map(spec, shipped)
    cluster = cluster_spec(spec, groups, config_map_items(config_map, shipped))
    objects: list[dict[str, Any]] = []
    if spec.cluster.kubernetes.service_account is None:
        objects.append(_service_account(spec))
    objects.append(config_map)
    if volume is not None and spec.cluster.kubernetes.pvc.create:
        objects.append(_pvc(spec))
    objects.append(_object("ray.io/v1", "RayCluster", spec.name, spec, {"spec": cluster}))
    objects.append(_ray_job(request, groups, cluster))
    return objects


def service_account_name(spec: ExperimentSpec) -> str:
    return spec.cluster.kubernetes.service_account or f"{spec.name}-ray"


def config_map_name(spec: ExperimentSpec) -> str:
    return f"{spec.name}-spec"


def pvc_name(spec: ExperimentSpec) -> str:
    return spec.cluster.kubernetes.pvc.name or f"{spec.name}-storage"


def labels(spec: ExperimentSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "raytune-ft",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/version": __version__,
    }


def _object(
    api_version: str, kind: str, name: str, spec: ExperimentSpec, body: dict[str, Any]
) -> dict[str, Any]:
    metadata = {
        "name": name,
        "namespace": spec.cluster.kubernetes.namespace,
        "labels": labels(spec),
    }
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


# ---------------------------------------------------------------------------------- storage


def storage_volume_path(spec: ExperimentSpec) -> str | None:
    """Where the PVC is mounted (storage.path itself); None for s3:// and gs:// storage."""
    storage = spec.storage
    if storage.is_remote:
        return None
    path = storage.path.removeprefix("file://") if storage.scheme == "file" else storage.path
    if not path.startswith("/"):
        raise UserError(
            f"storage.path: {storage.path!r} is relative; on Kubernetes expected an absolute path "
            "(a ReadWriteMany volume is mounted there in every pod, e.g. --set "
            "storage.path=/mnt/raytune-ft), s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"
        )
    path = os.path.normpath(path)
    if _inside(path, SPEC_MOUNT) or _inside(SPEC_MOUNT, path) or _inside(path, "/dev"):
        raise UserError(
            f"storage.path: {path} overlaps {SPEC_MOUNT} (the spec's files) or /dev; "
            "expected a folder of its own, e.g. /mnt/raytune-ft"
        )
    return path


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _pvc(spec: ExperimentSpec) -> dict[str, Any]:
    pvc = spec.cluster.kubernetes.pvc
    body: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],  # every pod of every node writes checkpoints there
        "resources": {"requests": {"storage": pvc.size}},
    }
    if pvc.storage_class is not None:
        body["storageClassName"] = pvc.storage_class
    return _object("v1", "PersistentVolumeClaim", pvc_name(spec), spec, {"spec": body})


def _credentials(spec: ExperimentSpec) -> tuple[list[dict], list[dict], list[dict]]:
    """(env, volumes, volume mounts) that give Ray's containers the storage credentials.

    Only references: the Secret's values never appear in a manifest.
    """
    secret = spec.cluster.kubernetes.credentials_secret
    if secret is None:
        return [], [], []  # the pods' own identity (IRSA, Workload Identity) or none needed
    if spec.storage.scheme == "s3":
        env = [_secret_env(name, secret, name) for name in S3_SECRET_KEYS]
        # Temporary credentials (STS) carry a session token; long-lived keys do not.
        env.append(_secret_env("AWS_SESSION_TOKEN", secret, "AWS_SESSION_TOKEN", optional=True))
        return env, [], []
    if spec.storage.scheme == "gs":
        # google-auth reads a key file named by GOOGLE_APPLICATION_CREDENTIALS, not its content.
        volume = {
            "name": "gcs-credentials",
            "secret": {
                "secretName": secret,
                "items": [{"key": GCS_SECRET_KEY, "path": GCS_KEY_FILE}],
                "defaultMode": 0o440,
            },
        }
        mount = {"name": "gcs-credentials", "mountPath": GCS_KEY_DIR, "readOnly": True}
        env = [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_KEY_DIR}/{GCS_KEY_FILE}"}]
        return env, [volume], [mount]
    raise UserError(
        f"cluster.kubernetes.credentials_secret: {secret!r} is set, but storage.path "
        f"{spec.storage.path!r} is a local path on a volume; expected it only with s3:// or "
        "gs:// storage"
    )


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


# ---------------------------------------------------------------------------------- files


def shipped_files(
    spec_file: Path, spec: ExperimentSpec, volume: str | None, written: Mapping[str, Any]
) -> list[ShippedFile]:
    """The spec file and every local file it reads, each once, relative to the spec's folder.

    Files on the storage volume are not shipped (the pods mount them); any other file outside
    the spec's folder, or named by a path of this machine, could not be found in the pods and is
    refused.
    """
    base = spec_file.resolve().parent
    found: dict[str, tuple[str, Path]] = {spec_file.name: ("the spec file", spec_file)}
    for field, files in _local_inputs(spec, volume, written):
        for file in files:
            rel = os.path.relpath(os.path.normpath(file), base)
            if rel == ".." or rel.startswith(".." + os.sep):
                raise UserError(
                    f"{field}: {file} is outside the spec's folder {base}; {_EXPECTED_PLACE}"
                )
            found.setdefault(Path(rel).as_posix(), (field, file))
    shipped = [
        ShippedFile(field, rel, Path(file).read_bytes()) for rel, (field, file) in found.items()
    ]
    _check_size(shipped)
    return shipped


_EXPECTED_PLACE = (
    "expected a path relative to the spec file (its folder travels in a ConfigMap), a path on "
    "the storage volume (under storage.path), or a hub dataset or model id"
)


def _local_inputs(
    spec: ExperimentSpec, volume: str | None, written: Mapping[str, Any]
) -> list[tuple[str, list[Path]]]:
    """(field, files) for every data source and model folder that lives on this machine."""
    from raytune_ft.data.loading import resolve_files  # "matches no files" is exit 2

    def on_volume(path: str) -> bool:
        return volume is not None and _inside(os.path.normpath(path), volume)

    inputs: list[tuple[str, list[Path]]] = []
    sections: list[tuple[tuple[str | int, ...], DataSpec]] = [(("data",), spec.data)]
    sections += [(("stages", i, "data"), s.data) for i, s in enumerate(spec.stages or []) if s.data]
    for at, data in sections:
        for split in ("train", "validation", "test"):
            source = getattr(data, split)
            if source is None or source.path is None or "://" in source.path:
                continue
            if on_volume(source.path):
                continue  # read from the volume in the pods
            field = ".".join(map(str, (*at, split)))
            _refuse_absolute(f"{field}.path", _dig(written, *at, split, "path"))
            inputs.append((f"{field}.path", resolve_files(source, field)))
    model = Path(spec.model.name_or_path).expanduser()
    if model.is_dir() and not on_volume(str(model)):
        _refuse_absolute("model.name_or_path", _dig(written, "model", "name_or_path"))
        if not model.is_absolute():  # the spec's loader resolves a folder beside the spec
            raise UserError(
                f"model.name_or_path: {spec.model.name_or_path!r} is a folder of the working "
                f"directory, not beside the spec; {_EXPECTED_PLACE}"
            )
        files = sorted(p for p in model.rglob("*") if p.is_file() and ".git" not in p.parts)
        inputs.append(("model.name_or_path", files))
    return inputs


def _dig(mapping: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(mapping, dict):
            mapping = mapping.get(key)
        elif isinstance(mapping, list) and isinstance(key, int) and key < len(mapping):
            mapping = mapping[key]
        else:
            return None
    return mapping


def _refuse_absolute(field: str, written: Any) -> None:
    """A path of this machine, as the user wrote it: the job reads the spec file as written."""
    if isinstance(written, str) and Path(written).expanduser().is_absolute():
        raise UserError(f"{field}: {written} is a path of this machine; {_EXPECTED_PLACE}")


def _check_size(shipped: list[ShippedFile]) -> None:
    total = sum(len(f.content) for f in shipped)
    if total <= CONFIGMAP_MAX_BYTES:
        return
    by_field: dict[str, list[ShippedFile]] = {}
    for file in shipped:
        by_field.setdefault(file.field, []).append(file)
    field, files = max(by_field.items(), key=lambda item: sum(len(f.content) for f in item[1]))
    size = sum(len(f.content) for f in files)
    where = (
        "the model on the storage volume or a hub model id"
        if field == "model.name_or_path"
        else "the data on the storage volume (an absolute path under storage.path) or a hub "
        "dataset (hub:)"
    )
    count = f"{len(files)} file" + ("s" if len(files) > 1 else "")
    raise UserError(
        f"{field}: {count}, {_kib(size)} ({_kib(total)} in all with the spec); a ConfigMap "
        f"carries at most {_kib(CONFIGMAP_MAX_BYTES)}; expected {where}"
    )


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB"


def _config_map(spec: ExperimentSpec, shipped: list[ShippedFile]) -> dict[str, Any]:
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for file, key in zip(shipped, config_keys(shipped), strict=True):
        text = _plain_text(file.content)
        if text is not None:
            data[key] = text
        else:
            binary[key] = _base64(file.content)
    body: dict[str, Any] = {}
    if data:
        body["data"] = data
    if binary:
        body["binaryData"] = binary
    return _object("v1", "ConfigMap", config_map_name(spec), spec, body)


def config_keys(shipped: list[ShippedFile]) -> list[str]:
    """A ConfigMap key per file: its path with '/' as '__' (keys cannot hold '/'), made unique."""
    keys: list[str] = []
    for file in shipped:
        key = _CONFIG_KEY_CHARS.sub("_", file.rel.replace("/", "__"))
        if key in keys or len(key) > 253 or key in (".", ".."):
            key = f"{key[:200]}-{sha256(file.rel.encode()).hexdigest()[:12]}"
        keys.append(key)
    return keys


def config_map_items(config_map: dict[str, Any], shipped: list[ShippedFile]) -> list[dict]:
    return [{"key": k, "path": f.rel} for f, k in zip(shipped, config_keys(shipped), strict=True)]


def _plain_text(content: bytes) -> str | None:
    """The content as text when YAML carries it unchanged; else None (it goes as binaryData).

    CR, NEL and other control characters are line breaks or escapes to some YAML readers and
    not to others; base64 carries every byte exactly.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ch < " " and ch not in "\n\t") or "\x7f" <= ch <= "\x9f" for ch in text):
        return None
    if any(ch in text for ch in ("\u2028", "\u2029", "\ufeff")):
        return None
    return text


def _base64(content: bytes) -> str:
    import base64

    return base64.b64encode(content).decode("ascii")


# ---------------------------------------------------------------------------------- groups


def worker_groups(spec: ExperimentSpec) -> list[NodeGroupSpec]:
    """The declared node groups, or one group sized to one worker that scales from zero."""
    if spec.cluster.node_groups:
        for index, group in enumerate(spec.cluster.node_groups):
            _check_resources(f"cluster.node_groups[{index}].resources", group.resources)
        return list(spec.cluster.node_groups)
    scaling = spec.scaling
    gpus = math.ceil(scaling.gpus_per_worker) if scaling.use_gpu is True else 0
    trials = (spec.sweep.max_concurrent_trials or 1) if spec.sweep is not None else 1
    resources = {name: float(math.ceil(v)) for name, v in scaling.resources_per_worker.items()}
    _check_resources("scaling.resources_per_worker", resources)
    return [
        NodeGroupSpec(
            name="gpu" if gpus else "cpu",
            cpus=scaling.cpus_per_worker,
            memory=DEFAULT_WORKER_MEMORY,
            gpus=gpus,
            min_nodes=0,
            max_nodes=min(scaling.num_workers * trials, 10000),
            resources=resources,
        )
    ]


def _check_resources(field: str, resources: dict[str, float]) -> None:
    for name, amount in resources.items():
        if not _RESOURCE_NAME.fullmatch(name):
            raise UserError(
                f"{field}: {name!r}; expected a resource name of letters, digits and _ . : / -"
            )
        if amount != int(amount):
            raise UserError(
                f"{field}: {name}: {amount:g}; expected a whole number (the KubeRay autoscaler "
                "reads whole amounts per node)"
            )


def _check_placement(spec: ExperimentSpec, groups: list[NodeGroupSpec]) -> None:
    """What the job would refuse once its cluster is up, refused now: a GPU run without GPU
    nodes, a worker no node can hold."""
    from raytune_ft.launch.resources import NodeShape, check_worker_fits
    from raytune_ft.train.policies import choose_use_gpu

    shapes = [NodeShape(g.name, g.cpus, g.gpus, g.max_nodes, dict(g.resources)) for g in groups]
    has_gpu = any(g.gpus > 0 for g in groups)
    use_gpu = choose_use_gpu(spec, has_gpu, "no node group has GPUs (cluster.node_groups)")
    check_worker_fits(spec, use_gpu, shapes)


def job_node_groups(groups: list[NodeGroupSpec]) -> str:
    """The groups as a --set value: what the job's placement reads (launch/resources.py).
    Amounts are whole: worker_groups checked them."""
    entries = []
    for group in groups:
        entry: dict[str, Any] = {"name": group.name, "cpus": group.cpus, "memory": group.memory}
        if group.gpus:
            entry["gpus"] = group.gpus
        entry["max_nodes"] = group.max_nodes
        if group.resources:
            entry["resources"] = {k: int(v) for k, v in sorted(group.resources.items())}
        entries.append(entry)
    return json.dumps(entries)


# ---------------------------------------------------------------------------------- pods


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": RAY_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RAY_UID,
        "runAsGroup": RAY_GID,
        # The volume's files belong to the image's group; changed only at the volume's root
        # when it differs, not file by file on every mount (slow on a large volume).
        "fsGroup": RAY_GID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def quarter(memory: str) -> str:
    """A quarter of a memory quantity, in the largest unit that keeps it whole."""
    from raytune_ft.k8s.validate import quantity

    amount = quantity(memory)
    assert amount is not None  # the spec's pattern admits only quantities
    bytes_ = int(amount / 4)
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("G", 10**9), ("M", 10**6)):
        if bytes_ and bytes_ % size == 0:
            return f"{bytes_ // size}{unit}"
    return str(bytes_)


def _resources(cpus: int, memory: str, gpus: int = 0, gpu_resource: str = "") -> dict[str, Any]:
    # Requests equal limits: a Guaranteed pod, and GPUs must be requested exactly anyway.
    amounts = {"cpu": str(cpus), "memory": memory}
    if gpus:
        amounts[gpu_resource] = str(gpus)
    return {"limits": dict(amounts), "requests": dict(amounts)}


def _toleration(t: TolerationSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"key": t.key, "operator": t.operator}
    if t.value is not None:
        out["value"] = t.value
    if t.effect is not None:
        out["effect"] = t.effect
    return out


def _tolerations(group: NodeGroupSpec) -> list[dict[str, Any]]:
    given = [_toleration(t) for t in group.tolerations]
    if group.gpus and not any(t.key == group.gpu_resource for t in group.tolerations):
        # GPU nodes are usually tainted with their resource name (GKE, AKS, EKS GPU AMIs).
        given.append({"key": group.gpu_resource, "operator": "Exists", "effect": "NoSchedule"})
    return given


@dataclass(frozen=True)
class _PodParts:
    """What every Ray pod shares: volumes, mounts and env for the spec, storage and secrets."""

    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    env: list[dict[str, Any]]


def _pod_parts(spec: ExperimentSpec, items: list[dict]) -> _PodParts:
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": config_map_name(spec), "items": items}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True}]
    path = storage_volume_path(spec)
    if path is not None:
        volumes.append({"name": "storage", "persistentVolumeClaim": {"claimName": pvc_name(spec)}})
        mounts.append({"name": "storage", "mountPath": path})
    env, secret_volumes, secret_mounts = _credentials(spec)
    return _PodParts(volumes + secret_volumes, mounts + secret_mounts, env)


def _pod(
    spec: ExperimentSpec,
    parts: _PodParts,
    container: dict[str, Any],
    shm: str,
    head: bool,
) -> dict[str, Any]:
    kube = spec.cluster.kubernetes
    shm_volume = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}
    full = {
        "name": container["name"],
        "image": kube.image,
        "imagePullPolicy": kube.image_pull_policy,
        **{k: v for k, v in container.items() if k != "name"},
        "securityContext": container_security(),
        "volumeMounts": [*parts.mounts, {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if parts.env:
        full["env"] = parts.env
    return {
        "serviceAccountName": service_account_name(spec),
        # The autoscaler sidecar in the head pod calls the Kubernetes API; nothing else does.
        "automountServiceAccountToken": head,
        "securityContext": pod_security(),
        "containers": [full],
        "volumes": [*parts.volumes, shm_volume],
    }


def _head_group(spec: ExperimentSpec, parts: _PodParts) -> dict[str, Any]:
    head = spec.cluster.kubernetes.head
    container = {
        "name": "ray-head",
        "ports": HEAD_PORTS,
        "resources": _resources(head.cpus, head.memory),
    }
    return {
        # No Ray CPUs: tasks, actors and Train workers go to worker pods; the job's driver
        # (pre-flight, data preparation) runs in the head's own container.
        "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
        "template": {"spec": _pod(spec, parts, container, quarter(head.memory), head=True)},
    }


def _worker_group(spec: ExperimentSpec, group: NodeGroupSpec, parts: _PodParts) -> dict[str, Any]:
    params = {"num-cpus": str(group.cpus), "num-gpus": str(group.gpus)}
    if group.resources:
        whole = {k: int(v) for k, v in sorted(group.resources.items())}
        # '"{\"Custom\": 1}"': the form the KubeRay autoscaler and `ray start` both read.
        params["resources"] = json.dumps(json.dumps(whole))
    container = {
        "name": "ray-worker",
        "resources": _resources(group.cpus, group.memory, group.gpus, group.gpu_resource),
    }
    pod = _pod(spec, parts, container, group.shm or quarter(group.memory), head=False)
    if group.node_selector:
        pod["nodeSelector"] = dict(sorted(group.node_selector.items()))
    tolerations = _tolerations(group)
    if tolerations:
        pod["tolerations"] = tolerations
    return {
        "groupName": group.name,
        "replicas": group.min_nodes,
        "minReplicas": group.min_nodes,
        "maxReplicas": group.max_nodes,
        "rayStartParams": params,
        "template": {"spec": pod},
    }


def cluster_spec(
    spec: ExperimentSpec, groups: list[NodeGroupSpec], items: list[dict]
) -> dict[str, Any]:
    """The RayCluster spec; the RayJob's rayClusterSpec is the same."""
    kube = spec.cluster.kubernetes
    parts = _pod_parts(spec, items)
    body: dict[str, Any] = {"rayVersion": RAY_VERSION}
    if kube.ray_token_secret is not None:
        # KubeRay injects RAY_AUTH_MODE and RAY_AUTH_TOKEN (a secretKeyRef to the Secret's key
        # auth_token) into every Ray container and the submitter, and uses it itself.
        body["authOptions"] = {"mode": "token", "secretName": kube.ray_token_secret}
    body["enableInTreeAutoscaling"] = True
    body["autoscalerOptions"] = {
        "upscalingMode": "Default",
        "idleTimeoutSeconds": AUTOSCALER_IDLE_TIMEOUT_S,
        "imagePullPolicy": kube.image_pull_policy,
        "securityContext": container_security(),
    }
    body["headGroupSpec"] = _head_group(spec, parts)
    body["workerGroupSpecs"] = [_worker_group(spec, g, parts) for g in groups]
    return body


# ---------------------------------------------------------------------------------- job


def job_overrides(request: RenderRequest, groups: list[NodeGroupSpec]) -> list[str]:
    """The --set list the job runs with: the user's, then what the cluster makes true."""
    spec = request.spec
    sets = list(request.overrides)
    if request.cluster_replaced or not spec.cluster.node_groups:
        # The job's copy of the spec lacks these groups; its placement (GPU or not, trials at
        # once, whether a worker fits) must see the groups the autoscaler can add.
        sets.append(f"cluster.node_groups={job_node_groups(groups)}")
    if storage_volume_path(spec) is not None:
        sets.append("storage.shared=true")  # the volume is mounted at that path in every pod
    return sets


def entrypoint(request: RenderRequest, groups: list[NodeGroupSpec]) -> str:
    kind = "tune" if request.spec.sweep is not None else "train"
    args = ["python", "-m", "raytune_ft", kind, f"{SPEC_MOUNT}/{request.spec_file.name}"]
    for item in job_overrides(request, groups):
        args += ["--set", item]
    # KubeRay runs `ray job submit -- <entrypoint>` through a shell, and Ray's CLI quotes the
    # words again for the job's shell: shell quoting survives both.
    return shlex.join(args)


def runtime_env_yaml(spec: ExperimentSpec) -> str:
    from raytune_ft.launch.local_ray import RUNTIME_ENV_VARS

    env: dict[str, Any] = {"env_vars": {**RUNTIME_ENV_VARS, **spec.cluster.runtime_env.env_vars}}
    if spec.cluster.runtime_env.pip:
        env["pip"] = list(spec.cluster.runtime_env.pip)
    return yaml.safe_dump(env, sort_keys=False, default_flow_style=False)


def _submitter(spec: ExperimentSpec) -> dict[str, Any]:
    """KubeRay's default submitter pod, plus what every pod here has (non-root, no token)."""
    kube = spec.cluster.kubernetes
    container = {
        "name": "ray-job-submitter",
        "image": kube.image,
        "imagePullPolicy": kube.image_pull_policy,
        "resources": SUBMITTER_RESOURCES,
        "securityContext": container_security(),
    }
    return {
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account_name(spec),
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            "containers": [container],
        }
    }


def _ray_job(
    request: RenderRequest, groups: list[NodeGroupSpec], cluster: dict[str, Any]
) -> dict[str, Any]:
    spec = request.spec
    kube = spec.cluster.kubernetes
    body: dict[str, Any] = {
        "entrypoint": entrypoint(request, groups),
        "runtimeEnvYAML": runtime_env_yaml(spec),
        # A Kubernetes Job submits and then follows the driver's logs: `kubectl logs
        # job/NAME` shows the run, and its pod is non-root like the rest (submitterPodTemplate).
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": kube.ttl_seconds_after_finished,
    }
    if kube.active_deadline_seconds is not None:
        body["activeDeadlineSeconds"] = kube.active_deadline_seconds
    body["rayClusterSpec"] = cluster
    body["submitterPodTemplate"] = _submitter(spec)
    return _object("ray.io/v1", "RayJob", spec.name, spec, {"spec": body})


def _service_account(spec: ExperimentSpec) -> dict[str, Any]:
    # Pods that need the token (the head, for the autoscaler) ask for it themselves.
    return _object(
        "v1",
        "ServiceAccount",
        service_account_name(spec),
        spec,
        {"automountServiceAccountToken": False},
    )
