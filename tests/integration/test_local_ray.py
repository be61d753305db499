from __future__ import annotations

import ipaddress

import psutil
import pytest

pytestmark = pytest.mark.integration


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_local_ray_listens_on_loopback_only(ray_local: None) -> None:
    import ray

    @ray.remote
    def node_ip() -> str:
        return ray.util.get_node_ip_address()

    assert ray.get(node_ip.remote()) == "127.0.0.1"
    ours = {psutil.Process().pid} | {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [
        c
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ours
    ]
    assert len(listening) >= 3  # gcs, raylet, dashboard at least
    exposed = [
        (c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
        for c in listening
        if not _is_loopback(c.laddr.ip)
    ]
    assert exposed == []
