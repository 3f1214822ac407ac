"""In-memory lanes: ready nodes wait in the lane that made them ready and get tasks only once
it suspends; cancellation goes through the host task. These pin down that the fast paths keep
the behaviour users see: concurrency, start order, context variables, cancellation, errors."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from flowcraft import Flow, FlowRuntime, NodeContext
from flowcraft.events import Event
from flowcraft.runtime.runtime import new_run_id

Step = Callable[[NodeContext], Awaitable[Any]]


def recording(log: list[str], name: str, pause: float | None = None) -> Step:
    async def node(ctx: NodeContext) -> str:
        log.append(f"s{name}")
        if pause is not None:
            await asyncio.sleep(pause)
        log.append(f"e{name}")
        return name

    return node


def diamond(log: list[str], b_pause: float | None = None) -> Flow:
    flow = Flow("diamond")
    for name in "ABCDE":
        flow.node(name, recording(log, name, b_pause if name == "B" else None))
    return (flow.edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D")
            .edge("D", "E"))


async def test_nodes_that_wait_still_run_concurrently() -> None:
    started = 0
    all_started = asyncio.Event()

    async def meet(ctx: NodeContext) -> str:
        nonlocal started
        started += 1
        if started == 4:
            all_started.set()
        await all_started.wait()  # deadlocks unless all four run at once
        return ctx.node_id

    flow = Flow("meet").node("S", recording([], "S"))
    for i in range(4):
        flow.node(f"P{i}", meet).edge("S", f"P{i}")
    result = await asyncio.wait_for(FlowRuntime().run(flow), timeout=10)
    assert result.status == "completed"
    assert [result.context[f"P{i}"] for i in range(4)] == ["P0", "P1", "P2", "P3"]


async def test_start_order_when_no_node_waits() -> None:
    log: list[str] = []
    result = await FlowRuntime().run(diamond(log))
    assert result.status == "completed"
    assert log == ["sA", "eA", "sB", "eB", "sC", "eC", "sD", "eD", "sE", "eE"]


async def test_start_order_when_siblings_yield() -> None:
    log: list[str] = []
    flow = Flow("yield").node("A", recording(log, "A")).node("E", recording(log, "E"))
    for name in "BCD":
        flow.node(name, recording(log, name, 0)).edge("A", name).edge(name, "E")
    assert (await FlowRuntime().run(flow)).status == "completed"
    assert log == ["sA", "eA", "sB", "sC", "sD", "eB", "eC", "eD", "sE", "eE"]


async def test_a_run_whose_nodes_never_wait_spawns_no_task() -> None:
    counts: list[int] = []

    async def count_tasks(ctx: NodeContext) -> int:
        counts.append(len(asyncio.all_tasks()))
        return 1

    flow = Flow("no-tasks")
    for name in "ABCDE":
        flow.node(name, count_tasks)
    flow.edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E")
    before = len(asyncio.all_tasks())
    assert (await FlowRuntime().run(flow)).status == "completed"
    assert counts == [before] * 5


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="-")


async def test_a_spawned_lane_starts_from_the_context_of_when_it_became_ready() -> None:
    seen: dict[str, str] = {}

    def setter(name: str, value: str, pause: float | None) -> Step:
        async def node(ctx: NodeContext) -> int:
            seen[name] = VAR.get()
            VAR.set(value)
            if pause is not None:
                await asyncio.sleep(pause)
            return 1

        return node

    flow = (Flow("vars").node("A", setter("A", "a", None)).node("B", setter("B", "b", 0.01))
            .node("C", setter("C", "c", None)).edge("A", "B").edge("A", "C"))

    async def in_own_task() -> str:
        result = await FlowRuntime().run(flow)
        return result.status

    assert await asyncio.create_task(in_own_task()) == "completed"
    # C became ready when A finished; B set "b" and then waited, which spawned C's lane.
    assert seen == {"A": "-", "B": "a", "C": "a"}


async def test_a_run_cancelled_by_its_own_node_leaves_the_caller_uncancelled() -> None:
    runtime = FlowRuntime()

    async def stop(ctx: NodeContext) -> int:
        assert runtime.cancel(ctx.run_id) is True
        return 1

    log: list[str] = []
    flow = Flow("self-cancel").node("stop", stop).node("next", recording(log, "next"))
    flow.edge("stop", "next")
    result = await runtime.run(flow, run_id="self")
    assert result.status == "cancelled"
    assert result.context["stop"] == 1
    assert log == []
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation is left pending for the caller


async def test_a_node_swallowing_the_cancellation_still_ends_the_run_cancelled() -> None:
    runtime = FlowRuntime()
    started = asyncio.Event()
    log: list[str] = []

    async def stubborn(ctx: NodeContext) -> str:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.append("swallowed")
        return "kept going"

    flow = Flow("stubborn").node("s", stubborn).node("after", recording(log, "after"))
    flow.edge("s", "after")

    async def cancel_soon() -> bool:
        await started.wait()
        return runtime.cancel("stubborn-1")

    canceller = asyncio.create_task(cancel_soon())
    result = await runtime.run(flow, run_id="stubborn-1")
    assert await canceller is True
    assert result.status == "cancelled"
    assert log == ["swallowed"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


@pytest.mark.parametrize("failing", ["A", "B", "C", "D"])
@pytest.mark.parametrize("b_pause", [None, 0.01])
async def test_an_event_bus_error_leaves_the_run_in_an_exception_group(
        failing: str, b_pause: float | None) -> None:
    class Boom(Exception):
        pass

    async def bus(event: Event) -> None:
        if event.type == "node:start" and getattr(event, "node_id", None) == failing:
            raise Boom(failing)

    with pytest.raises(ExceptionGroup) as caught:
        await FlowRuntime(event_bus=bus).run(diamond([], b_pause))
    assert [type(e) for e in caught.value.exceptions] == [Boom]
    assert str(caught.value.exceptions[0]) == failing


def test_run_ids_are_random_uuid4_hex() -> None:
    ids = [new_run_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    for run_id in ids[:600]:
        parsed = uuid.UUID(run_id)
        assert (len(run_id), parsed.hex, parsed.version, parsed.variant) == (
            32, run_id, 4, uuid.RFC_4122)
