"""Issue 9 item 10: an arq worker survives Redis restarts by itself (no supervisor).

Two upstream windows used to end a worker process when redis-server went away: the WATCH ...
EXEC pipeline of arq's job start (WatchError raised from the reads in between) and redis-py's
connection handshake (run outside the command's retry). flowcraft_arq.steady closes both for
the worker's own pool; this test restarts its own redis-server (AOF on) over and over while
two worker processes, started with arq's own command line, run a stream of runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from dist_helpers import comparable
from dist_scenarios import diamond
from flowcraft_arq import FlowcraftClient
from flowcraft_arq.adapter import ADAPTER_CTX_KEY
from flowcraft_arq.testing import RedisServer, running_worker
from redis.asyncio import Redis
from redis.exceptions import RedisError
from test_arq_faults import worker_processes
from test_arq_redis_restart import aof_server  # noqa: F401  (the fixture)

from flowcraft import FlowRuntime

RUNS = 600
BURST = 5  # runs started at once, every 0.1 s
RESTARTS = 40


def kill_and_start(server: RedisServer) -> None:
    """SIGKILL redis-server (connections reset mid-command) and start it again on the same
    port and AOF (the process dies, the OS keeps what it wrote: nothing acknowledged is lost)."""
    server.stop()
    server.start()


async def restarts(server: RedisServer, count: int, every_s: float) -> int:
    done = 0
    for _ in range(count):
        await asyncio.sleep(every_s)
        await asyncio.to_thread(kill_and_start, server)
        done += 1
    return done


async def retried(call: Any) -> Any:
    """A client call, repeated while Redis is away (the client is not under test here)."""
    for _ in range(200):
        try:
            return await call()
        except (RedisError, OSError):
            await asyncio.sleep(0.1)
    return await call()


async def test_item10_worker_survives_redis_restart_races(
        aof_server: RedisServer, fc_queue: str, fc_prefix: str,  # noqa: F811
        tmp_path: Path) -> None:
    flow = diamond()
    expected = comparable(await FlowRuntime().run(flow, context={"x": 1}))
    probe = Redis.from_url(aof_server.url)
    with worker_processes(3, aof_server.url, fc_queue, fc_prefix, tmp_path,
                          FLOWCRAFT_JOB_TIMEOUT="60", FLOWCRAFT_MAX_JOBS="8") as workers:
        for worker in workers:
            await worker.ready(probe)
        await probe.aclose()
        async with FlowcraftClient.from_url(aof_server.url, flows=[flow], queue_name=fc_queue,
                                            prefix=fc_prefix) as client:
            restarting = asyncio.create_task(restarts(aof_server, RESTARTS, 0.3))
            run_ids: list[str] = []
            while not restarting.done() or len(run_ids) < RUNS:
                burst = [f"{fc_prefix}-{n}" for n in range(len(run_ids),
                                                          min(RUNS, len(run_ids) + BURST))]
                await asyncio.gather(*(retried(lambda r=run_id: client.start(
                    "diamond", context={"x": 1}, run_id=r)) for run_id in burst))
                run_ids += burst
                await asyncio.sleep(0.1)
            assert await restarting == RESTARTS
            alive = [w.process.poll() is None for w in workers]
            deadline = time.monotonic() + 60
            results = {}
            while len(results) < RUNS and time.monotonic() < deadline:
                for run_id in run_ids:
                    if run_id not in results:
                        result = await retried(lambda r=run_id: client.result(r))
                        if result is not None:
                            results[run_id] = result
                await asyncio.sleep(0.2)
        logs = "\n".join(w.log.read_text()[-3000:] for w in workers)
        assert alive == [True] * 3, logs
        assert [w.process.poll() for w in workers] == [None] * 3, logs
    assert len(results) == RUNS, f"{RUNS - len(results)} runs unfinished"
    assert all(comparable(r) == expected for r in results.values())


# -- the two windows, hit on purpose ------------------------------------------------------------


class CuttingProxy:
    """A TCP proxy to redis-server that cuts connections where the races need it: at the first
    command after the WATCH of arq's job start (of `arq:in-progress:<id>`), and at the
    handshake's CLIENT SETINFO of every other new connection (as a restart would: the next
    try finds the server back); `cuts` times each once `armed`."""

    WATCH, START = b"$5\r\nWATCH\r\n", b"arq:in-progress:"
    HANDSHAKE = b"SETINFO"

    def __init__(self, port: int, cuts: int) -> None:
        self.port = port
        self.left = {"start": cuts, "handshake": cuts}
        self.armed = False
        self.handshakes = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    def _cut(self, kind: str) -> bool:
        if self.armed and self.left[kind] > 0:
            self.left[kind] -= 1
            return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        replies = asyncio.create_task(self._copy(up_reader, writer))
        watching = ""
        try:
            while data := await reader.read(65536):
                if self.HANDSHAKE in data:
                    self.handshakes += 1
                    if self.handshakes % 2 and self._cut("handshake"):
                        break
                if watching and self._cut(watching):
                    break
                watching = "start" if self.WATCH in data and self.START in data else ""
                up_writer.write(data)
                await up_writer.drain()
        except OSError:
            pass
        finally:
            replies.cancel()
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_item10_connection_cut_after_watch_or_in_handshake_keeps_worker(
        redis_server: RedisServer, fc_queue: str, fc_prefix: str) -> None:
    """Deterministic: the worker's connections are cut 10 times right after the WATCH of arq's
    job start and 10 times in the handshake; the worker's poll loop is still running and
    every run completes."""
    flow = diamond()
    expected = comparable(await FlowRuntime().run(flow, context={"x": 1}))
    proxy = CuttingProxy(redis_server.port, cuts=10)
    url = await proxy.start()
    try:
        async with running_worker([flow], url, queue_name=fc_queue, prefix=fc_prefix,
                                  reconcile_every=None) as worker, \
                FlowcraftClient.from_url(redis_server.url, flows=[flow], queue_name=fc_queue,
                                         prefix=fc_prefix) as client:
            while ADAPTER_CTX_KEY not in worker.ctx:  # started (and its pool made steady)
                await asyncio.sleep(0.01)
            proxy.armed = True
            run_ids = [await client.start("diamond", context={"x": 1}) for _ in range(30)]
            results = []
            deadline = time.monotonic() + 60
            for run_id in run_ids:
                while (result := await client.result(run_id)) is None:
                    assert not worker.main_task.done(), repr(worker.main_task.exception())
                    assert time.monotonic() < deadline, f"run {run_id} unfinished"
                    await asyncio.sleep(0.05)
                results.append(result)
            assert not worker.main_task.done()
    finally:
        await proxy.close()
    assert proxy.left == {"start": 0, "handshake": 0}  # every cut happened
    assert all(comparable(r) == expected for r in results)

