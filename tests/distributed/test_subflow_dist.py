"""Subflows distributed (CONTRACT §8 subflow, §12.11): the child is a run of its own on the
workers; its end completes (or fails) the subflow node, its pause pauses the parent, and
resuming the parent's subflow node resumes the child. Same results as in memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dist_helpers import Cluster, comparable
from dist_scenarios import SUBFLOW_CHILDREN, SUBFLOW_PARENTS

from flowcraft import Flow, FlowRuntime, WorkflowResult

FLOWS = [*SUBFLOW_CHILDREN, *SUBFLOW_PARENTS]
PARENTS = {f.id: f for f in SUBFLOW_PARENTS}
# parent id -> resumes to apply while it awaits
CASES: dict[str, list[tuple[str | None, Any, str | None]]] = {
    "parent": [], "parent_fails": [], "parent_waits": [("sub", {"ok": 1}, None)]}
# parent id -> how its child run ends (the waiting child finishes once resumed)
CHILD_STATUS = {"parent": "completed", "parent_fails": "failed", "parent_waits": "completed"}


async def in_memory(parent: Flow, steps: list[Any], run_id: str) -> list[WorkflowResult]:
    runtime = FlowRuntime(blueprints={f.id: f for f in SUBFLOW_CHILDREN})
    results = [await runtime.run(parent, run_id=run_id)]
    for node_id, output, action in steps:
        results.append(await runtime.resume(parent, results[-1], node_id, output, action))
    return results


@pytest.mark.parametrize("name", sorted(CASES))
async def test_memory_store_subflow(name: str) -> None:
    expected = await in_memory(PARENTS[name], CASES[name], "p1")
    async with Cluster(FLOWS) as cluster:
        run_id = await cluster.adapter.start_run(name, run_id="p1")
        got = [await cluster.store.wait_result(run_id, 5)]
        for node_id, output, action in CASES[name]:
            await cluster.adapter.resume(run_id, node_id, output, action)
            got.append(await cluster.store.wait_result(run_id, 5))
    assert [comparable(r) for r in got] == [comparable(r) for r in expected]


@pytest.mark.parametrize("name", sorted(CASES))
async def test_arq_subflow(name: str, arq_worker: Any, flowcraft_client: Any) -> None:
    expected = await in_memory(PARENTS[name], CASES[name], "p2")
    async with arq_worker(FLOWS), flowcraft_client(FLOWS) as client:
        run_id = await client.start(name, run_id="p2")
        got = [await client.wait(run_id, timeout=20)]
        for node_id, output, action in CASES[name]:
            await client.resume(run_id, node_id=node_id, output=output, action=action)
            got.append(await client.wait(run_id, timeout=20))
        child = await client.result("p2/sub#0")
    assert [comparable(r) for r in got] == [comparable(r) for r in expected]
    assert child is not None
    assert child.status == CHILD_STATUS[name]


async def test_reconcile_completes_a_subflow_whose_parent_was_not_told(
        arq_worker: Any, flowcraft_client: Any) -> None:
    """The worker that records the child's end dies before completing the parent's subflow
    node (simulated: that step is skipped once): reconcile finds the parked node whose child
    ended and completes it."""
    lost: list[str] = []

    async def lose_first_notice(ctx: dict[str, Any]) -> None:
        adapter = ctx["flowcraft_adapter"]
        original = adapter.notify_parent

        async def notify(child_id: str) -> None:
            if not lost:
                lost.append(child_id)
                return
            await original(child_id)

        adapter.notify_parent = notify

    expected = await in_memory(PARENTS["parent"], [], "p3")
    async with arq_worker(FLOWS, on_startup=lose_first_notice), \
            flowcraft_client(FLOWS) as client:
        run_id = await client.start("parent", run_id="p3")
        while await client.result("p3/sub#0") is None:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert lost == ["p3/sub#0"] and await client.status(run_id) == "running"
        counts = await client.reconcile(stalled_after=0)
        assert counts["reconciled"] == 1  # the parent; its ended child needs nothing
        result = await client.wait(run_id, timeout=20)
    assert comparable(result) == comparable(expected[0])
