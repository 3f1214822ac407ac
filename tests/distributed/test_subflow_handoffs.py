"""Issue 9 item 4: subflow hand-offs never leave a parent hung (real redis-server, real arq
workers). A refused resume leaves the parent exactly as it was; a cancelled child fails its
parent's subflow node (SubflowError, as in memory); cancelling a parent cancels its child runs,
recursively. Decisions: docs/distributed.md, "Subflows: resume and cancel"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dist_helpers import comparable
from dist_scenarios import (
    SUBFLOW_CHILDREN,
    SUBFLOW_PARENTS,
    double,
    parent_flow,
    sleepy,
    two_waits,
)

from flowcraft import Flow, FlowRuntime, ResumeError

SLOW_CHILD = Flow("slow_child").node("double", double).node("nap", sleepy).edge("double", "nap")
SLOW_PARENT = parent_flow("slow_child", "parent_slow")
TOP = Flow("top_slow").subflow("mid", blueprint_id="parent_slow")  # top -> parent -> child
TWO_WAITS_PARENT = parent_flow("two_waits", "parent_two_waits")
FLOWS = [*SUBFLOW_CHILDREN, *SUBFLOW_PARENTS, SLOW_CHILD, SLOW_PARENT, TOP, two_waits(),
         TWO_WAITS_PARENT]
LEASE_MS = 600  # a cancelled run's running nodes notice within a fraction of a second


def memory_runtime() -> FlowRuntime:
    return FlowRuntime(blueprints={f.id: f for f in FLOWS})


async def running(client: Any, run_id: str) -> None:
    """Until `run_id` (a slow child) is in its 5 s nap: "double" committed, a moment passed."""
    async with asyncio.timeout(20):
        while (await client.store.get_values(run_id, ["double"]))[0] is None:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)


async def test_item4_failed_resume_leaves_parent_resumable(arq_worker: Any,
                                                          flowcraft_client: Any) -> None:
    """The child waits on two nodes, so resuming the parent (which resumes the child with no
    node id) is refused with ResumeError, as in memory; the parent is left exactly as it
    was: awaiting on the subflow node, which completes the run once resumed properly."""
    memory = memory_runtime()
    paused = await memory.run(TWO_WAITS_PARENT, run_id="q1")
    with pytest.raises(ResumeError):
        await memory.resume(TWO_WAITS_PARENT, paused, "sub", "nope")
    async with arq_worker(FLOWS), flowcraft_client(FLOWS) as client:
        run_id = await client.start("parent_two_waits", run_id="q1")
        before = await client.wait(run_id, timeout=20)
        assert comparable(before) == comparable(paused)
        assert before.awaiting == ["sub"]
        awaiting_before = await client.store.awaiting(run_id)
        with pytest.raises(ResumeError, match="2 nodes await"):
            await client.resume(run_id, node_id="sub", output="nope")
        with pytest.raises(ResumeError):
            await client.resume(run_id, output="nope")  # node id None: the same
        assert await client.status(run_id) == "awaiting"
        assert await client.store.awaiting(run_id) == awaiting_before
        assert comparable(await client.wait(run_id, timeout=5)) == comparable(before)
        assert (await client.result("q1/sub#0")).awaiting == ["w1", "w2"]  # type: ignore[union-attr]
        # resumed properly: the child's first wait directly, then the parent (the child's
        # one wait left gets the output)
        await client.resume("q1/sub#0", node_id="w1", output="first")
        assert (await client.wait("q1/sub#0", timeout=20)).awaiting == ["w2"]
        await client.resume(run_id, node_id="sub", output="second")
        result = await client.wait(run_id, timeout=20)
        child = await client.wait("q1/sub#0", timeout=20)
    assert child.status == "completed"
    assert (child.context["B"], child.context["C"]) == ("first", "second")
    assert result.status == "completed", result.errors
    assert result.context["sub"] == {k: v for k, v in child.context.items()
                                     if not k.startswith("_")}


async def test_item4_cancelling_child_fails_or_cancels_parent(arq_worker: Any,
                                                              flowcraft_client: Any) -> None:
    """Cancelling a child run directly fails its parent's subflow node with SubflowError
    naming the child's blueprint and status, as in memory: once while the child runs a node
    (the parent is told at once, not when the node stops), once while it awaits (the parent
    awaits too)."""
    memory = memory_runtime()
    task = asyncio.create_task(memory.run(SLOW_PARENT, run_id="c1"))
    await asyncio.sleep(0.3)
    assert memory.cancel("c1/sub#0")
    expected = await task
    assert expected.status == "failed"
    async with arq_worker(FLOWS, lease_ms=LEASE_MS), flowcraft_client(FLOWS) as client:
        run_id = await client.start("parent_slow", run_id="c1")
        await running(client, "c1/sub#0")
        assert await client.cancel("c1/sub#0")
        result = await client.wait(run_id, timeout=10)
        child = await client.wait("c1/sub#0", timeout=10)
        # the child awaits, and so does its parent
        waiting = await client.start("parent_waits", run_id="c2")
        assert (await client.wait(waiting, timeout=20)).awaiting == ["sub"]
        assert await client.cancel("c2/sub#0")
        waited = await client.wait(waiting, timeout=10)
    assert comparable(result) == comparable(expected)
    assert child.status == "cancelled" and "nap" not in child.context
    for failed in (result, waited):
        assert failed.status == "failed"
        assert [(e.node_id, e.type) for e in failed.errors] == [("sub", "SubflowError")]
        assert "ended cancelled" in failed.errors[0].message
    assert "'slow_child'" in result.errors[0].message
    assert "'waiting_child'" in waited.errors[0].message


async def test_item4_cancelling_parent_cancels_children(arq_worker: Any,
                                                        flowcraft_client: Any) -> None:
    """Cancelling a run cancels the child runs of its subflow nodes, recursively: a running
    grandchild stops in its node (its 5 s nap never finishes), an awaiting child is cancelled
    too; every run ends cancelled, as the top run does in memory."""
    memory = memory_runtime()
    task = asyncio.create_task(memory.run(TOP, run_id="t1"))
    await asyncio.sleep(0.3)
    assert memory.cancel("t1")
    expected = await task
    async with arq_worker(FLOWS, lease_ms=LEASE_MS), flowcraft_client(FLOWS) as client:
        run_id = await client.start("top_slow", run_id="t1")
        await running(client, "t1/mid#0/sub#0")
        assert await client.cancel(run_id)
        results = {r: await client.wait(r, timeout=4)
                   for r in ("t1", "t1/mid#0", "t1/mid#0/sub#0")}
        waiting = await client.start("parent_waits", run_id="t2")
        assert (await client.wait(waiting, timeout=20)).awaiting == ["sub"]
        assert await client.cancel(waiting)
        results.update({r: await client.wait(r, timeout=10) for r in ("t2", "t2/sub#0")})
        assert not await client.cancel("t2/sub#0")  # already cancelled by its parent
    assert comparable(results["t1"]) == comparable(expected)
    assert {r: res.status for r, res in results.items()} == dict.fromkeys(results, "cancelled")
    assert "nap" not in results["t1/mid#0/sub#0"].context
    assert results["t1/mid#0/sub#0"].context["doubled"] == 42


async def test_item4_cancel_racing_the_hand_off_cancels_the_new_child(
        arq_worker: Any, flowcraft_client: Any) -> None:
    """The parent is cancelled after its subflow node's worker started the child and before
    it parked the node (forced: the worker's park first cancels the parent). The park is
    refused and drops the node, the parent finishes cancelled, and the child just started is
    cancelled by that worker instead of running on unseen."""
    refused: list[str] = []

    async def cancel_before_parking(ctx: dict[str, Any]) -> None:
        adapter = ctx["flowcraft_adapter"]
        store = adapter.store
        hand_off = store.hand_off

        async def racing(ref: Any, token: str, items: Any = None, *args: Any) -> Any:
            if items is None:
                assert await adapter.cancel(ref.run_id)
            outcome = await hand_off(ref, token, items, *args)
            if items is None:
                refused.append(str(outcome.reason))
            return outcome

        store.hand_off = racing

    async with arq_worker(FLOWS, lease_ms=LEASE_MS, on_startup=cancel_before_parking), \
            flowcraft_client(FLOWS) as client:
        run_id = await client.start("parent_slow", run_id="h1")
        result = await client.wait(run_id, timeout=10)
        child = await client.wait("h1/sub#0", timeout=10)
        meta = await client.store.meta(run_id)
    assert refused == ["not_running"]
    assert result.status == "cancelled" and meta["live"] == "0"
    assert meta["i:1#0"] == "C"
    assert child.status == "cancelled" and "nap" not in child.context
