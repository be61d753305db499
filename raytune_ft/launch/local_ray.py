"""Connect to Ray: a local instance bound to 127.0.0.1, or an existing cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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
# On Linux, ray.init(_node_ip_address="127.0.0.1") is rewritten to the machine's outward IP
# (services.resolve_ip_for_localhost), and Ray's servers then listen beyond loopback. In Ray's
# single-machine mode the node IP stays 127.0.0.1 and every server binds loopback only.
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _single_machine_mode() -> None:
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    import ray._private.ray_constants as constants

    # The constant is read once at import; set it too in case Ray was imported before us.
    constants.ENABLE_RAY_CLUSTER = False


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
    env = {"env_vars": {k: os.environ[k] for k in RUNTIME_ENV_VARS}}
    if cluster.address == "local":
        _single_machine_mode()
        ray.init(
            address="local",
            num_cpus=local_cpu_budget(cpus_per_trial),
            _node_ip_address="127.0.0.1",
            include_dashboard=True,  # Train V2 logs an error on every poll without it
            dashboard_host="127.0.0.1",
            runtime_env=env,
            log_to_driver=True,
            configure_logging=True,
            logging_level="WARNING",
        )
    elif os.environ.get("RAY_JOB_ID"):
        ray.init()  # inside a Ray Job the job's runtime_env already applies
    else:
        ray.init(address=cluster.address, runtime_env=env, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
