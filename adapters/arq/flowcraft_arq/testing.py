"""pytest fixtures for flowcraft_arq (auto-registered through the `pytest11` entry point).

- `redis_server` (session): a throwaway `redis-server` on a free port, in a temp dir, without
  persistence; killed at the end. Never touches any other Redis.
- `redis_url` (session): its URL.
- `arq_worker`: `async with arq_worker(flows, **settings) as worker:` runs an in-process arq
  worker for the given flows (settings as for `worker_settings`).
- `flowcraft_client`: `async with flowcraft_client(flows) as client:` a FlowcraftClient on it.

Each test gets its own queue name and key prefix (`fc_queue` / `fc_prefix`), so tests sharing
the session's server never see each other's jobs or keys; the two factories use them by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from arq.connections import RedisSettings
from arq.worker import Worker, get_kwargs

from flowcraft.distributed.adapter import Flows
from flowcraft_arq.adapter import worker_settings
from flowcraft_arq.client import FlowcraftClient

log = logging.getLogger("flowcraft.arq.testing")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A `redis-server` process this test session started (and will kill)."""

    def __init__(self, *, appendonly: bool = False) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed: the distributed tests need it "
                               "(Debian: apt-get install redis-server; .ci/run does this)")
        self.executable = executable
        self.appendonly = appendonly
        self.dir = tempfile.mkdtemp(prefix="flowcraft-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes" if self.appendonly else "no",
             "--dir", self.dir, "--protected-mode", "yes", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, graceful: bool = False) -> None:
        """Kill the server (SIGKILL), or shut it down gracefully (SIGTERM: with appendonly
        on, the AOF is complete on disk)."""
        if self.process is not None and self.process.poll() is None:
            if graceful:
                self.process.terminate()
            else:
                self.process.kill()
            self.process.wait(20)
        self.process = None

    def restart(self) -> None:
        """Graceful shutdown, then a new server on the same port and data directory."""
        self.stop(graceful=True)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def settings(self) -> RedisSettings:
        return RedisSettings(host="127.0.0.1", port=self.port)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free port for this session (no persistence), killed at the end."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def fc_queue() -> str:
    """A queue name of this test's own."""
    return f"fcq-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def fc_prefix() -> str:
    """A key prefix of this test's own."""
    return f"fct-{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def running_worker(flows: Flows, redis_url: str, **settings: Any) -> AsyncIterator[Worker]:
    """An arq Worker for `flows` running in this event loop until the block ends."""
    settings.setdefault("redis_settings", RedisSettings.from_dsn(redis_url))
    cls = worker_settings(flows, **settings)
    worker = Worker(**{**get_kwargs(cls), "handle_signals": False})  # type: ignore[arg-type]
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


WorkerFactory = Callable[..., AbstractAsyncContextManager[Worker]]
ClientFactory = Callable[..., AbstractAsyncContextManager[FlowcraftClient]]


@pytest.fixture
def arq_worker(redis_url: str, fc_queue: str, fc_prefix: str) -> WorkerFactory:
    """`async with arq_worker(flows, **settings) as worker:` (this test's queue and prefix)."""

    def factory(flows: Flows, **settings: Any) -> AbstractAsyncContextManager[Worker]:
        settings.setdefault("queue_name", fc_queue)
        settings.setdefault("prefix", fc_prefix)
        return running_worker(flows, redis_url, **settings)

    return factory


@pytest.fixture
def flowcraft_client(redis_url: str, fc_queue: str, fc_prefix: str) -> ClientFactory:
    """`async with flowcraft_client(flows) as client:` (this test's queue and prefix)."""

    def factory(flows: Flows = (), **kwargs: Any) -> AbstractAsyncContextManager[FlowcraftClient]:
        kwargs.setdefault("queue_name", fc_queue)
        kwargs.setdefault("prefix", fc_prefix)
        return FlowcraftClient.from_url(redis_url, flows=flows, **kwargs)

    return factory


__all__ = [
    "RedisServer",
    "arq_worker",
    "fc_prefix",
    "fc_queue",
    "flowcraft_client",
    "free_port",
    "redis_server",
    "redis_url",
    "running_worker",
]
