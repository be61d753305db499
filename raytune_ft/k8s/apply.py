"""`raytune-ft k8s apply | status | logs | delete`: KubeRay objects through the Kubernetes API.

apply: validate offline, then a server-side dry run of every object (so one the API server
rejects stops the apply before anything exists), then create. An object that exists is applied
server-side (the manifest wins for the fields it sets, as `kubectl apply` does), except a RayJob:
it runs once, so applying it again is refused. `--wait` polls the RayJob's status until KubeRay
reports an end.

Exit codes: 0 done (or the job succeeded), 1 the job failed, 2 bad input or an unusable cluster
connection, 124 `--timeout` expired, 130 Ctrl-C (the job keeps running).
"""

from __future__ import annotations

import codecs
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from raytune_ft.errors import UserError
from raytune_ft.k8s.kube_client import (
    CONNECT_TIMEOUT_S,
    FIELD_MANAGER,
    TIMEOUT,
    Cluster,
    api_error_lines,
    api_errors,
    connect,
    status_of,
)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TIMEOUT = 124  # what `timeout(1)` exits with
EXIT_INTERRUPTED = 130  # 128 + SIGINT
POLL_S = 2.0  # KubeRay updates a RayJob's status every few seconds at most
_sleep = time.sleep  # the tests replace it to press Ctrl-C while a command waits
SUBMITTER_CONTAINER = "ray-job-submitter"  # KubeRay's name (utils.SubmitterContainerName)


@dataclass(frozen=True)
class Route:
    """Where a kind lives in the API and which client methods reach it."""

    api: str  # "custom" (CustomObjectsApi), "core" (CoreV1Api), "rbac"
    group: str
    version: str
    plural: str
    suffix: str = ""  # CoreV1Api / RbacAuthorizationV1Api method suffix: create_namespaced_<suffix>

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


ROUTES = {
    "RayJob": Route("custom", "ray.io", "v1", "rayjobs"),
    "RayCluster": Route("custom", "ray.io", "v1", "rayclusters"),
    "RayService": Route("custom", "ray.io", "v1", "rayservices"),
    "ConfigMap": Route("core", "", "v1", "configmaps", "config_map"),
    "Secret": Route("core", "", "v1", "secrets", "secret"),
    "ServiceAccount": Route("core", "", "v1", "serviceaccounts", "service_account"),
    "PersistentVolumeClaim": Route(
        "core", "", "v1", "persistentvolumeclaims", "persistent_volume_claim"
    ),
    "Role": Route("rbac", "rbac.authorization.k8s.io", "v1", "roles", "role"),
    "RoleBinding": Route("rbac", "rbac.authorization.k8s.io", "v1", "rolebindings", "role_binding"),
}
# What a Ray pod needs exists before the Ray objects (kustomize's default order does the same):
# a RayJob created before its ConfigMap would start pods that wait on a missing volume.
APPLY_ORDER = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "RayCluster",
    "RayService",
    "RayJob",
]
# The kustomization fields apply understands; anything else needs kustomize itself.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "metadata", "namespace", "resources"}
# RayJob.status.jobDeploymentStatus values that end --wait (KubeRay v1.7.0, rayjob_types.go).
TERMINAL = {"Complete", "Failed", "ValidationFailed"}
DRY_RUN_VERBS = {
    "created": "would be created",
    "configured": "would be configured",
    "unchanged": "would stay unchanged",
}


# ---- manifests --------------------------------------------------------------------------------


@dataclass
class Manifest:
    """One object to send: where it came from, the document, and its namespace once known."""

    label: str  # `path#2 RayJob/name`, as validate labels it
    doc: dict[str, Any]
    kustomize_namespace: str | None = None
    namespace: str = ""

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name") or "")

    @property
    def route(self) -> Route:
        return ROUTES[self.kind]

    @property
    def what(self) -> str:
        meta = self.doc.get("metadata") or {}
        return f"{self.kind}/{self.name or str(meta.get('generateName') or '') + '*'}"

    def body(self) -> dict[str, Any]:
        body = copy.deepcopy(self.doc)
        body.setdefault("metadata", {})["namespace"] = self.namespace
        return body


def _is_kustomization_file(path: Path) -> bool:
    from raytune_ft.k8s.validate import KUSTOMIZATION_FILES

    return path.name in KUSTOMIZATION_FILES


def _kustomization_in(folder: Path) -> Path | None:
    from raytune_ft.k8s.validate import KUSTOMIZATION_FILES

    for name in KUSTOMIZATION_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _documents(path: Path, namespace: str | None) -> list[Manifest]:
    from raytune_ft.k8s.validate import document_label, load_file

    loaded = load_file(path)
    if loaded.problem:
        raise UserError(loaded.problem)
    out = []
    for index, doc, _dups in loaded.documents:
        label = document_label(f"{path}#{index}", doc)
        if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
            raise UserError(f"{label}: not a Kubernetes object; expected apiVersion and kind")
        if doc["kind"] == "Kustomization":
            raise UserError(
                f"{label}: a Kustomization outside a kustomization.yaml; expected it in a file "
                "named kustomization.yaml (apply its folder)"
            )
        if doc["kind"] not in ROUTES:
            raise UserError(
                f"{label}: raytune-ft k8s apply does not handle kind {doc['kind']}; expected one "
                f"of: {', '.join(sorted(ROUTES))} (use kubectl for the rest)"
            )
        out.append(Manifest(label, doc, namespace))
    return out


def _kustomize(file: Path, namespace: str | None, seen: set[Path]) -> list[Manifest]:
    """The objects of a kustomization's `resources`, in order; its `namespace` overrides."""
    from raytune_ft.k8s.validate import load_file

    loaded = load_file(file)
    if loaded.problem:
        raise UserError(loaded.problem)
    doc = loaded.documents[0][1] if loaded.documents else {}
    if not isinstance(doc, dict):
        raise UserError(f"{file}: expected a kustomization (a mapping with resources)")
    unsupported = sorted(set(doc) - KUSTOMIZATION_KEYS)
    if unsupported:
        raise UserError(
            f"{file}: {', '.join(unsupported)}: raytune-ft k8s apply reads only a kustomization's "
            f"resources and namespace; expected those alone, or `kubectl apply -k {file.parent}`"
        )
    # kustomize: an outer kustomization's namespace wins over the inner one's
    namespace = namespace or doc.get("namespace") or None
    out: list[Manifest] = []
    for entry in doc.get("resources") or []:
        target = file.parent / str(entry)
        if "://" in str(entry) or not target.exists():
            raise UserError(
                f"{file}: resources: {entry}: not a local file or folder; expected a path next to "
                "the kustomization"
            )
        if target.resolve() in seen:
            continue
        seen.add(target.resolve())
        if target.is_dir():
            inner = _kustomization_in(target)
            if inner is None:
                raise UserError(f"{file}: resources: {entry}: a folder without kustomization.yaml")
            out += _kustomize(inner, namespace, seen)
        else:
            out += _documents(target, namespace)
    return out


def load_manifests(paths: list[Path]) -> list[Manifest]:
    """Every object in these files and folders, dependencies first (see APPLY_ORDER).

    A folder with a kustomization.yaml (or that file itself) contributes its `resources`;
    another folder, every *.yaml and *.yml beneath it.
    """
    manifests: list[Manifest] = []
    seen: set[Path] = set()
    for path in paths:
        kustomization = (path if path.is_file() and _is_kustomization_file(path) else None) or (
            _kustomization_in(path) if path.is_dir() else None
        )
        if kustomization is not None:
            manifests += _kustomize(kustomization, None, seen)
        elif path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml")
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts[:-1])
            )
            for file in files:
                if _is_kustomization_file(file):
                    raise UserError(
                        f"{file}: a kustomization inside {path}; expected to apply its folder "
                        f"({file.parent}) on its own"
                    )
                if file.resolve() not in seen:
                    seen.add(file.resolve())
                    manifests += _documents(file, None)
        elif path.is_file():
            if path.resolve() not in seen:
                seen.add(path.resolve())
                manifests += _documents(path, None)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not manifests:
        raise UserError(f"{', '.join(map(str, paths))}: no objects to apply")
    return sorted(manifests, key=lambda m: APPLY_ORDER.index(m.kind))


def resolve_namespaces(manifests: list[Manifest], flag: str | None, default: str) -> None:
    """A kustomization's namespace, else the object's, else --namespace, else the context's.

    --namespace that contradicts an object's namespace is refused, as kubectl refuses it.
    """
    problems = []
    seen: dict[tuple[str, str, str], str] = {}
    for m in manifests:
        own = m.kustomize_namespace or (m.doc.get("metadata") or {}).get("namespace")
        if flag and own and own != flag:
            problems.append(
                f"{m.label}: the object's namespace is {own!r} but --namespace is {flag!r}; "
                f"expected them to agree (pass --namespace {own} or none)"
            )
        m.namespace = own or flag or default
        if m.name:
            key = (m.kind, m.namespace, m.name)
            if key in seen:
                problems.append(
                    f"{m.label}: {m.what} in namespace {m.namespace!r} is also in {seen[key]}; "
                    "expected each object once"
                )
            seen[key] = m.label
    if problems:
        raise UserError(problems)


# ---- the API, one kind at a time --------------------------------------------------------------


class Objects:
    """create / read / apply / delete for any kind in ROUTES, answers as plain dicts."""

    def __init__(self, cluster: Cluster) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.custom = client.CustomObjectsApi(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.rbac = client.RbacAuthorizationV1Api(cluster.api)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return obj if isinstance(obj, dict) else self.cluster.api.sanitize_for_serialization(obj)

    def _api(self, route: Route) -> Any:
        return self.core if route.api == "core" else self.rbac

    def create(self, route: Route, ns: str, body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {"field_manager": FIELD_MANAGER, "_request_timeout": TIMEOUT}
        if dry_run:
            extra["dry_run"] = "All"
        if route.api == "custom":
            return self.custom.create_namespaced_custom_object(
                route.group, route.version, ns, route.plural, body, **extra
            )
        method = getattr(self._api(route), f"create_namespaced_{route.suffix}")
        return self._plain(method(ns, body, **extra))

    def read(self, route: Route, ns: str, name: str) -> dict[str, Any]:
        if route.api == "custom":
            return self.custom.get_namespaced_custom_object(
                route.group, route.version, ns, route.plural, name, _request_timeout=TIMEOUT
            )
        method = getattr(self._api(route), f"read_namespaced_{route.suffix}")
        return self._plain(method(name, ns, _request_timeout=TIMEOUT))

    def apply(
        self, route: Route, ns: str, name: str, body: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        """Server-side apply. force: the manifest wins over other managers for the fields it
        sets, which is what a plain `kubectl apply` of the same file would do."""
        extra: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "_content_type": "application/apply-patch+yaml",
            "_request_timeout": TIMEOUT,
        }
        if dry_run:
            extra["dry_run"] = "All"
        if route.api == "custom":
            return self.custom.patch_namespaced_custom_object(
                route.group, route.version, ns, route.plural, name, body, **extra
            )
        method = getattr(self._api(route), f"patch_namespaced_{route.suffix}")
        return self._plain(method(name, ns, body, **extra))

    def delete(self, route: Route, ns: str, name: str) -> None:
        from kubernetes import client

        # Foreground: the RayJob's RayCluster, submitter Job and pods go before it does.
        options = client.V1DeleteOptions(propagation_policy="Foreground")
        if route.api == "custom":
            self.custom.delete_namespaced_custom_object(
                route.group,
                route.version,
                ns,
                route.plural,
                name,
                body=options,
                _request_timeout=TIMEOUT,
            )
            return
        method = getattr(self._api(route), f"delete_namespaced_{route.suffix}")
        method(name, ns, body=options, _request_timeout=TIMEOUT)

    def pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        found = self.core.list_namespaced_pod(ns, label_selector=selector, _request_timeout=TIMEOUT)
        return [self._plain(p) for p in found.items]


def _is_missing(exc: BaseException) -> bool:
    """A 404 for an object (the API server names it); not a 404 for an unserved resource."""
    from kubernetes.client.exceptions import ApiException

    return (
        isinstance(exc, ApiException)
        and exc.status == 404
        and bool((status_of(exc).get("details") or {}).get("name"))
    )


def _is_conflict(exc: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == 409


def _refused(m: Manifest, exc: BaseException, cluster: Cluster, verb: str) -> list[str]:
    """Lines for an object the API server refused (400, 409, 422); anything else ends the
    command: an unreachable server, refused credentials, a forbidden verb, a missing CRD."""
    from kubernetes.client.exceptions import ApiException

    refused = isinstance(exc, ApiException) and exc.status in (400, 409, 422)
    lines = api_error_lines(exc, cluster, verb, m.route.resource, m.namespace)
    if lines is None:
        raise exc
    if not refused:
        raise UserError(lines) from None
    return [f"{m.label}: the API server refused it: {line.splitlines()[0]}" for line in lines]


def _content(obj: dict[str, Any]) -> Any:
    """What an apply can change: everything but status and the server's metadata."""
    meta = obj.get("metadata") or {}
    kept = {k: meta.get(k) for k in ("name", "namespace", "labels", "annotations")}
    rest = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return json.dumps({**rest, "metadata": kept}, sort_keys=True, default=str)


# ---- apply ------------------------------------------------------------------------------------


@dataclass
class Step:
    manifest: Manifest
    existing: dict[str, Any] | None  # the object as it is in the cluster; None: to create
    verb: str = ""  # what the dry run says will happen: created, configured, unchanged


@dataclass
class ApplyOptions:
    namespace: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    dry_run: bool = False
    wait: bool = False
    timeout: float | None = None
    validate: bool = True
    poll: float = POLL_S


def apply(paths: list[Path], options: ApplyOptions) -> int:
    """Validate, dry-run on the server, create; with --wait, follow the RayJob. An exit code."""
    if options.validate:
        from raytune_ft.k8s.validate import validate_paths

        problems = validate_paths(paths)
        if problems:
            raise UserError([*problems, "nothing was sent to the cluster"])
    manifests = load_manifests(paths)
    if options.wait and options.dry_run:
        raise UserError(
            "--wait follows a RayJob that --dry-run never creates; expected one of them"
        )
    if options.wait and not any(m.kind == "RayJob" for m in manifests):
        raise UserError(
            f"--wait follows a RayJob; none among the {_count(len(manifests), 'object')} in "
            f"{', '.join(map(str, paths))}"
        )
    cluster = connect(options.kubeconfig, options.context)
    try:
        with api_errors(cluster):
            resolve_namespaces(manifests, options.namespace, cluster.namespace)
            objects = Objects(cluster)
            steps = _server_dry_run(objects, manifests)
            if options.dry_run:
                for step in steps:
                    verb = DRY_RUN_VERBS[step.verb]
                    typer.echo(f"{verb}: {step.manifest.what} ({_ns(step)})")
                typer.echo(
                    f"server dry run: the API server accepted {_count(len(steps), 'object')}; "
                    "nothing was changed"
                )
                return 0
            jobs = _send(objects, steps)
        if not options.wait:
            for name, ns in jobs:
                typer.echo(
                    f"follow it: raytune-ft k8s status {name} --namespace {ns}; "
                    f"raytune-ft k8s logs {name} --namespace {ns} --follow"
                )
            return 0
        with api_errors(cluster, "get", ROUTES["RayJob"].resource):
            return wait_for(objects, jobs, options.timeout, options.poll)
    finally:
        cluster.close()


def _ns(step: Step) -> str:
    return f"namespace {step.manifest.namespace}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _server_dry_run(objects: Objects, manifests: list[Manifest]) -> list[Step]:
    """Every object through the API server's dry run: all refusals at once, nothing created."""
    problems: list[str] = []
    steps: list[Step] = []
    for m in manifests:
        route, body = m.route, m.body()
        try:
            objects.create(route, m.namespace, body, dry_run=True)
            steps.append(Step(m, None, "created"))
            continue
        except Exception as exc:
            if not _is_conflict(exc):
                problems += _refused(m, exc, objects.cluster, "create")
                continue
        if m.kind == "RayJob":
            problems.append(
                f"{m.label}: RayJob {m.name!r} already exists in namespace {m.namespace!r}; a "
                "RayJob runs once: delete it first (raytune-ft k8s delete "
                f"{m.name} --namespace {m.namespace}) or give the new one another name"
            )
            continue
        try:
            existing = objects.read(route, m.namespace, m.name)
            after = objects.apply(route, m.namespace, m.name, body, dry_run=True)
        except Exception as exc:
            problems += _refused(m, exc, objects.cluster, "patch")
            continue
        verb = "unchanged" if _content(after) == _content(existing) else "configured"
        steps.append(Step(m, existing, verb))
    if problems:
        raise UserError([*problems, "nothing was changed in the cluster"])
    return steps


def _send(objects: Objects, steps: list[Step]) -> list[tuple[str, str]]:
    """Create or apply each object for real; the (name, namespace) of each RayJob created."""
    done: list[str] = []
    jobs: list[tuple[str, str]] = []
    for step in steps:
        m = step.manifest
        try:
            if step.existing is None:
                created = objects.create(m.route, m.namespace, m.body(), dry_run=False)
                name = (created.get("metadata") or {}).get("name") or m.name
                verb = "created"
                if m.kind == "RayJob":
                    jobs.append((name, m.namespace))
            else:
                name = m.name
                after = objects.apply(m.route, m.namespace, m.name, m.body(), dry_run=False)
                verb = "unchanged" if _content(after) == _content(step.existing) else "configured"
        except KeyboardInterrupt:
            typer.echo(
                f"interrupted while applying {m.what}; {_done(done)}; run the same apply again "
                "to finish (a RayJob already created is refused: delete it first)",
                err=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            # between the dry run and now: someone else's change, or the server went away
            verb = "create" if step.existing is None else "patch"
            lines = api_error_lines(exc, objects.cluster, verb, m.route.resource, m.namespace)
            if lines is None:
                raise
            raise UserError(
                [f"{m.label}: {line}" for line in lines] + [f"{_done(done)}; the rest was not sent"]
            ) from None
        done.append(f"{m.kind}/{name}")
        typer.echo(f"{verb}: {m.kind}/{name} ({_ns(step)})")
    return jobs


def _done(done: list[str]) -> str:
    return f"applied before it: {', '.join(done)}" if done else "nothing was applied before it"


# ---- wait -------------------------------------------------------------------------------------


def describe(status: dict[str, Any]) -> str:
    """`jobDeploymentStatus=Running jobStatus=RUNNING message="..."`: what --wait prints."""
    parts = [f"jobDeploymentStatus={status.get('jobDeploymentStatus') or '(none yet)'}"]
    for key in ("jobStatus", "reason"):
        if status.get(key):
            parts.append(f"{key}={status[key]}")
    if status.get("message"):
        parts.append(f"message={json.dumps(str(status['message']), ensure_ascii=False)}")
    return " ".join(parts)


@dataclass
class _Watched:
    name: str
    namespace: str
    last: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    outcome: int | None = None  # an exit code once the job has ended


def wait_for(
    objects: Objects, jobs: list[tuple[str, str]], timeout: float | None, poll: float = POLL_S
) -> int:
    """Poll each RayJob, print each status change on one line, until all have ended.

    0: every job SUCCEEDED; 1: one failed; 2: KubeRay refused one's spec (ValidationFailed);
    124: --timeout expired; 130: Ctrl-C (the jobs keep running).
    """
    route = ROUTES["RayJob"]
    watched = [_Watched(name, ns) for name, ns in jobs]
    start = time.monotonic()
    try:
        while True:
            for job in watched:
                if job.outcome is None:
                    _poll(objects, route, job)
            if all(job.outcome is not None for job in watched):
                return max(job.outcome or 0 for job in watched)
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                for job in watched:
                    if job.outcome is None:
                        state = job.status.get("jobDeploymentStatus") or "not started"
                        typer.echo(
                            f"timeout: RayJob/{job.name} is still {state} after {timeout:g} s; "
                            "it keeps running in the cluster: raytune-ft k8s status "
                            f"{job.name} --namespace {job.namespace}",
                            err=True,
                        )
                return EXIT_TIMEOUT
            left = None if timeout is None else timeout - elapsed
            _sleep(poll if left is None else max(0.0, min(poll, left)))
    except KeyboardInterrupt:
        for job in watched:
            if job.outcome is None:
                typer.echo(
                    f"detached: RayJob/{job.name} keeps running in namespace {job.namespace} "
                    "(Ctrl-C stops only the waiting); follow it: raytune-ft k8s status "
                    f"{job.name} --namespace {job.namespace}; stop it: raytune-ft k8s delete "
                    f"{job.name} --namespace {job.namespace}",
                    err=True,
                )
        return EXIT_INTERRUPTED


def _poll(objects: Objects, route: Route, job: _Watched) -> None:
    try:
        obj = objects.read(route, job.namespace, job.name)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        typer.echo(
            f"failed: RayJob/{job.name} is gone from namespace {job.namespace} (deleted while "
            f"waiting); last seen: {job.last or 'no status'}",
            err=True,
        )
        job.outcome = EXIT_FAILED
        return
    job.status = obj.get("status") or {}
    line = describe(job.status)
    if line != job.last:
        typer.echo(f"RayJob/{job.name}: {line}")
        job.last = line
    deployment = job.status.get("jobDeploymentStatus")
    if deployment not in TERMINAL:
        return  # New, Initializing, Waiting, Running, Suspending, Suspended, Retrying
    logs = f"raytune-ft k8s logs {job.name} --namespace {job.namespace}"
    message = job.status.get("message") or "(no message)"
    if deployment == "Complete" and job.status.get("jobStatus") == "SUCCEEDED":
        typer.echo(f"succeeded: RayJob/{job.name} (jobStatus SUCCEEDED)")
        job.outcome = 0
    elif deployment == "ValidationFailed":
        typer.echo(
            f"error: RayJob/{job.name}: KubeRay refused its spec (ValidationFailed): {message}",
            err=True,
        )
        job.outcome = EXIT_BAD_INPUT
    else:
        typer.echo(f"failed: RayJob/{job.name}: {describe(job.status)}; logs: {logs}", err=True)
        job.outcome = EXIT_FAILED


# ---- status -----------------------------------------------------------------------------------

RAYJOB_FIELDS = [
    "jobDeploymentStatus",
    "jobStatus",
    "reason",
    "message",
    "rayClusterName",
    "dashboardURL",
    "jobId",
    "startTime",
    "endTime",
    "succeeded",
    "failed",
]
RAYCLUSTER_FIELDS = [
    "state",
    "reason",
    "desiredWorkerReplicas",
    "readyWorkerReplicas",
    "availableWorkerReplicas",
    "head.podName",
    "head.podIP",
    "head.serviceIP",
    "lastUpdateTime",
]


def _find(objects: Objects, name: str, ns: str, kinds: tuple[str, ...]) -> tuple[str, dict] | None:
    for kind in kinds:
        try:
            return kind, objects.read(ROUTES[kind], ns, name)
        except Exception as exc:
            if not _is_missing(exc):
                raise
    return None


def _dig(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def show_status(
    name: str, namespace: str | None, kubeconfig: Path | None, context: str | None
) -> None:
    """The RayJob's (else the RayCluster's) status fields in a table."""
    from rich.console import Console
    from rich.table import Table

    cluster = connect(kubeconfig, context)
    try:
        ns = namespace or cluster.namespace
        with api_errors(cluster, "get", ROUTES["RayJob"].resource, ns):
            found = _find(Objects(cluster), name, ns, ("RayJob", "RayCluster"))
    finally:
        cluster.close()
    if found is None:
        raise UserError(
            f"no RayJob or RayCluster named {name!r} in namespace {ns!r} ({cluster.where}); "
            "expected the name `raytune-ft k8s apply` printed"
        )
    kind, obj = found
    status = obj.get("status") or {}
    table = Table(title=f"{kind} {ns}/{name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in RAYJOB_FIELDS if kind == "RayJob" else RAYCLUSTER_FIELDS:
        value = _dig(status, key)
        table.add_row(key, "-" if value in (None, "") else str(value))
    Console().print(table)


# ---- logs -------------------------------------------------------------------------------------


def _submitter(objects: Objects, job: dict[str, Any], ns: str) -> tuple[str, str] | None:
    """(pod, container) that runs `ray job submit` for this RayJob, or None (not there yet).

    K8sJobMode: the pods of the Kubernetes Job KubeRay names like the RayJob (the Job controller
    labels them batch.kubernetes.io/job-name, and job-name before Kubernetes 1.27); the newest
    one, as the Job retries with a new pod. SidecarMode: the head pod's submitter container.
    """
    name = job["metadata"]["name"]
    mode = (job.get("spec") or {}).get("submissionMode") or "K8sJobMode"
    if mode == "SidecarMode":
        cluster_name = (job.get("status") or {}).get("rayClusterName")
        if not cluster_name:
            return None
        pods = objects.pods(ns, f"ray.io/cluster={cluster_name},ray.io/node-type=head")
        return (pods[0]["metadata"]["name"], SUBMITTER_CONTAINER) if pods else None
    pods = objects.pods(ns, f"batch.kubernetes.io/job-name={name}") or objects.pods(
        ns, f"job-name={name}"
    )
    if not pods:
        return None
    newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    containers = (newest.get("spec") or {}).get("containers") or [{}]
    # a custom submitterPodTemplate's first container is the submitter (KubeRay's rule)
    return newest["metadata"]["name"], containers[0].get("name") or SUBMITTER_CONTAINER


def show_logs(
    name: str,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    follow: bool,
    poll: float = POLL_S,
) -> int:
    """Print (or follow) the submitter's log: the output of the job's entrypoint. An exit code."""
    cluster = connect(kubeconfig, context)
    try:
        ns = namespace or cluster.namespace
        with api_errors(cluster, "get", "rayjobs.ray.io, pods and pods/log", ns):
            return _logs(Objects(cluster), name, ns, follow, poll)
    finally:
        cluster.close()


def _logs(objects: Objects, name: str, ns: str, follow: bool, poll: float) -> int:
    from kubernetes.client.exceptions import ApiException

    waiting_said = False
    try:
        while True:
            found = _find(objects, name, ns, ("RayJob",))
            if found is None:
                raise UserError(
                    f"no RayJob named {name!r} in namespace {ns!r} ({objects.cluster.where})"
                )
            job = found[1]
            mode = (job.get("spec") or {}).get("submissionMode") or "K8sJobMode"
            status = job.get("status") or {}
            if mode in ("HTTPMode", "InteractiveMode"):
                raise UserError(
                    f"RayJob/{name} uses {mode}: KubeRay submits it without a submitter pod; "
                    "expected its logs on the Ray dashboard "
                    f"({status.get('dashboardURL') or 'status.dashboardURL, once set'}): "
                    f"ray job logs {status.get('jobId') or 'JOB_ID'} --address http://DASHBOARD"
                )
            where = _submitter(objects, job, ns)
            state = status.get("jobDeploymentStatus") or "not started"
            reason = f"RayJob/{name} has no submitter pod yet (jobDeploymentStatus={state})"
            if where is not None:
                try:
                    _print_log(objects, ns, *where, follow)
                    return 0
                except ApiException as exc:
                    # 400 "container ... is waiting to start": the pod exists, its container not
                    if exc.status != 400:
                        raise
                    reason = f"the submitter pod {where[0]}: {status_of(exc).get('message')}"
            if state in TERMINAL:
                typer.echo(f"{reason}, and the job has ended: {describe(status)}", err=True)
                return EXIT_FAILED
            if not follow:
                typer.echo(
                    f"{reason}; KubeRay starts it once the RayCluster is ready: try again, or "
                    "add --follow to wait for it",
                    err=True,
                )
                return EXIT_FAILED
            if not waiting_said:
                typer.echo(f"{reason}; waiting for it (Ctrl-C stops waiting)", err=True)
                waiting_said = True
            _sleep(poll)
    except KeyboardInterrupt:
        typer.echo(f"stopped following; RayJob/{name} keeps running", err=True)
        return EXIT_INTERRUPTED


def _print_log(objects: Objects, ns: str, pod: str, container: str, follow: bool) -> None:
    # _preload_content=False: the client would json-decode a log that looks like JSON
    response = objects.core.read_namespaced_pod_log(
        pod,
        ns,
        container=container,
        follow=follow,
        _preload_content=False,
        # following: no read timeout, a quiet job may print nothing for an hour
        _request_timeout=(CONNECT_TIMEOUT_S, None) if follow else TIMEOUT,
    )
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        for chunk in response.stream(4096):
            typer.echo(decoder.decode(chunk), nl=False)
        typer.echo(decoder.decode(b"", final=True), nl=False)
    finally:
        response.release_conn()


# ---- delete -----------------------------------------------------------------------------------


def _is_path(target: str) -> bool:
    return Path(target).exists() or target.endswith((".yaml", ".yml")) or "/" in target


def delete(
    targets: list[str], namespace: str | None, kubeconfig: Path | None, context: str | None
) -> None:
    """Delete RayJobs/RayClusters by name, or every object of manifest paths (reverse order)."""
    names = [t for t in targets if not _is_path(t)]
    paths = [Path(t) for t in targets if _is_path(t)]
    manifests = load_manifests(paths) if paths else []
    cluster = connect(kubeconfig, context)
    missing: list[str] = []
    try:
        default_ns = namespace or cluster.namespace
        with api_errors(cluster, "delete", "these objects", default_ns):
            resolve_namespaces(manifests, namespace, cluster.namespace)
            objects = Objects(cluster)
            for name in names:
                found = _find(objects, name, default_ns, ("RayJob", "RayCluster"))
                if found is None:
                    missing.append(
                        f"no RayJob or RayCluster named {name!r} in namespace {default_ns!r} "
                        f"({cluster.where}); nothing deleted for it"
                    )
                    continue
                _delete_one(objects, found[0], default_ns, name)
            for m in reversed(manifests):
                if not m.name:
                    typer.echo(f"skipped: {m.what}: created with generateName; delete it by name")
                    continue
                _delete_one(objects, m.kind, m.namespace, m.name)
    finally:
        cluster.close()
    if missing:
        raise UserError(missing)


def _delete_one(objects: Objects, kind: str, ns: str, name: str) -> None:
    try:
        objects.delete(ROUTES[kind], ns, name)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        typer.echo(f"already gone: {kind}/{name} (namespace {ns})")
        return
    typer.echo(f"deleted: {kind}/{name} (namespace {ns})")
