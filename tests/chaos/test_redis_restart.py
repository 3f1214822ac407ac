"""Redis restarts: with AOF (`appendfsync always`) nothing is lost; without persistence the
client says so with RunNotFoundError instead of hanging.

Every test starts its own `redis-server` (flowcraft_arq.testing.RedisServer, a free port and a
temporary directory) because it kills and restarts it; the session's server is never touched.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from chaos_flows import FLOWS, retrying_redis
from flowcraft_arq import FlowcraftClient
from flowcraft_arq.testing import RedisServer
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from soak import HERE, Config, Soak, WorkerPool, start_redis
from test_soak_short import assert_zero

from flowcraft import ResumeError, RunNotFoundError
from flowcraft.distributed import CommitRequest, InstanceRef, Resolution, graph_spec

# -- the soak across restarts ----------------------------------------------------------------


async def test_soak_with_redis_restarts_under_aof_always_loses_nothing() -> None:
    """~20 s of the soak with SIGKILLed workers and redis-server SIGKILLed and restarted
    every 6 s (AOF, appendfsync always). Workers use retrying connections (see
    chaos_worker.retrying_settings) and must survive every restart."""
    report = await Soak(Config(seconds=20, runs=70, workers=3, workers2=1, kill_every_ms=2500,
                               redis_restart=True, restart_every_s=6, drain_timeout_s=300,
                               seed=2, big=200, big_runs=2)).run()
    print(report)
    assert_zero(report)
    assert report["redis_restarts"] >= 2
    # no worker dies of a restart, not even of the two upstream races in arq / redis-py
    # (soak.KNOWN_RESTART_DEATHS) that flowcraft_arq.steady now rides out: nothing needs a
    # supervisor
    assert report["worker_crashes"] == 0, (report["worker_crash_causes"],
                                           report["worker_crash_logs"])


# -- without persistence -----------------------------------------------------------------------


@pytest.fixture
def volatile_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, without persistence (restarting it loses all)."""
    server = RedisServer(appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def durable_server() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True)
    start_redis(server, fsync_always=True)
    try:
        yield server
    finally:
        server.cleanup()


@asynccontextmanager
async def chaos_client(redis: Redis) -> AsyncIterator[FlowcraftClient]:
    """A FlowcraftClient for the chaos flows on `redis` (closed at the end)."""
    try:
        yield FlowcraftClient(redis, flows=list(FLOWS.values()), queue_name="q", prefix="p")
    finally:
        await redis.aclose()


async def restart(server: RedisServer, *, durable: bool = False, down_s: float = 0.0) -> None:
    """SIGKILL redis-server and start it again on the same port and directory; the event loop
    keeps running meanwhile (clients see the connection drop and start reconnecting)."""
    server.stop()
    await asyncio.sleep(down_s)
    await asyncio.to_thread(start_redis, server, fsync_always=durable)


async def test_without_persistence_a_vanished_run_raises_run_not_found(
        volatile_server: RedisServer) -> None:
    """No worker runs, so the run stays `running`; then redis-server restarts without
    persistence. Every client call about the run says RunNotFoundError at once (or None for
    `result`), nothing hangs, and `reconcile` has nothing to do."""
    async with chaos_client(retrying_redis(volatile_server.url)) as client:
        run_id = await client.start("chaos_wait", context={"x": 2})
        assert await client.status(run_id) == "running"
        await restart(volatile_server)
        with pytest.raises(RunNotFoundError):
            await client.status(run_id)
        with pytest.raises(RunNotFoundError):
            await asyncio.wait_for(client.wait(run_id, timeout=30), 10)
        with pytest.raises(RunNotFoundError):
            await client.resume(run_id, node_id="approval", output=1, action="approve")
        with pytest.raises(RunNotFoundError):
            await client.cancel(run_id)
        assert await client.result(run_id) is None
        assert [e async for e in client.events(run_id, block_ms=100)] == []
        assert await client.reconcile(stalled_after=0) == {
            "scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}


async def test_resume_of_a_node_that_is_not_awaiting_is_a_resume_error_not_a_hang(
        volatile_server: RedisServer) -> None:
    async with chaos_client(retrying_redis(volatile_server.url)) as client:
        run_id = await client.start("chaos_wait", context={"x": 2})
        with pytest.raises(ResumeError):
            await client.resume(run_id, node_id="approval", output=1)


async def complete_diamond(client: FlowcraftClient, run_id: str) -> None:
    """Claim and commit every node of a chaos_diamond run through the store, the way a worker
    would (without running bodies), so the run finishes and its result is announced."""
    spec = graph_spec(client.adapter.graph("chaos_diamond"))
    for node in ("A", "B", "C", "D", "E"):
        index = spec.index[node]
        ref = InstanceRef(run_id, index)
        assert (await client.store.claim(ref, "tok", 60_000)).ok
        outcome = await client.store.commit(ref, spec, CommitRequest(
            token="tok", node_id=node,
            writes=[(node, b"1"), (f"_outputs.{node}", b"1")],
            resolutions=[Resolution(edge, True, b"1") for edge in spec.nodes[index].out]))
        assert outcome.ok, outcome


# Regression guards: FlowcraftClient.from_url's pool and worker_settings' default connections
# used not to retry OSError (ConnectionRefusedError while redis-server restarts), so wait()
# raised and workers died; both now retry flowcraft_arq.adapter.RETRY_ON.


def slow_reconnecting_client(url: str, backoff_s: float) -> Redis:
    """A client that retries a dropped connection every `backoff_s` (the resubscription of
    a waiting `wait()` happens `backoff_s` after the server is back)."""
    return Redis.from_url(url, retry=Retry(ConstantBackoff(backoff_s), retries=20),
                          retry_on_error=[RedisConnectionError, ConnectionError, OSError])


@pytest.mark.parametrize("connections", [
    "from_url", "slow_reconnect"])
async def test_wait_sees_a_result_published_while_its_subscription_reconnects(
        connections: str, durable_server: RedisServer) -> None:
    """redis-server (AOF) restarts while wait() is subscribed; the run finishes and is
    announced before the subscription is back. wait() must still return the result.

    Was (found by this campaign, fixed in 9e6fd8c for `slow_reconnect`, a pool that retries
    refused connections every 2 s): wait() re-read the result only when a pub/sub message
    arrived, so the missed announcement left it hanging until its timeout."""
    url = durable_server.url
    redis = (Redis(connection_pool=FlowcraftClient.from_url(url).redis.connection_pool)
             if connections == "from_url" else slow_reconnecting_client(url, 2.0))
    async with chaos_client(redis) as waiter, \
            chaos_client(retrying_redis(url)) as worker:
        run_id = await waiter.start("chaos_diamond", context={"x": 1})
        waiting = asyncio.create_task(waiter.wait(run_id, timeout=12))
        await asyncio.sleep(0.5)  # subscribed
        await restart(durable_server, durable=True, down_s=0.3)  # AOF: the run survives
        await complete_diamond(worker, run_id)  # finished and announced before resubscribe
        assert await worker.status(run_id) == "completed"
        result = await waiting
    assert result.status == "completed"


@pytest.mark.parametrize("connections", [
    "from_url", "retry_connect_errors"])
async def test_wait_in_progress_when_the_run_vanishes_raises_run_not_found(
        connections: str, volatile_server: RedisServer) -> None:
    """A wait() subscribed when Redis restarts without persistence must end in
    RunNotFoundError, not hang and not fail on the restart itself.

    `from_url`: the client's default pool; `retry_connect_errors`: a pool that also retries
    refused connections (chaos_flows.retrying_redis). Was (found by this campaign, fixed in
    9e6fd8c for the second): the reconnected subscription waited for a message that never
    came and wait() hung until its timeout."""
    url = volatile_server.url
    redis = (Redis(connection_pool=FlowcraftClient.from_url(url).redis.connection_pool)
             if connections == "from_url" else retrying_redis(url))
    async with chaos_client(redis) as client:
        run_id = await client.start("chaos_diamond", context={"x": 1})
        waiting = asyncio.create_task(client.wait(run_id, timeout=12))
        await asyncio.sleep(0.5)
        await restart(volatile_server, down_s=0.3)
        try:
            with pytest.raises(RunNotFoundError):
                await waiting
        finally:
            await client.redis.aclose()


# -- workers with flowcraft_arq's default connection settings -----------------------------------


async def test_a_worker_with_default_settings_survives_a_redis_restart(
        durable_server: RedisServer, tmp_path: Any) -> None:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "CHAOS_REDIS_URL": durable_server.url, "CHAOS_QUEUE": "q", "CHAOS_PREFIX": "p",
           "CHAOS_DEFAULT_RETRY": "1", "CHAOS_JITTER_S": "0"}
    pool = WorkerPool(1, env, tmp_path)
    pool.start()
    try:
        async with chaos_client(retrying_redis(durable_server.url)) as client:
            deadline = time.monotonic() + 60
            while not await client.redis.exists("q:health-check"):
                assert time.monotonic() < deadline and pool.procs[0].poll() is None
                await asyncio.sleep(0.05)
            before = await client.start("chaos_diamond", context={"x": 1})
            assert (await client.wait(before, timeout=60)).status == "completed"
            await restart(durable_server, durable=True, down_s=0.5)
            await asyncio.sleep(2)
            log = "\n".join(p.read_text() for p in tmp_path.glob("worker-*.log"))
            assert pool.procs[0].poll() is None, "the worker died:\n" + log[-3000:]
            after = await client.start("chaos_diamond", context={"x": 2})
            assert (await client.wait(after, timeout=60)).status == "completed"
    finally:
        pool.stop()
