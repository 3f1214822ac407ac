"""CONTRACT §9 guarantees 2-4, 6, 8 and the issue's "Must show" fault tests, with real parts:
a real redis-server, real arq workers (in-process, and subprocesses started with arq's own CLI
that are SIGKILLed), no mocks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from dist_helpers import comparable
from dist_scenarios import (
    FAULT_FLOWS,
    boom,
    cancel_pill,
    commit_crash_flow,
    crash_flow,
    diamond,
    late_boom,
    never,
    poison,
    random_dag,
    sleepy,
    slow3,
    start,
    wait_flow,
)
from flowcraft_arq import ArqAdapter, RunKeys, active_key
from flowcraft_arq.adapter import ADAPTER_CTX_KEY
from flowcraft_arq.keys import catalog_key, graph_key, runs_index_key
from redis.asyncio import Redis

from flowcraft import Flow, FlowcraftError, FlowRuntime, WorkflowResult
from flowcraft.distributed import CommitRequest, InstanceRef, QueuedJob, Refusal, graph_spec
from flowcraft.distributed.worker import CRASH_AFTER_COMMIT_ENV

HERE = Path(__file__).resolve().parent
ARQ_CLI = Path(sys.executable).parent / "arq"


# -- helpers ---------------------------------------------------------------------------------


class WorkerProcess:
    """`arq <settings>` (by default dist_workers.WorkerSettings) in a subprocess, with arq's
    own command line, configured through the environment."""

    def __init__(self, redis_url: str, queue: str, prefix: str, log: Path, *,
                 settings: str = "dist_workers.WorkerSettings", **env: str) -> None:
        self.queue = queue
        full_env = {
            **os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get(
                "PYTHONPATH", "")]),
            "FLOWCRAFT_REDIS_URL": redis_url, "FLOWCRAFT_QUEUE": queue,
            "FLOWCRAFT_PREFIX": prefix, **env,
        }
        command = [str(ARQ_CLI)] if ARQ_CLI.exists() else [sys.executable, "-m", "arq"]
        self.log = log
        self.process = subprocess.Popen([*command, settings], cwd=HERE,
                                        env=full_env, stdout=log.open("ab"),
                                        stderr=subprocess.STDOUT)

    async def ready(self, redis: Redis, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await redis.exists(f"{self.queue}:health-check"):
                return
            assert self.process.poll() is None, self.log.read_text()
            await asyncio.sleep(0.05)
        raise AssertionError("worker did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def worker_processes(count: int, redis_url: str, queue: str, prefix: str, tmp: Path, *,
                     settings: str = "dist_workers.WorkerSettings",
                     **env: str) -> Iterator[list[WorkerProcess]]:
    workers = [WorkerProcess(redis_url, queue, prefix, tmp / f"worker{i}.log",
                             settings=settings, **env)
               for i in range(count)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def completions(flat: dict[bytes, bytes]) -> dict[str, bytes]:
    return {k.decode(): v for k, v in flat.items() if k.startswith(b"i:")}


async def node_finish_counts(client: Any, run_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for event in client.events(run_id):
        if event.type == "node:finish":
            counts[event.node_id] = counts.get(event.node_id, 0) + 1
    return counts


# -- duplicate delivery ----------------------------------------------------------------------


class DuplicatingQueue:
    """Enqueues every job twice: once under its id and once under a second id, so arq really
    delivers the same payload twice."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def enqueue(self, jobs: list[QueuedJob]) -> None:
        await self.inner.enqueue(jobs)
        for job in jobs:
            await self.inner.redis.enqueue_job(
                "flowcraft.node", job.payload, _job_id=job.payload.job_id + ":dup",
                _queue_name=self.inner.queue_name)


async def test_duplicate_delivery_records_completion_once_and_fires_join_once(
        arq_worker: Any, flowcraft_client: Any, redis: Redis) -> None:
    flow = diamond()

    async def duplicate(ctx: dict[str, Any]) -> None:
        adapter: ArqAdapter = ctx[ADAPTER_CTX_KEY]
        adapter.queue = DuplicatingQueue(adapter.queue)  # type: ignore[assignment]

    async with arq_worker([flow], on_startup=duplicate, max_jobs=8), \
            flowcraft_client([flow]) as client:
        client.adapter.queue = DuplicatingQueue(client.adapter.queue)
        run_id = await client.start("diamond", context={"x": 2})
        result = await client.wait(run_id, timeout=30)
        assert result.status == "completed"
        assert result.context["merge_input"] == {"B": "L", "C": "R"}
        finishes = await node_finish_counts(client, run_id)
        state = completions(await redis.hgetall(client.store.keys(run_id).meta))
    assert finishes == {"A": 1, "B": 1, "C": 1, "D": 1, "E": 1}
    assert set(state.values()) == {b"D"} and len(state) == 5


# -- stale commit ------------------------------------------------------------------------------


async def test_stale_commit_after_lease_moved_is_rejected(redis: Redis, fc_prefix: str) -> None:
    flow = diamond()
    adapter = ArqAdapter(redis, [flow], prefix=fc_prefix)  # type: ignore[arg-type]
    store = adapter.redis_store
    spec = graph_spec(adapter.graph("diamond"))
    await store.start_run("stale", spec, {}, {"blueprint_id": "diamond", "status": "running"})
    ref = InstanceRef("stale", 0, 0)
    assert (await store.claim(ref, "old-token", 1)).ok
    await asyncio.sleep(0.02)  # the old worker's 1 ms lease expired; a new worker claims
    assert (await store.claim(ref, "new-token", 10_000)).ok
    busy = await store.claim(ref, "third", 10_000)
    assert (busy.ok, busy.reason) == (False, Refusal.LEASED)
    stale = await store.commit(ref, spec, CommitRequest(token="old-token",
                                                        writes=[("A", b"1")]))
    assert (stale.ok, stale.reason) == (False, Refusal.STALE)
    assert await store.get_values("stale", ["A"]) == [None]
    fresh = await store.commit(ref, spec, CommitRequest(token="new-token",
                                                        writes=[("A", b"2")]))
    assert (fresh.ok, fresh.reason) == (True, None)
    again = await store.commit(ref, spec, CommitRequest(token="new-token",
                                                        writes=[("A", b"3")]))
    assert (again.ok, again.reason) == (False, Refusal.DONE)
    assert await store.get_values("stale", ["A"]) == [b"2"]
    late = await store.claim(ref, "late", 10_000)  # nothing was routed: the run completed
    assert (late.ok, late.reason) == (False, Refusal.NOT_RUNNING)


# -- crashes ---------------------------------------------------------------------------------


async def test_sigkilled_worker_mid_node_run_completes_after_redelivery(
        redis_url: str, fc_queue: str, fc_prefix: str, flowcraft_client: Any, redis: Redis,
        tmp_path: Path) -> None:
    """B's body SIGKILLs its worker process the first time; arq re-delivers the job once the
    dead worker's in-progress key expires (job_timeout + 10 s) to the surviving worker."""
    flow = crash_flow()
    env = {"FLOWCRAFT_TEST_MARKERS": str(tmp_path), "FLOWCRAFT_JOB_TIMEOUT": "1",
           "FLOWCRAFT_LEASE_MS": "1000"}
    os.environ["FLOWCRAFT_TEST_MARKERS"] = str(tmp_path)
    try:
        with worker_processes(2, redis_url, fc_queue, fc_prefix, tmp_path, **env) as workers:
            for worker in workers:
                await worker.ready(redis)
            async with flowcraft_client([flow]) as client:
                run_id = await client.start("crash")
                result = await client.wait(run_id, timeout=60)
                finishes = await node_finish_counts(client, run_id)
                state = completions(await redis.hgetall(client.store.keys(run_id).meta))
            died = [w for w in workers if w.process.poll() == -signal.SIGKILL]
    finally:
        del os.environ["FLOWCRAFT_TEST_MARKERS"]
    assert len(died) == 1, "exactly one worker was SIGKILLed mid-node"
    assert result.status == "completed", result.errors
    assert result.context["B"] == "survived B"
    assert finishes == {"A": 1, "B": 1, "C": 1, "D": 1}
    assert set(state.values()) == {b"D"}
    # A's job ran on B and C (fusion); B killed that worker, and the redelivered A job re-drove
    # both once their leases ended. A and D ran once; C's body ran once, or twice if it had
    # started when B killed the worker (at-least-once); B's body ran twice
    for node in ("A", "D"):
        assert (tmp_path / f"runs-{run_id}-{node}").read_text().count("x") == 1
    assert (tmp_path / f"runs-{run_id}-C").read_text().count("x") in (1, 2)
    assert (tmp_path / f"crash-{run_id}-B").exists()


async def test_crash_between_commit_and_enqueue_loses_nothing(
        redis_url: str, fc_queue: str, fc_prefix: str, flowcraft_client: Any, arq_worker: Any,
        redis: Redis, tmp_path: Path) -> None:
    """The worker commits A, which claims B and C for it to run on (fusion), and dies before
    running them (test-only hook): they stay fired under the dead worker's lease, and once
    it ended reconcile (or the redelivered A job) puts them in the queue."""
    flow = commit_crash_flow()
    env = {"FLOWCRAFT_TEST_MARKERS": str(tmp_path), CRASH_AFTER_COMMIT_ENV: "A",
           "FLOWCRAFT_JOB_TIMEOUT": "1", "FLOWCRAFT_LEASE_MS": "1000"}
    async with flowcraft_client([flow]) as client:
        with worker_processes(1, redis_url, fc_queue, fc_prefix, tmp_path, **env) as (crashy,):
            await crashy.ready(redis)
            run_id = await client.start("commit_crash")
            deadline = time.monotonic() + 20
            while crashy.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert crashy.process.returncode == -signal.SIGKILL
        keys = client.store.keys(run_id)
        meta = await redis.hgetall(keys.meta)
        assert [f for f in meta if f.startswith(b"o:")] == []
        assert completions(meta)["i:0#0"] == b"D"
        # B and C were decided and claimed by the dead worker's delivery of A's job
        for field in (b"i:1#0", b"i:2#0"):
            epoch, token, _ = meta[field].split(b"|", 2)
            assert (epoch, token.partition(b"~")[1]) == (b"F0", b"~"), meta[field]
        await asyncio.sleep(1.2)  # the dead worker's leases end
        os.environ["FLOWCRAFT_TEST_MARKERS"] = str(tmp_path)
        try:
            async with arq_worker(FAULT_FLOWS):
                counts = await client.reconcile(stalled_after=0)
                assert counts["reconciled"] == 1
                result = await client.wait(run_id, timeout=30)
                finishes = await node_finish_counts(client, run_id)
        finally:
            del os.environ["FLOWCRAFT_TEST_MARKERS"]
    assert result.status == "completed", result.errors
    assert finishes == {"A": 1, "B": 1, "C": 1, "D": 1}
    for node in ("A", "B", "C", "D"):
        assert (tmp_path / f"runs-{run_id}-{node}").read_text().count("x") == 1


# -- reconcile ---------------------------------------------------------------------------------


async def test_reconcile_finds_blueprint_id_in_fallback_key_and_never_reruns_done_nodes(
        flowcraft_client: Any, arq_worker: Any, redis: Redis, tmp_path: Path) -> None:
    flow = commit_crash_flow()
    os.environ["FLOWCRAFT_TEST_MARKERS"] = str(tmp_path)
    try:
        async with flowcraft_client([flow]) as client:
            run_id = await client.start("commit_crash")  # no worker yet: the jobs wait
            keys = client.store.keys(run_id)
            # simulate a lost start job and metadata that lost its blueprint id
            await redis.delete(f"arq:job:{run_id}:A:0:0")
            await redis.zrem(client.queue_name, f"{run_id}:A:0:0")
            await redis.hdel(keys.meta, "blueprint_id")
            assert await redis.get(keys.blueprint) == b"commit_crash"
            counts = await client.reconcile(stalled_after=0)
            assert counts == {"scanned": 1, "stalled": 1, "reconciled": 1, "failed": 0}
            async with arq_worker([flow]):
                result = await client.wait(run_id, timeout=30)
                again = await client.reconcile(stalled_after=0)
            state = completions(await redis.hgetall(keys.meta))
    finally:
        del os.environ["FLOWCRAFT_TEST_MARKERS"]
    assert result.status == "completed"
    assert again["reconciled"] == 0
    assert set(state.values()) == {b"D"}
    for node in ("A", "B", "C", "D"):
        assert (tmp_path / f"runs-{run_id}-{node}").read_text().count("x") == 1


# -- pills -------------------------------------------------------------------------------------


async def test_poison_pill_fails_the_all_join_at_once(flowcraft_client: Any, arq_worker: Any,
                                                      redis: Redis) -> None:
    """B fails while C still runs for 3 s: the run is failed at once (the join D does not wait
    for C), D is poisoned and never runs; the result is published once C has finished."""
    flow = (Flow("poison_now").node("A", start).node("B", boom).node("C", slow3)
            .node("D", never).edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D"))
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        began = time.monotonic()
        run_id = await client.start("poison_now")
        while await client.status(run_id) == "running":
            await asyncio.sleep(0.02)
        failed_after = time.monotonic() - began
        assert await client.status(run_id) == "failed"
        result = await client.wait(run_id, timeout=30)
        state = await redis.hgetall(client.store.keys(run_id).meta)
        d_index = client.adapter.graph("poison_now").by_id["D"].index
    assert failed_after < 2.5, "the failure did not wait for the slow predecessor"
    assert result.status == "failed"
    assert [(e.node_id, e.type) for e in result.errors] == [("B", "ValueError")]
    assert state[f"x:{d_index}#0".encode()] == b"poison"
    assert "D" not in result.context and "never_ran" not in result.context


async def test_cancel_pill_any_join_cannot_be_locked_afterwards(
        flowcraft_client: Any, arq_worker: Any, redis: Redis) -> None:
    flow = cancel_pill()
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        run_id = await client.start("cancel_pill")
        result = await client.wait(run_id, timeout=30)
        spec = graph_spec(client.adapter.graph("cancel_pill"))
        state = await redis.hgetall(client.store.keys(run_id).meta)
        claim = await client.store.claim(InstanceRef(run_id, spec.index["D"]), "late", 10_000)
    assert result.status == "failed"
    assert result.context["C"] == "R-slow", "C was running and finished"
    assert state[f"x:{spec.index['D']}#0".encode()] == b"cancel"
    assert "D" not in result.context
    assert (claim.ok, claim.reason) == (False, Refusal.NOT_RUNNING)


# -- scale ---------------------------------------------------------------------------------------


async def test_200_concurrent_runs_of_a_20_node_random_dag_with_4_worker_processes(
        redis_url: str, fc_queue: str, fc_prefix: str, flowcraft_client: Any, redis: Redis,
        tmp_path: Path) -> None:
    flow = random_dag(0, 20)
    expected = comparable(await FlowRuntime().run(flow))
    with worker_processes(4, redis_url, fc_queue, fc_prefix, tmp_path) as workers:
        for worker in workers:
            await worker.ready(redis)
        async with flowcraft_client([flow]) as client:
            run_ids = await asyncio.gather(*(client.start("dag0") for _ in range(200)))
            results = await asyncio.gather(*(client.wait(r, timeout=120) for r in run_ids))
    assert len({r.run_id for r in results}) == 200
    for result in results:
        assert comparable(result) == expected


# -- keys ----------------------------------------------------------------------------------------


async def test_finished_runs_keys_carry_ttl_and_every_key_has_the_runs_hash_tag(
        arq_worker: Any, flowcraft_client: Any, redis: Redis, fc_prefix: str) -> None:
    wait_fail = (Flow("wait_fail").node("A", start).wait("W").node("B", late_boom)
                 .edge("A", "W").edge("A", "B"))
    flows = [diamond(), poison(), wait_fail, wait_flow()]
    async with arq_worker(flows, result_ttl=600), \
            flowcraft_client(flows, result_ttl=600) as client:
        done = await client.start("diamond")
        failed = await client.start("poison")
        failed_waiting = await client.start("wait_fail")
        cancelled = await client.start("wait_flow")
        for run_id in (done, failed, failed_waiting):
            await client.wait(run_id, timeout=30)
        assert (await client.wait(cancelled, timeout=30)).status == "awaiting"
        assert await client.cancel(cancelled)
        assert (await client.wait(cancelled, timeout=30)).status == "cancelled"
        assert (await client.result(failed_waiting)).status == "failed"  # type: ignore[union-attr]
    runs = (done, failed, failed_waiting, cancelled)
    keys = [k.decode() async for k in redis.scan_iter(match=f"{fc_prefix}:*")]
    assert keys
    # the documented globals: the reconciler's index, the dashboard's run list, the
    # blueprints the workers serve
    globals_ = {active_key(fc_prefix), runs_index_key(fc_prefix), catalog_key(fc_prefix)}
    for key in keys:
        if key in globals_ or key.startswith(graph_key(fc_prefix, "")):  # graph shapes
            continue
        tag = key[key.index("{") + 1:key.index("}")]
        assert tag in runs, key
        ttl = await redis.pttl(key)
        assert 0 < ttl <= 600_000, (key, ttl)
    for run_id in runs:
        run_keys = RunKeys(fc_prefix, run_id)
        assert {run_keys.meta, run_keys.ctx, run_keys.events, run_keys.blueprint} <= set(keys)
    assert await redis.zcard(active_key(fc_prefix)) == 0


async def test_start_is_idempotent_and_wait_times_out(flowcraft_client: Any,
                                                      arq_worker: Any) -> None:
    flow = diamond()
    async with flowcraft_client([flow, poison()]) as client:
        run_id = await client.start("diamond", context={"x": 1}, run_id="fixed-id")
        assert await client.start("diamond", context={"x": 2}, run_id="fixed-id") == run_id
        with pytest.raises(FlowcraftError, match="already exists"):
            await client.start("poison", run_id="fixed-id")
        assert await client.status(run_id) == "running"
        with pytest.raises(TimeoutError):
            await client.wait(run_id, timeout=0.3)
        async with arq_worker([flow]):
            result = await client.wait(run_id, timeout=30)
    assert result.status == "completed"
    assert result.context["x"] == 1
    assert result.context["A"] == {"x": 1, "tag": "s"}


async def test_cancel_stops_scheduling_and_running_nodes(flowcraft_client: Any,
                                                         arq_worker: Any) -> None:
    flow = Flow("cancel_me").node("A", sleepy).node("B", never).edge("A", "B")
    async with arq_worker([flow], lease_ms=600), flowcraft_client([flow]) as client:
        run_id = await client.start("cancel_me")
        await asyncio.sleep(0.3)
        assert await client.cancel(run_id)
        started = time.monotonic()
        result = await client.wait(run_id, timeout=10)
        assert time.monotonic() - started < 3, "the running node saw the cancellation"
        assert not await client.cancel(run_id)
        events = [e.type async for e in client.events(run_id)]
    assert result.status == "cancelled"
    assert "B" not in result.context and "A" not in result.context
    assert events[0] == "workflow:start" and events[-1] == "workflow:finish"


async def test_job_payloads_are_msgpack_not_pickle(flowcraft_client: Any, redis: Redis) -> None:
    flow = diamond()
    async with flowcraft_client([flow]) as client:
        run_id = await client.start("diamond")
        raw = await redis.get(f"arq:job:{run_id}:A:0:0")
    assert raw is not None and not raw.startswith(b"\x80")  # pickle protocol header
    job = msgspec.msgpack.decode(raw)
    assert job["f"] == "flowcraft.node"
    assert job["a"][0][:4] == [run_id, "diamond", "A", 0]


async def test_wait_result_has_same_shape_as_in_memory(flowcraft_client: Any,
                                                       arq_worker: Any) -> None:
    flow = diamond()
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        run_id = await client.start("diamond")
        result = await client.wait(run_id)
        again = await client.result(run_id)
    assert isinstance(result, WorkflowResult) and again == result
    assert WorkflowResult.from_json(result.to_json()) == result
