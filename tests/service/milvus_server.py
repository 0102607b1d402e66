"""A real Milvus standalone server for the tests: the PyPI package ``milvus==2.3.5`` (the Milvus 2.3.5 binary
with embedded etcd and RocksMQ), started once per session on free ports in a temporary folder.

The proxy's time tick is lowered from 200 ms to 20 ms: a ``Strong`` read waits for the next tick, so this
sets the read-after-write latency (the same setting ``deploy/milvus/user.yaml`` uses).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
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
    config = server.config
    config.configs["proxy_port"] = port  # exactly this port (the listen_port setter moves to a free one)
    server.webservice_port = free_port()  # its management/health port (default 9091)
    client, peer = free_port(), free_port()
    etcd = base_dir / "etcd.yaml"
    etcd.write_text(
        "name: default\n"
        f"listen-client-urls: http://127.0.0.1:{client}\nadvertise-client-urls: http://127.0.0.1:{client}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
    )
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
    base = tmp_path_factory.mktemp("milvus")
    server = start_milvus(base, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()  # type: ignore[attr-defined]
        shutil.rmtree(base, ignore_errors=True)  # ~0.5 GB: the unpacked binary and its data


class TcpRelay:
    """A TCP relay to a local port that a test can cut (a lost network or server) and restore, in a thread.

    Args:
        target_port: Where connections are relayed to.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self.restore()

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        """Accept and relay connections (again)."""
        self._run(self._start())

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones."""
        self._run(self._stop())

    @property
    def uri(self) -> str:
        """The relay's Milvus URI."""
        return f"http://127.0.0.1:{self.port}"
