"""A fake Kubernetes API server on 127.0.0.1 for the `raytune-ft k8s` tests: kmock, made strict.

No real API server runs in the tests: none can run on these machines (no container engine, no
kube-apiserver, k3s or kind). kmock (PyPI) is an in-memory Kubernetes HTTP API that the real
`kubernetes` client talks to over real HTTP, but it answers 200 where the client expects 201 (the
client then returns None), stores dry runs, validates nothing and ignores label selectors. The
subclass below answers as the real API server does for what the commands use:

- create: 201 with the stored object (namespace, uid, resourceVersion, creationTimestamp filled
  in, `status` dropped as the status subresource does); 409 AlreadyExists on a duplicate; 422
  Invalid with one cause per problem that `validate_documents` finds (the KubeRay v1.7.0 CRD
  schemas, their CEL rules and KubeRay's checks, so the server really validates RayJob and
  RayCluster); 400 when the body's kind, apiVersion or namespace do not match the URL;
- `dryRun=All` on create, apply and delete: the same answers, nothing stored or deleted;
- server-side apply (PATCH application/apply-patch+yaml): replaces what the manifest sets, keeps
  server fields and status, leaves resourceVersion alone when nothing changed; a PVC's spec is
  immutable (422 Forbidden) as on a real server;
- get, list (equality label selectors), delete: 404 NotFound as a Status naming the object;
- a resource type it does not serve (e.g. KubeRay's CRDs with `crds_installed=False`): 404 with
  no object name, as a real server answers for an unknown path;
- optional bearer token (401 Unauthorized without it) and forbidden verbs (403);
- pod logs (`pods/NAME/log`): the text a test set, 400 while the container is waiting to start;
- RayJob statuses over time: `script_status` queues snapshots; each GET of that object applies
  the next one first, as if KubeRay's controller had moved it on between two polls.

Not faked: watches beyond kmock's own, PUT (replace), strategic-merge semantics of lists,
finalizers and foreground deletion (objects go at once), admission webhooks, namespaces (every
namespace exists).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import random
import re
import string
import threading
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from raytune_ft.k8s.validate import validate_documents

# (group, version, plural) -> kind. Only these are served; anything else is an unknown path.
RAY = {
    ("ray.io", "v1", "rayjobs"): "RayJob",
    ("ray.io", "v1", "rayclusters"): "RayCluster",
    ("ray.io", "v1", "rayservices"): "RayService",
}
CORE = {
    ("", "v1", "configmaps"): "ConfigMap",
    ("", "v1", "secrets"): "Secret",
    ("", "v1", "serviceaccounts"): "ServiceAccount",
    ("", "v1", "persistentvolumeclaims"): "PersistentVolumeClaim",
    ("", "v1", "pods"): "Pod",
    ("rbac.authorization.k8s.io", "v1", "roles"): "Role",
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): "RoleBinding",
}
# Kinds the offline validator knows: the fake validates them as the API server and KubeRay would.
VALIDATED = {
    "RayJob",
    "RayCluster",
    "RayService",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "PersistentVolumeClaim",
}
VERBS = {
    kmock.action.CREATE: "create",
    kmock.action.FETCH: "get",
    kmock.action.LIST: "list",
    kmock.action.UPDATE: "patch",
    kmock.action.DELETE: "delete",
    kmock.action.WATCH: "watch",
}
PVC_IMMUTABLE = (
    "Forbidden: spec is immutable after creation except resources.requests and "
    "volumeAttributesClassName for bound claims"
)
_LABEL = "@"  # the label validate_documents puts before each problem; stripped off again
_PATH = re.compile(
    r'((?:[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])'
    r'(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*): (.*)',
    re.DOTALL,
)


def status(code: int, reason: str, message: str, **details: Any) -> aiohttp.web.Response:
    """A Status object, as the API server sends with every error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return aiohttp.web.json_response(body, status=code)


def _group_resource(res: Any) -> str:
    return f"{res.plural}.{res.group}" if res.group else str(res.plural)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _causes(doc: dict[str, Any]) -> list[dict[str, str]]:
    """validate_documents' problems as the API server's Status causes (field + message)."""
    causes = []
    for line in validate_documents([(_LABEL, doc)]):
        rest = line.removeprefix(f"{_LABEL}: ")
        match = _PATH.fullmatch(rest)
        field, message = (match.group(1), match.group(2)) if match else ("", rest)
        causes.append({"reason": "FieldValueInvalid", "message": message, "field": field})
    return causes


def _matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What an apply can change: everything but status and the server's metadata."""
    meta = obj.get("metadata") or {}
    kept = {k: meta.get(k) for k in ("name", "namespace", "labels", "annotations")}
    return {**{k: v for k, v in obj.items() if k not in ("metadata", "status")}, "metadata": kept}


@attrs.define(kw_only=True)
class StrictKubernetes(kmock.KubernetesEmulator):
    """kmock's emulator answering as a real API server does (see the module docstring)."""

    token: str | None = None  # a bearer token the client must send; None: no auth
    crds_installed: bool = True  # False: ray.io is not served (KubeRay not installed)
    forbidden: set[tuple[str, str]] = attrs.field(factory=set)  # {(verb, plural)} -> 403
    calls: list[str] = attrs.field(factory=list)  # "POST /path?query", in order
    bodies: list[Any] = attrs.field(factory=list)  # the JSON body of each call (None: none)
    pod_logs: dict[tuple[str, str, str], str] = attrs.field(factory=dict)  # (ns, pod, container)
    _scripts: dict[tuple[Any, str, str], deque[dict[str, Any]]] = attrs.field(factory=dict)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1000))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        served = {**CORE, **(RAY if self.crds_installed else {})}
        for (group, version, plural), kind in served.items():
            self.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                kind=kind, namespaced=True, verbs={"create", "get", "list", "patch", "delete"}
            )

    # ---- dispatch ---------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        query = f"?{request.url.query_string}" if request.url.query_string else ""
        self.calls.append(f"{request.method.value.upper()} {request.url.path}{query}")
        self.bodies.append(copy.deepcopy(request.data))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        res = request.resource
        if res is None or res.plural is None:
            return await super()._handle(request)  # discovery: /api, /apis, /version
        kind = self._kind(res)
        if kind is None:
            return status(404, "NotFound", "the server could not find the requested resource")
        verb = VERBS.get(request.action, "")
        if (verb, res.plural) in self.forbidden:
            return status(
                403,
                "Forbidden",
                f'{_group_resource(res)} is forbidden: User "system:anonymous" cannot {verb} '
                f'resource "{res.plural}" in API group "{res.group}" in the namespace '
                f'"{request.namespace}"',
                group=res.group,
                kind=res.plural,
            )
        if request.subresource == "log" and res.plural == "pods":
            return await self._log(request)
        if request.subresource not in (None, "status"):
            return status(404, "NotFound", "the server could not find the requested resource")
        handler: Callable[[kmock.Request, str], Coroutine[Any, Any, Any]] | None = {
            kmock.action.CREATE: self._create,
            kmock.action.FETCH: self._fetch,
            kmock.action.LIST: self._list,
            kmock.action.UPDATE: self._patch,
            kmock.action.DELETE: self._delete,
        }.get(request.action)
        if handler is None:  # watch: kmock's own; PUT (replace) is not faked
            return await super()._handle(request)
        return await handler(request, kind)

    def _kind(self, res: Any) -> str | None:
        served = {**CORE, **(RAY if self.crds_installed else {})}
        return served.get((res.group, res.version, res.plural))

    def _key(self, request: kmock.Request, name: str | None = None) -> tuple[Any, str, str]:
        res = request.resource
        assert res is not None
        return (
            kmock.resource(res.group, res.version, res.plural),
            request.namespace or "",
            name or request.name or "",
        )

    def _current(self, key: tuple[Any, str, str]) -> dict[str, Any] | None:
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    def _not_found(self, request: kmock.Request, name: str) -> aiohttp.web.Response:
        res = request.resource
        return status(
            404,
            "NotFound",
            f'{_group_resource(res)} "{name}" not found',
            name=name,
            group=res.group,
            kind=res.plural,
        )

    # ---- checks shared by create and apply -----------------------------------------------------

    def _body_problem(
        self, request: kmock.Request, kind: str, body: Any
    ) -> aiohttp.web.Response | None:
        res = request.resource
        expected = f"{res.group}/{res.version}" if res.group else res.version
        if not isinstance(body, dict):
            return status(400, "BadRequest", "the body of the request is not a JSON object")
        if body.get("apiVersion") != expected or body.get("kind") != kind:
            return status(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) and kind "
                f"({body.get('kind')}) do not match the expected {expected} {kind}",
            )
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        if meta.get("namespace") not in (None, request.namespace):
            return status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the "
                "request",
            )
        return None

    def _invalid(self, request: kmock.Request, kind: str, body: dict[str, Any]) -> Any:
        meta = body.get("metadata") or {}
        name = meta.get("name") or meta.get("generateName") or ""
        if kind in VALIDATED:
            causes = _causes(body)
        elif not name:
            causes = [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value: name or generateName is required",
                    "field": "metadata.name",
                }
            ]
        else:
            causes = []
        if not causes:
            return None
        res = request.resource
        group_kind = f"{kind}.{res.group}" if res.group else kind
        listed = ", ".join(
            f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes
        )
        return status(
            422,
            "Invalid",
            f'{group_kind} "{name}" is invalid: [{listed}]',
            name=name,
            group=res.group,
            kind=kind,
            causes=causes,
        )

    def _stamp(self, body: dict[str, Any], namespace: str) -> None:
        """What the API server fills in on create (in place: kmock stores this very dict)."""
        meta = body.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(next(self._versions))
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        body.pop("status", None)  # the status subresource: create ignores it

    # ---- verbs --------------------------------------------------------------------------------

    async def _create(self, request: kmock.Request, kind: str) -> aiohttp.web.StreamResponse:
        body = request.data
        problem = self._body_problem(request, kind, body)
        if problem is not None:
            return problem
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = meta["generateName"] + suffix
        invalid = self._invalid(request, kind, body)
        if invalid is not None:
            return invalid
        name = meta["name"]
        if self._current(self._key(request, name)) is not None:
            res = request.resource
            return status(
                409,
                "AlreadyExists",
                f'{_group_resource(res)} "{name}" already exists',
                name=name,
                group=res.group,
                kind=res.plural,
            )
        self._stamp(body, request.namespace or "")
        if request.params.get("dryRun") == "All":
            return aiohttp.web.json_response(body, status=201)
        response = await super()._handle(request)  # kmock stores the (stamped) body
        response.set_status(201)
        return response

    async def _fetch(self, request: kmock.Request, kind: str) -> aiohttp.web.StreamResponse:
        key = self._key(request)
        if self._current(key) is None:
            return self._not_found(request, key[2])
        steps = self._scripts.get(key)
        if steps:
            async with self._lock:
                self.objects[key].patch({"status": steps.popleft()})
        return aiohttp.web.json_response(self._current(key))

    async def _list(self, request: kmock.Request, kind: str) -> aiohttp.web.StreamResponse:
        selector = request.params.get("labelSelector", "")
        res = request.resource
        items = [
            copy.deepcopy(obj.raw)
            for (r, ns, _name), obj in self.objects.items()
            if r == res
            and not obj.deleted
            and (request.namespace is None or ns == request.namespace)
            and _matches((obj.raw.get("metadata") or {}).get("labels") or {}, selector)
        ]
        return aiohttp.web.json_response(
            {
                "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(next(self._versions))},
                "items": items,
            }
        )

    async def _patch(self, request: kmock.Request, kind: str) -> aiohttp.web.StreamResponse:
        key = self._key(request)
        current = self._current(key)
        if "apply-patch" not in request.headers.get("Content-Type", ""):
            # merge and JSON patches (kubectl patch): kmock's own dict merge
            if current is None:
                return self._not_found(request, key[2])
            return await super()._handle(request)
        body = request.data
        problem = self._body_problem(request, kind, body)
        if problem is not None:
            return problem
        invalid = self._invalid(request, kind, body)
        if invalid is not None:
            return invalid
        dry_run = request.params.get("dryRun") == "All"
        if current is None:  # server-side apply creates a missing object
            self._stamp(body, request.namespace or "")
            if not dry_run:
                async with self._lock:
                    self.objects[key] = body
            return aiohttp.web.json_response(body, status=201)
        new = copy.deepcopy(body)
        meta = new.setdefault("metadata", {})
        for field in ("namespace", "uid", "resourceVersion", "creationTimestamp", "generation"):
            meta[field] = current["metadata"].get(field)
        new.pop("status", None)
        if "status" in current:
            new["status"] = current["status"]
        if kind == "PersistentVolumeClaim":
            old_spec, new_spec = (
                copy.deepcopy(current.get("spec") or {}),
                copy.deepcopy(new.get("spec") or {}),
            )
            for spec in (old_spec, new_spec):
                (spec.get("resources") or {}).pop("requests", None)
                spec.pop("volumeAttributesClassName", None)
            if old_spec != new_spec:
                return status(
                    422,
                    "Invalid",
                    f'PersistentVolumeClaim "{key[2]}" is invalid: spec: {PVC_IMMUTABLE}',
                    name=key[2],
                    kind=kind,
                    causes=[
                        {"reason": "FieldValueForbidden", "message": PVC_IMMUTABLE, "field": "spec"}
                    ],
                )
        if _content(new) == _content(current):
            return aiohttp.web.json_response(current)  # a no-op apply writes nothing
        meta["resourceVersion"] = str(next(self._versions))
        if new.get("spec") != current.get("spec"):
            meta["generation"] = (current["metadata"].get("generation") or 1) + 1
        if not dry_run:
            async with self._lock:
                self.objects[key].create(new)
        return aiohttp.web.json_response(new)

    async def _delete(self, request: kmock.Request, kind: str) -> aiohttp.web.StreamResponse:
        key = self._key(request)
        current = self._current(key)
        if current is None:
            return self._not_found(request, key[2])
        if request.params.get("dryRun") == "All":
            return aiohttp.web.json_response(current)
        return await super()._handle(request)  # kmock deletes it and answers with the last state

    async def _log(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        pod = self._current(self._key(request))
        if pod is None:
            return self._not_found(request, request.name or "")
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.params.get("container")
        if container is None:
            if len(names) != 1:
                return status(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {request.name}, choose one of: "
                    f"[{' '.join(names)}]",
                )
            container = names[0]
        if container not in names:
            return status(
                400, "BadRequest", f"container {container} is not valid for pod {request.name}"
            )
        if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
            return status(
                400,
                "BadRequest",
                f'container "{container}" in pod "{request.name}" is waiting to start: '
                "ContainerCreating",
            )
        text = self.pod_logs.get((request.namespace or "", request.name or "", container), "")
        # follow=true: the whole log, then the end of the stream, as when the container exits
        return aiohttp.web.Response(text=text, content_type="text/plain")


class FakeKubeAPI:
    """StrictKubernetes on 127.0.0.1 (a random port), served from a background thread.

    The test helpers run in the server's event loop, so they never race a request.
    """

    def __init__(self, **options: Any) -> None:
        self.handler = StrictKubernetes(**options)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FakeKubeAPI:
        ready = threading.Event()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with self.handler, kmock.Server(self.handler) as server:
                self.url = f"http://127.0.0.1:{server.port}"
                ready.set()
                await self._stop.wait()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Kubernetes API did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def kubeconfig(self, path: Path, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig for this server (see write_kubeconfig)."""
        return write_kubeconfig(path, self.url, token, namespace)

    def _run(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    # ---- test helpers -------------------------------------------------------------------------

    @staticmethod
    def _resource(plural: str) -> Any:
        for group, version, name in {**RAY, **CORE}:
            if name == plural:
                return kmock.resource(group, version, name)
        raise KeyError(plural)

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        """The stored object, or None."""
        key = (self._resource(plural), namespace, name)
        return self._run(lambda: self.handler._current(key))

    def names(self, plural: str, namespace: str = "default") -> list[str]:
        res = self._resource(plural)

        def names() -> list[str]:
            return sorted(
                n
                for (r, ns, n), obj in self.handler.objects.items()
                if r == res and ns == namespace and not obj.deleted
            )

        return self._run(names)

    def add(
        self, plural: str, doc: dict[str, Any], namespace: str = "default", created: str = ""
    ) -> None:
        """Store an object as if it had been created (and keep its status, as KubeRay sets it)."""
        doc = copy.deepcopy(doc)
        kept = doc.get("status")
        key = (self._resource(plural), namespace, doc["metadata"]["name"])

        def add() -> None:
            self.handler._stamp(doc, namespace)
            if kept is not None:
                doc["status"] = kept
            if created:
                doc["metadata"]["creationTimestamp"] = created
            self.handler.objects[key] = doc

        self._run(add)

    def script_status(
        self,
        name: str,
        steps: list[dict[str, Any]],
        namespace: str = "default",
        plural: str = "rayjobs",
    ) -> None:
        """Each GET of the object first merges the next step into its status (None drops a key)."""
        key = (self._resource(plural), namespace, name)
        self._run(lambda: self.handler._scripts.__setitem__(key, deque(steps)))

    def add_pod(
        self,
        name: str,
        labels: dict[str, str],
        containers: dict[str, str],
        namespace: str = "default",
        phase: str = "Running",
        created: str = "2026-01-01T00:00:00Z",
    ) -> None:
        """A pod with these containers ({name: log text}) in this phase."""
        self.add(
            "pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "containers": [{"name": c, "image": "rayproject/ray"} for c in containers]
                },
                "status": {"phase": phase},
            },
            namespace,
            created,
        )
        for container, text in containers.items():
            key = (namespace, name, container)
            self._run(lambda key=key, text=text: self.handler.pod_logs.__setitem__(key, text))

    def calls(self, method: str = "") -> list[str]:
        """The requests so far ("POST /path?query"), optionally of one HTTP method."""
        return [c for c in self._run(lambda: list(self.handler.calls)) if c.startswith(method)]

    def body(self, call: str) -> Any:
        """The JSON body of the last request that was `call` ("DELETE /path")."""
        calls, bodies = self._run(lambda: (list(self.handler.calls), list(self.handler.bodies)))
        return bodies[len(calls) - 1 - calls[::-1].index(call)]


def write_kubeconfig(
    path: Path, server: str, token: str | None = None, namespace: str = "default"
) -> Path:
    """A kubeconfig with one context, `fake`: plain http, a bearer token only when given."""
    user = {"token": token} if token else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": user}],
        "contexts": [
            {
                "name": "fake",
                "context": {"cluster": "fake", "user": "tester", "namespace": namespace},
            }
        ],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dumps(*docs: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
