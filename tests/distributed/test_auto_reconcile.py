"""Automatic reconcile (issue 11 item 3, CONTRACT §13.2): workers re-drive stalled runs by
themselves, one at a time under a Redis lock. Real redis-server, real arq worker processes
started with arq's own CLI, one of them SIGKILLed; the client never calls reconcile."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flowcraft_arq import worker_settings
from flowcraft_arq.adapter import ADAPTER_CTX_KEY
from flowcraft_arq.keys import reconcile_lock_key
from flowcraft_arq.reconciler import (
    TASK_CTX_KEY,
    Reconciler,
    ReconcileSettingsError,
    default_stalled_after,
)
from reconcile_workers import FLOWS, victim_flow
from redis.asyncio import Redis
from test_arq_faults import worker_processes

from flowcraft import Flow, FlowcraftError

# What the kill test shortens, and why: with the defaults (a pass every 60 s, stalled_after
# 60 s, 30 s leases) recovery takes one to two minutes. Everything else is worker_settings'
# default; in particular job_timeout stays 300 s, so arq's own redelivery of the dead worker's
# job (after job_timeout + 10 s) cannot be what finishes the runs within the test's 60 s.
SHORTENED = {"FLOWCRAFT_RECONCILE_EVERY": "1", "FLOWCRAFT_STALLED_AFTER": "3",
             "FLOWCRAFT_LEASE_MS": "2000"}


def executions(markers: Path, run_id: str) -> list[tuple[str, int]]:
    path = markers / run_id
    if not path.exists():
        return []
    return [(node, int(pid)) for node, pid in
            (line.split() for line in path.read_text().splitlines())]


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_sigkilled_workers_runs_finish_without_manual_reconcile(
        redis_url: str, fc_queue: str, fc_prefix: str, flowcraft_client: Any, redis: Redis,
        tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with worker_processes(2, redis_url, fc_queue, fc_prefix, tmp_path,
                          settings="reconcile_workers.WorkerSettings",
                          FLOWCRAFT_TEST_MARKERS=str(markers), **SHORTENED) as pair:
        await until(lambda: all(w.log.exists() for w in pair), 20, "worker logs")
        async with flowcraft_client(FLOWS) as client:
            for _ in range(200):
                if await redis.exists(f"{fc_queue}:health-check"):
                    break
                await asyncio.sleep(0.05)
            run_ids = [await client.start("victim") for _ in range(6)]
            await until(lambda: all(any(n == "b" for n, _ in executions(markers, r))
                                    for r in run_ids), 30, "every b to start")
            b_pids = Counter(pid for r in run_ids for n, pid in executions(markers, r)
                             if n == "b")
            pids = {w.process.pid: w for w in pair}
            victim_pid = max(b_pids, key=lambda pid: b_pids[pid])
            survivor = next(w for pid, w in pids.items() if pid != victim_pid)
            pids[victim_pid].process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            pids[victim_pid].process.wait(10)
            long_run = await client.start("long")

            finished_at: dict[str, float] = {}

            async def wait(run_id: str) -> Any:
                result = await client.wait(run_id, timeout=60)
                finished_at[run_id] = time.monotonic()
                return result

            results = await asyncio.gather(*(wait(r) for r in run_ids))
            long_result = await client.wait(long_run, timeout=60)
            finishes = Counter[tuple[str, str]]()
            for run_id in run_ids:
                async for event in client.events(run_id):
                    if event.type == "node:finish":
                        finishes[(run_id, event.node_id)] += 1
        assert survivor.process.poll() is None, survivor.log.read_text()
    assert pids[victim_pid].process.returncode == -signal.SIGKILL
    assert [r.status for r in results] == ["completed"] * 6
    assert [r.context["c"] for r in results] == ["c done"] * 6
    assert finishes == Counter({(r, n): 1 for r in run_ids for n in "abc"})
    killed = [r for r in run_ids if ("b", victim_pid) in executions(markers, r)]
    assert len(killed) == b_pids[victim_pid] >= 1
    for run_id in run_ids:
        ran = [n for n, _ in executions(markers, run_id)]
        # at-least-once: only the b that died with its worker ran a second time
        assert ran == (["a", "b", "b", "c"] if run_id in killed else ["a", "b", "c"])
    # the long node outlived stalled_after and the lease on the survivor: never re-driven
    assert long_result.status == "completed"
    assert executions(markers, long_run) == [("long", survivor.process.pid)]
    recovery = max(finished_at[r] for r in killed) - killed_at
    print(f"\nkilled worker held b of {len(killed)} of 6 runs; all recovered "
          f"{recovery:.1f} s after the SIGKILL (pass every 1 s, stalled_after 3 s, lease 2 s)")
    assert recovery < 30


async def test_one_pass_per_interval_under_the_lock(redis: Redis, fc_prefix: str) -> None:
    calls: list[tuple[str, float]] = []

    def pass_for(name: str) -> Any:
        async def run_pass(stalled_after: float) -> dict[str, int]:
            calls.append((name, stalled_after))
            return {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
        return run_pass

    first = Reconciler(redis, pass_for("first"), prefix=fc_prefix, every=0.5, stalled_after=7)
    second = Reconciler(redis, pass_for("second"), prefix=fc_prefix, every=0.5,
                        stalled_after=7)
    assert await first.tick() == {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
    assert await second.tick() is None
    assert await first.tick() is None
    ttl = await redis.pttl(reconcile_lock_key(fc_prefix))
    assert 0 < ttl <= 500
    await asyncio.sleep(0.6)
    assert await second.tick() == {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
    assert calls == [("first", 7), ("second", 7)]


def sleeping_flow(duration: str) -> Flow:
    async def noop(ctx: Any) -> None:
        return None

    return (Flow(f"sleeps-{duration}").node("a", noop).sleep("nap", duration=duration)
            .edge("a", "nap"))


def test_defaults_and_bad_values() -> None:
    settings = worker_settings([victim_flow()])
    assert settings.flowcraft_reconcile_every == 60.0
    assert settings.flowcraft_reconcile_stalled_after == 60.0
    # sleeps do not matter (a deferred job counts as fired when it is due): two leases, >= 60 s
    assert default_stalled_after(30_000) == 60.0
    assert default_stalled_after(45_000) == 90.0
    assert worker_settings([sleeping_flow("5m")]).flowcraft_reconcile_stalled_after == 60.0
    off = worker_settings([victim_flow()], reconcile_every=None, reconcile_stalled_after=5)
    assert (off.flowcraft_reconcile_every, off.flowcraft_reconcile_stalled_after) == (None, 5.0)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "60"):
        with pytest.raises(ReconcileSettingsError) as caught:
            worker_settings([victim_flow()], reconcile_every=bad)  # type: ignore[arg-type]
        assert str(caught.value) == (f"worker_settings(reconcile_every={bad!r}): expected a "
                                     f"positive number of seconds or None")
        assert isinstance(caught.value, FlowcraftError)
    with pytest.raises(ReconcileSettingsError, match=r"reconcile_stalled_after=-3"):
        worker_settings([victim_flow()], reconcile_stalled_after=-3)


@pytest.mark.parametrize(("every", "has_task"), [(60.0, True), (None, False)])
async def test_worker_starts_and_stops_its_reconciler(arq_worker: Any, every: float | None,
                                                      has_task: bool) -> None:
    async with arq_worker([victim_flow()], reconcile_every=every) as worker:
        await until(lambda: ADAPTER_CTX_KEY in worker.ctx, 10, "worker start-up")
        entry = worker.ctx.get(TASK_CTX_KEY)
        assert (entry is not None) is has_task
        if entry is not None:
            reconciler, task = entry
            assert (reconciler.every, reconciler.stalled_after) == (60.0, 60.0)
            assert not task.done()
    if entry is not None:
        assert task.cancelled()
