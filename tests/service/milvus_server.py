"""A real Milvus standalone server for the tests: the PyPI package ``milvus==2.3.5`` (the Milvus 2.3.5 binary
with embedded etcd and RocksMQ), started once per session on free ports in a temporary folder.

The proxy's time tick is lowered from 200 ms to 20 ms: a ``Strong`` read waits for the next tick, so this
sets the read-after-write latency (the same setting ``deploy/milvus/user.yaml`` uses).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

TIME_TICK_MS = 20


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_milvus(base_dir: Path, port: int) -> object:
    """Start a Milvus standalone server (about 10 s) and return it (``.stop()`` ends it).

    Every port it opens is chosen free, the embedded etcd's too (its peer port is 2380 unless an etcd config
    file says otherwise), so the tests' server runs beside any other Milvus on the machine.
    """
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(base_dir))
    server.listen_port = port
    server.webservice_port = free_port()  # its management/health port (default 9091)
    client, peer = free_port(), free_port()
    etcd = base_dir / "etcd.yaml"
    etcd.write_text(
        "name: default\n"
        f"listen-client-urls: http://127.0.0.1:{client}\nadvertise-client-urls: http://127.0.0.1:{client}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
    )
    config = server.config
    config.configs["etcd_port"] = client
    config.template_text = config.template_text.replace(
        "  use:\n    embed: true", f"  config:\n    path: {etcd}\n  use:\n    embed: true", 1
    )
    config.set("proxy.timeTickInterval", TIME_TICK_MS)
    server.start()
    return server


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a Milvus server shared by the session's tests (each test uses its own collections)."""
    port = free_port()
    server = start_milvus(tmp_path_factory.mktemp("milvus"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()  # type: ignore[attr-defined]
