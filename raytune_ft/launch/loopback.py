"""Ray Train's torch process group, kept on 127.0.0.1 for single-machine runs.

Ray Train sets up `torch.distributed` with `init_method="env://"`: rank 0 starts torch's
TCPStore, which listens on every interface whatever host it is given (torch 2.13), and gloo
picks the interface of the machine's hostname. For a local run nothing needs to reach these
sockets from outside, so rank 0 hosts the store on a socket it binds to 127.0.0.1 itself, every
rank joins it as a client (torch's "agent store" mode), and gloo is pinned to the loopback
interface. Cluster runs keep Ray's own setup: their ranks must reach each other across nodes.
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import timedelta
from typing import Any

from ray.train.torch import TorchConfig
from ray.train.torch.config import (
    _set_torch_distributed_env_vars,
    _setup_torch_process_group,
    _TorchBackend,
)

LOOPBACK = "127.0.0.1"
_held: dict[str, Any] = {}  # rank 0's listening socket and store: alive as long as the group


def _host_store(world_size: int, timeout_s: float) -> int:
    """On rank 0: a TCPStore server on a loopback-only socket. Returns its port."""
    import torch.distributed as dist

    _release()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    store = dist.TCPStore(
        LOOPBACK,
        port,
        world_size,
        is_master=True,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
        master_listen_fd=listener.fileno(),
        use_libuv=False,  # the libuv daemon cannot adopt a listening fd
    )
    _held.update(listener=listener, store=store)
    return port


def _join_store(port: int) -> None:
    """On every rank: init_process_group(env://) connects to the store instead of hosting one,
    and gloo's and NCCL's own sockets use the loopback interface."""
    interface = loopback_interface()
    os.environ.update(
        MASTER_ADDR=LOOPBACK,
        MASTER_PORT=str(port),
        TORCHELASTIC_USE_AGENT_STORE="True",
        GLOO_SOCKET_IFNAME=interface,
        NCCL_SOCKET_IFNAME=interface,
    )


def loopback_interface() -> str:
    """The name of the interface that holds 127.0.0.1 ('lo' on Linux, 'lo0' on macOS)."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == LOOPBACK for a in addresses):
            return name
    return "lo"


def _release() -> None:
    _held.pop("store", None)
    listener = _held.pop("listener", None)
    if listener is not None:
        listener.close()


class _LoopbackTorchBackend(_TorchBackend):
    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        import ray

        backend = backend_config.backend or "gloo"  # the caller picks nccl for GPU workers
        size = len(worker_group)
        port = worker_group.execute_single(0, _host_store, size, backend_config.timeout_s)
        worker_group.execute(_join_store, port)
        worker_group.execute(_set_torch_distributed_env_vars)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    _setup_torch_process_group,
                    backend=backend,
                    world_rank=rank,
                    world_size=size,
                    init_method="env://",
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(size)
            ]
        )

    def on_shutdown(self, worker_group: Any, backend_config: TorchConfig) -> None:
        super().on_shutdown(worker_group, backend_config)
        # The worker may already be gone, and its sockets with it.
        with contextlib.suppress(Exception):
            worker_group.execute_single(0, _release)


class LoopbackTorchConfig(TorchConfig):
    """TorchConfig whose process group listens on 127.0.0.1 only (single-machine runs).

    Pass `backend` ("nccl" for GPU workers, "gloo" otherwise), as Ray would choose it.
    """

    @property
    def backend_cls(self) -> type[_TorchBackend]:
        return _LoopbackTorchBackend
