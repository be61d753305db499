"""A connection to a Kubernetes API server, and its failures turned into one-line errors.

Every command that talks to the cluster goes through `connect()` and `api_errors()`: a missing
kubeconfig, an unreachable server, refused credentials or a forbidden verb end the command with
exit 2 and one line that names the server, the kubeconfig and the context, never a traceback.
The `kubernetes` package is imported inside the functions: `raytune-ft --help` stays fast.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytune_ft.errors import UserError

# (connect, read) seconds for every call: an unreachable server fails in seconds, not after
# the OS's TCP timeout (minutes). 30 s of reading covers a slow admission webhook.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
TIMEOUT = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
FIELD_MANAGER = "raytune-ft"
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Cluster:
    """An API client and where its settings came from (for the messages)."""

    api: Any  # kubernetes.client.ApiClient
    server: str
    kubeconfig: str | None  # None: the pod's in-cluster service account
    context: str | None
    namespace: str  # the context's namespace, or "default"

    @property
    def where(self) -> str:
        if self.kubeconfig is None:
            return "in-cluster config"
        return f"kubeconfig: {self.kubeconfig}, context: {self.context or '(none)'}"

    def close(self) -> None:
        self.api.close()


def _default_kubeconfig() -> str:
    # Read at call time: kubernetes.config reads KUBECONFIG once, at import.
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def _exists(config_file: str) -> bool:
    # KUBECONFIG may list several files (kubectl merges them); one is enough.
    return any(Path(p).expanduser().is_file() for p in config_file.split(os.pathsep) if p)


def connect(kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
    """A client for the kubeconfig's context; the pod's service account inside a cluster."""
    import yaml
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    # No urllib3 retries of a failed connect: a refused or silent server is reported at once.
    from urllib3.util.retry import Retry

    cfg.retries = Retry(total=1, connect=0, redirect=0, status=0)
    if kubeconfig is not None:
        config_file: str | None = str(kubeconfig)
        if not kubeconfig.is_file():
            raise UserError(
                f"kubernetes: kubeconfig {kubeconfig} does not exist; expected a kubeconfig file "
                "(--kubeconfig FILE, KUBECONFIG, or ~/.kube/config)"
            )
    else:
        config_file = _default_kubeconfig()
        if not _exists(config_file):
            if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
                return _in_cluster(cfg)
            source = "KUBECONFIG" if os.environ.get("KUBECONFIG") else "the default location"
            raise UserError(
                f"kubernetes: no kubeconfig at {config_file} ({source}) and not running inside "
                "a cluster; expected --kubeconfig FILE, KUBECONFIG, or ~/.kube/config"
            )
    assert config_file is not None
    try:
        config.load_kube_config(
            config_file=config_file,
            context=context,
            client_configuration=cfg,
            # A command that reads the kubeconfig does not rewrite it (refreshed tokens).
            persist_config=False,
        )
        contexts, current = config.list_kube_config_contexts(config_file)
    except (
        ConfigException,
        yaml.YAMLError,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
    ) as exc:
        # The loader raises more than ConfigException on a malformed file (yaml, KeyError, ...).
        reason = _config_reason(exc)
        names = ""
        try:
            listed, _ = config.list_kube_config_contexts(config_file)
            names = ", ".join(c.get("name", "?") for c in listed or [])
        except Exception:
            pass
        hint = f"; contexts in it: {names}" if names and context else ""
        raise UserError(
            f"kubernetes: kubeconfig {config_file} cannot be used"
            + (f" with context {context!r}" if context else "")
            + f": {reason}{hint}"
        ) from None
    chosen = context or (current or {}).get("name")
    namespace = "default"
    for entry in contexts or []:
        if entry.get("name") == chosen:
            namespace = (entry.get("context") or {}).get("namespace") or "default"
    return Cluster(client.ApiClient(cfg), cfg.host, config_file, chosen, namespace)


def _config_reason(exc: BaseException) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:  # a YAML error: its problem and where, not PyYAML's multi-line text
        return f"not valid YAML: {getattr(exc, 'problem', exc)} at line {mark.line + 1}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _in_cluster(cfg: Any) -> Cluster:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_incluster_config(client_configuration=cfg)
    except ConfigException as exc:
        raise UserError(
            f"kubernetes: the in-cluster config cannot be used: {exc}; expected a pod's service "
            "account, or --kubeconfig FILE"
        ) from None
    try:
        namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        namespace = "default"
    return Cluster(client.ApiClient(cfg), cfg.host, None, None, namespace)


# ---- failures ------------------------------------------------------------------------------


def status_of(exc: Any) -> dict[str, Any]:
    """The Status object an ApiException carries ({} when the body is not one)."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _unreachable_reason(exc: BaseException) -> str:
    """`connection refused`, `no answer within 5 s`, ... from urllib3's wrapped errors."""
    import urllib3.exceptions as u3

    reason: BaseException = exc
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    text = str(reason)
    # NewConnectionError is a ConnectTimeoutError in urllib3 2: look at the words first
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(reason, u3.NameResolutionError) or "Name or service not known" in text:
        return "the host name does not resolve"
    if isinstance(reason, u3.ReadTimeoutError):
        return f"no reply within {READ_TIMEOUT_S:g} s"
    if isinstance(reason, u3.ConnectTimeoutError) or "timed out" in text:
        return f"no answer within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(reason, u3.ProtocolError):
        return "the connection was dropped"
    return text.rsplit(": ", 1)[-1] or type(reason).__name__


def api_error_lines(
    exc: BaseException, cluster: Cluster, verb: str = "", resource: str = "", namespace: str = ""
) -> list[str] | None:
    """One line per problem for a client failure; None for an error this module does not know.

    verb, resource and namespace (`create`, `rayjobs.ray.io`, `default`) name the request in the
    lines for a 403 or for a resource the server does not serve.
    """
    import urllib3.exceptions as u3
    from kubernetes.client.exceptions import ApiException

    server, where = cluster.server, cluster.where
    reason = exc.reason if isinstance(exc, u3.MaxRetryError) else exc
    if isinstance(reason, u3.SSLError):
        return [_tls_line(str(reason), cluster)]
    if isinstance(exc, u3.HTTPError):
        return [
            f"kubernetes: cannot reach {server}: {_unreachable_reason(exc)}; expected a reachable "
            f"API server ({where})"
        ]
    if not isinstance(exc, ApiException):
        return None
    status = status_of(exc)
    message = str(status.get("message") or exc.reason or "").strip()
    details = status.get("details") or {}
    if exc.status == 0:  # the client's own wrapping of a TLS failure
        return [_tls_line(str(exc.reason or ""), cluster)]
    if exc.status == 401:
        return [
            f"kubernetes: {server} refused the credentials (401 Unauthorized); expected valid "
            f"credentials for this cluster ({where})"
        ]
    if exc.status == 403:
        request = " ".join(p for p in (verb, resource) if p) or "do this"
        place = f" in namespace {namespace!r}" if namespace else ""
        return [
            f"kubernetes: forbidden (403): {message}; expected permission to {request}{place} "
            f"({where})"
        ]
    if exc.status == 404 and details.get("kind") == "namespaces":
        return [f"kubernetes: {message}; expected an existing namespace ({where})"]
    if exc.status == 404 and not details.get("name"):
        # No object named in the answer: the resource type itself is not served.
        expected = (
            "KubeRay's CRDs installed in the cluster (helm install kuberay-operator "
            "kuberay/kuberay-operator)"
            if resource.endswith(".ray.io")
            else "a cluster that serves it"
        )
        return [
            f"kubernetes: {server} does not serve {resource or 'this resource'} ({message}); "
            f"expected {expected} ({where})"
        ]
    if exc.status == 422:
        causes = [c for c in details.get("causes") or [] if isinstance(c, dict)]
        lines = [
            f"{c['field']}: {c.get('message')}" if c.get("field") else str(c.get("message"))
            for c in causes
        ]
        # a cause's message may carry a multi-line diff: its first line says it
        return [line.splitlines()[0] for line in lines if line.strip()] or [message]
    return [f"kubernetes: {exc.status} {exc.reason}: {message} ({where})"]


def _tls_line(text: str, cluster: Cluster) -> str:
    # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ... (_ssl.c:1006)"
    found = re.search(r"\] ([^\]]*?)\s*\(_ssl\.c:\d+\)", text)
    detail = found.group(1) if found else (text.strip().splitlines() or ["TLS error"])[-1]
    return (
        f"kubernetes: cannot reach {cluster.server}: TLS failed ({detail}); expected the "
        f"server's certificate to match the kubeconfig's certificate-authority ({cluster.where})"
    )


@contextmanager
def api_errors(
    cluster: Cluster, verb: str = "", resource: str = "", namespace: str = ""
) -> Iterator[None]:
    """Turn the client's connection, auth and server failures into a UserError (exit 2)."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        lines = api_error_lines(exc, cluster, verb, resource, namespace)
        if lines is None:
            raise
        raise UserError(lines) from None
