"""Connect to Ray: a local instance bound to 127.0.0.1, or an existing cluster."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from raytune_ft.errors import UserError
from raytune_ft.launch import interrupts
from raytune_ft.launch.sessions import LocalSession, clean_orphaned_sessions
from raytune_ft.spec.sections import ClusterSpec

# Ray Train V2 polls workers every 2 s by default, which makes every report() block ~2 s.
RUNTIME_ENV_VARS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "PYTHONWARNINGS": "ignore::FutureWarning",
}
# Only for the Ray this process starts on this machine: Train V2 watches for node drains
# (spot reclaims, autoscaler scale-down) with an actor process per run, and nothing drains
# the one node of a local Ray. The actor costs a Python process (Ray Train imported, polling
# every 5 s) per training run and per multi-worker trial.
LOCAL_RAY_ENV_VARS = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
# On Linux, ray.init(_node_ip_address="127.0.0.1") is rewritten to the machine's outward IP
# (services.resolve_ip_for_localhost), and Ray's servers then listen beyond loopback. In Ray's
# single-machine mode the node IP stays 127.0.0.1 and every server binds loopback only.
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def _single_machine_mode() -> Iterator[None]:
    import ray._private.ray_constants as constants

    saved = os.environ.get(_SINGLE_MACHINE_ENV), constants.ENABLE_RAY_CLUSTER
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    # The constant is read once at import; set it too in case Ray was imported before us.
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:  # a later ray.init in this process (a cluster run, a notebook) gets Ray's default
        if saved[0] is None:
            os.environ.pop(_SINGLE_MACHINE_ENV, None)
        else:
            os.environ[_SINGLE_MACHINE_ENV] = saved[0]
        constants.ENABLE_RAY_CLUSTER = saved[1]


CONNECT_TIMEOUT_S = 5.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_reachable(cluster: ClusterSpec) -> None:
    """One TCP connection to a remote head, so a typo fails in seconds with the address named."""
    target = cluster.host_port
    if target is None or in_ray_job():
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S) as connection:
            answer = _http1_answer(connection)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"cluster.address: cannot reach {target[0]}:{target[1]} ({reason}; one TCP "
            f"connection tried for {CONNECT_TIMEOUT_S:g} s); expected a running Ray head "
            "(`ray start --head`): HOST:6379, or ray://HOST:10001 for Ray Client"
        ) from None
    if answer:
        # Ray's GCS and Ray Client speak gRPC (HTTP/2) only; ray.init would retry forever here.
        raise UserError(
            f"cluster.address: {target[0]}:{target[1]} is a web server ({answer}), not a Ray "
            "head's GCS; expected HOST:6379 (or ray://HOST:10001); the dashboard's port (8265) "
            "is for `raytune-ft submit --address http://HOST:8265`"
        )


def _http1_answer(connection: socket.socket) -> str | None:
    """The status line an HTTP/1 server sends to a plain request; None from a gRPC server."""
    try:
        connection.settimeout(2.0)
        connection.sendall(b"GET / HTTP/1.1\r\nHost: ray\r\nConnection: close\r\n\r\n")
        first = connection.recv(64)
    except OSError:
        return None
    if not first.startswith(b"HTTP/1."):
        return None
    return first.split(b"\r\n", 1)[0].decode("ascii", "replace")


def local_cpu_budget(cpus_per_trial: int) -> int:
    """Logical CPUs for a local Ray: the cores (or one trial's needs), plus one for drivers."""
    return max(os.cpu_count() or 1, cpus_per_trial) + 1


@contextmanager
def ray_session(cluster: ClusterSpec, cpus_per_trial: int) -> Iterator[None]:
    """Start or join Ray for the length of the block; leave an already-started Ray alone."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.update(RUNTIME_ENV_VARS)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The spec's own variables (and, on a cluster, pip packages) for every Ray process.
    env: dict = {"env_vars": {k: os.environ[k] for k in RUNTIME_ENV_VARS}}
    env["env_vars"] |= cluster.runtime_env.env_vars
    if cluster.runtime_env.pip and cluster.address != "local":
        env["pip"] = list(cluster.runtime_env.pip)
    with ExitStack() as cleanup:
        if in_ray_job():
            cleanup.callback(ray.shutdown)
            ray.init()  # the job's cluster, whatever the spec's address; its runtime_env applies
        elif cluster.address == "local":
            cleanup.enter_context(_single_machine_mode())
            env["env_vars"] = LOCAL_RAY_ENV_VARS | env["env_vars"]
            clean_orphaned_sessions()
            session = LocalSession.create()
            cleanup.callback(session.close)  # also when ray.init itself fails or is interrupted
            cleanup.callback(ray.shutdown)
            ray.init(
                address="local",
                num_cpus=local_cpu_budget(cpus_per_trial),
                _node_ip_address="127.0.0.1",
                _temp_dir=str(session.temp_dir),
                include_dashboard=True,  # Train V2 logs an error on every poll without it
                dashboard_host="127.0.0.1",
                runtime_env=env,
                log_to_driver=True,
                configure_logging=True,
                logging_level="WARNING",
            )
        else:
            check_reachable(cluster)
            if cluster.host_port and cluster.host_port[0] in LOOPBACK_HOSTS:
                # Else Ray rewrites 127.0.0.1 to this machine's outward address, where a
                # cluster bound to loopback does not answer.
                cleanup.enter_context(_single_machine_mode())
            cleanup.callback(ray.shutdown)
            try:
                ray.init(address=cluster.address, runtime_env=env, logging_level="WARNING")
            except ConnectionError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
                raise UserError(
                    f"cluster.address: cannot join Ray at {cluster.address!r}: {first}"
                ) from None
        interrupts.reinstall()  # ray.init replaced the SIGTERM handler
        yield


# Set by Ray's job supervisor for every job entrypoint (with RAY_ADDRESS of the job's cluster).
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def in_ray_job() -> bool:
    """True inside a Ray Job's entrypoint (`raytune-ft submit`): Ray is already the cluster."""
    return _JOB_CONFIG_ENV in os.environ


def starts_local_ray(cluster: ClusterSpec) -> bool:
    """True when this process starts its own Ray on this machine (not a job, not a cluster)."""
    return cluster.address == "local" and not in_ray_job()


def on_loopback_only() -> bool:
    """True when every node of the connected Ray cluster is this machine on 127.0.0.1."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return bool(nodes) and all(n.get("NodeManagerAddress") == "127.0.0.1" for n in nodes)
