"""Sleep and wait / human in the loop: issue 3 items 4 and 5; CONTRACT §6 (resume), §8, §12.10,
§12.13."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cli_flows
import pytest

from flowcraft import (
    BlueprintError,
    EventRecorder,
    Flow,
    FlowRuntime,
    NodeContext,
    ResumeError,
    WorkflowResult,
    load_blueprint,
)

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


# --------------------------------------------------------------------------- sleep


def sleepy_flow(counts: Counter[str], duration: Any) -> Flow:
    async def before(ctx: NodeContext) -> str:
        counts["before"] += 1
        return "before"

    async def after(ctx: NodeContext) -> str:
        counts["after"] += 1
        return "after"

    return (
        Flow("sleepy")
        .node("before", before)
        .sleep("nap", duration=duration)
        .node("after", after)
        .edge("before", "nap")
        .edge("nap", "after")
    )


@pytest.mark.parametrize("duration", [150, "150ms"])
async def test_sleep_in_memory_sleeps_and_continues(duration: Any) -> None:
    counts: Counter[str] = Counter()
    began = time.monotonic()
    result = await FlowRuntime().run(sleepy_flow(counts, duration))
    elapsed = time.monotonic() - began

    assert result.status == "completed", result.errors
    assert counts == Counter(before=1, after=1)
    assert elapsed >= 0.12
    assert result.context["after"] == "after"


async def test_sleep_blocks_only_its_branch() -> None:
    order: list[str] = []

    async def start(ctx: NodeContext) -> None:
        order.append("start")

    async def fast(ctx: NodeContext) -> None:
        order.append("fast")

    async def slow(ctx: NodeContext) -> None:
        order.append("slow")

    flow = (
        Flow("branches")
        .node("start", start)
        .sleep("nap", duration="100ms")
        .node("slow", slow)
        .node("fast", fast)
        .edge("start", "nap")
        .edge("nap", "slow")
        .edge("start", "fast")
    )
    result = await FlowRuntime().run(flow)
    assert result.status == "completed"
    assert order == ["start", "fast", "slow"]


@pytest.mark.parametrize("duration", [0, 10, 2.5, "500ms", "5s", "2m", "1h", "1d"])
def test_good_durations_accepted(duration: Any) -> None:
    bp = Flow("ok").sleep("nap", duration=duration).to_blueprint()
    assert bp.nodes[0].params["duration"] == duration


@pytest.mark.parametrize("duration", ["5 parsecs", "soon", "5x", "", -1, "-5s", None, True])
def test_bad_durations_rejected_at_build_time(duration: Any) -> None:
    with pytest.raises(BlueprintError):
        Flow("bad").sleep("nap", duration=duration).to_blueprint()


def test_bad_duration_rejected_at_load_time() -> None:
    data = {
        "id": "bad-sleep",
        "nodes": [{"id": "nap", "uses": "sleep", "params": {"duration": "5 parsecs"}}],
        "edges": [],
    }
    with pytest.raises(BlueprintError) as info:
        load_blueprint(data)
    assert str(info.value).startswith("invalid duration '5 parsecs': expected ms or ")
    assert str(info.value).endswith("at `$.nodes[0].params` (node 'nap')")
    with pytest.raises(BlueprintError):
        load_blueprint(json.dumps(data))


def test_missing_duration_rejected_at_load_time() -> None:
    with pytest.raises(BlueprintError):
        load_blueprint({"id": "no-duration", "nodes": [{"id": "nap", "uses": "sleep"}],
                        "edges": []})


async def test_durable_timer_returns_awaiting_with_wake_at() -> None:
    counts: Counter[str] = Counter()
    began = datetime.now(UTC)
    t0 = time.monotonic()
    result = await FlowRuntime().run(sleepy_flow(counts, "1h"), durable_timers=True)

    assert time.monotonic() - t0 < 5  # it did not sleep for an hour
    assert result.status == "awaiting"
    assert result.awaiting == ["nap"]
    assert counts == Counter(before=1)
    assert list(result.wake_at) == ["nap"]
    wake_at = result.wake_at["nap"]
    assert began + timedelta(minutes=59) <= wake_at <= began + timedelta(minutes=61)
    restored = WorkflowResult.from_json(result.to_json())
    assert restored.wake_at == {"nap": wake_at}


async def test_durable_timer_resume_after_wake_time_continues() -> None:
    counts: Counter[str] = Counter()
    flow = sleepy_flow(counts, "30ms")
    paused = await FlowRuntime().run(flow, durable_timers=True)
    assert paused.status == "awaiting"
    assert paused.awaiting == ["nap"]

    await asyncio.sleep(0.08)
    resumed = await FlowRuntime().resume(flow, paused.to_json(), node_id="nap")

    assert resumed.status == "completed", resumed.errors
    assert counts == Counter(before=1, after=1)
    assert resumed.context["after"] == "after"


async def test_durable_timers_false_by_default() -> None:
    counts: Counter[str] = Counter()
    result = await FlowRuntime().run(sleepy_flow(counts, 1))
    assert result.status == "completed"
    assert counts["after"] == 1


# --------------------------------------------------------------------------- wait


def approval_flow(counts: Counter[str]) -> Flow:
    async def draft(ctx: NodeContext) -> str:
        counts["draft"] += 1
        return "draft"

    async def ship(ctx: NodeContext) -> Any:
        counts["ship"] += 1
        return {"shipped": True, "input": ctx.input}

    async def cancel(ctx: NodeContext) -> str:
        counts["cancel"] += 1
        return "cancelled"

    return (
        Flow("approval")
        .node("draft", draft)
        .wait("approval")
        .node("ship", ship)
        .node("cancel", cancel)
        .edge("draft", "approval")
        .edge("approval", "ship", action="approve")
        .edge("approval", "cancel", action="reject")
    )


async def test_wait_pauses_the_run() -> None:
    counts: Counter[str] = Counter()
    recorder = EventRecorder()
    result = await FlowRuntime(event_bus=recorder).run(approval_flow(counts))

    assert result.status == "awaiting"
    assert result.awaiting == ["approval"]
    assert counts == Counter(draft=1)
    assert result.context["draft"] == "draft"
    assert "workflow:pause" in recorder.types()
    assert "workflow:finish" not in recorder.types()


@pytest.mark.parametrize(("action", "taken", "not_taken"),
                         [("approve", "ship", "cancel"), ("reject", "cancel", "ship")])
async def test_resume_routes_on_action(action: str, taken: str, not_taken: str) -> None:
    counts: Counter[str] = Counter()
    flow = approval_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)

    resumed = await runtime.resume(flow, paused, node_id="approval", output={"by": "ann"},
                                   action=action)

    assert resumed.status == "completed", resumed.errors
    assert resumed.awaiting == []
    assert resumed.run_id == paused.run_id
    assert counts[taken] == 1
    assert counts[not_taken] == 0
    assert not_taken not in resumed.context
    assert resumed.context["approval"] == {"by": "ann"}
    assert resumed.context["_outputs.approval"] == {"by": "ann"}
    if taken == "ship":
        assert resumed.context["ship"] == {"shipped": True, "input": {"by": "ann"}}


async def test_resume_emits_workflow_resume_and_finish() -> None:
    counts: Counter[str] = Counter()
    flow = approval_flow(counts)
    recorder = EventRecorder()
    runtime = FlowRuntime(event_bus=recorder)
    paused = await runtime.run(flow)
    recorder.clear()

    await runtime.resume(flow, paused, node_id="approval", action="approve")

    types = recorder.types()
    assert "workflow:resume" in types
    assert types[-1] == "workflow:finish"
    (resume_event,) = recorder.of("workflow:resume")
    assert resume_event.node_id == "approval"
    assert resume_event.run_id == paused.run_id


async def test_resume_with_unmatched_action_runs_no_action_edge() -> None:
    counts: Counter[str] = Counter()
    flow = approval_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)
    resumed = await runtime.resume(flow, paused, node_id="approval", action="maybe")

    assert resumed.status == "completed"
    assert counts["ship"] == 0
    assert counts["cancel"] == 0


async def test_resume_node_id_none_with_one_awaiting() -> None:
    counts: Counter[str] = Counter()
    flow = approval_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)
    resumed = await runtime.resume(flow, paused, output={"by": "bo"}, action="approve")

    assert resumed.status == "completed"
    assert counts["ship"] == 1


def two_waits_flow(counts: Counter[str]) -> Flow:
    async def fork(ctx: NodeContext) -> str:
        counts["fork"] += 1
        return "fork"

    async def after_a(ctx: NodeContext) -> str:
        counts["after_a"] += 1
        await ctx.context.set("a_note", f"a got {ctx.input}")
        return f"A:{ctx.input}"

    async def after_b(ctx: NodeContext) -> str:
        counts["after_b"] += 1
        await ctx.context.set("b_note", f"b got {ctx.input}")
        return f"B:{ctx.input}"

    async def merge(ctx: NodeContext) -> Any:
        counts["merge"] += 1
        return ctx.input

    return (
        Flow("two-waits")
        .node("fork", fork)
        .wait("wa")
        .wait("wb")
        .node("after_a", after_a)
        .node("after_b", after_b)
        .node("merge", merge)
        .edge("fork", "wa")
        .edge("fork", "wb")
        .edge("wa", "after_a")
        .edge("wb", "after_b")
        .edge("after_a", "merge")
        .edge("after_b", "merge")
    )


async def _resume_in_order(order: list[str]) -> tuple[WorkflowResult, Counter[str]]:
    counts: Counter[str] = Counter()
    flow = two_waits_flow(counts)
    runtime = FlowRuntime()
    result = await runtime.run(flow)
    assert result.status == "awaiting"
    assert sorted(result.awaiting) == ["wa", "wb"]
    outputs = {"wa": "yes-a", "wb": "yes-b"}
    for node_id in order:
        result = await runtime.resume(flow, result.to_json(), node_id=node_id,
                                      output=outputs[node_id])
    return result, counts


async def test_two_pending_waits_resumed_in_either_order_reach_same_context() -> None:
    ab, counts_ab = await _resume_in_order(["wa", "wb"])
    ba, counts_ba = await _resume_in_order(["wb", "wa"])

    assert ab.status == ba.status == "completed"
    assert ab.context == ba.context
    assert counts_ab == counts_ba == Counter(fork=1, after_a=1, after_b=1, merge=1)
    assert ab.context["merge"] == {"after_a": "A:yes-a", "after_b": "B:yes-b"}
    assert list(ab.context["merge"]) == list(ba.context["merge"]) == ["after_a", "after_b"]


async def test_resuming_one_wait_continues_only_its_branch() -> None:
    counts: Counter[str] = Counter()
    flow = two_waits_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)

    half = await runtime.resume(flow, paused, node_id="wb", output="yes-b")

    assert half.status == "awaiting"
    assert half.awaiting == ["wa"]
    assert counts == Counter(fork=1, after_b=1)
    assert half.context["after_b"] == "B:yes-b"
    assert half.context["b_note"] == "b got yes-b"
    assert "after_a" not in half.context
    assert "merge" not in half.context

    # resuming the same node again is an error: it no longer awaits
    with pytest.raises(ResumeError):
        await runtime.resume(flow, half, node_id="wb", output="again")


async def test_resume_error_for_node_that_is_not_awaiting() -> None:
    counts: Counter[str] = Counter()
    flow = two_waits_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)

    with pytest.raises(ResumeError) as info:
        await runtime.resume(flow, paused, node_id="fork", output="x")
    assert "fork" in str(info.value)
    assert counts == Counter(fork=1)


async def test_resume_error_for_unknown_node() -> None:
    counts: Counter[str] = Counter()
    flow = two_waits_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)

    with pytest.raises(ResumeError) as info:
        await runtime.resume(flow, paused, node_id="no-such-node")
    assert "no-such-node" in str(info.value)


async def test_resume_error_for_node_id_none_with_two_awaiting() -> None:
    counts: Counter[str] = Counter()
    flow = two_waits_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)

    with pytest.raises(ResumeError):
        await runtime.resume(flow, paused, output="x")
    assert counts == Counter(fork=1)


async def test_resume_error_for_a_completed_run() -> None:
    counts: Counter[str] = Counter()
    flow = approval_flow(counts)
    runtime = FlowRuntime()
    paused = await runtime.run(flow)
    done = await runtime.resume(flow, paused, node_id="approval", action="approve")
    assert done.status == "completed"

    with pytest.raises(ResumeError):
        await runtime.resume(flow, done, node_id="approval", action="approve")
    assert counts["ship"] == 1


async def test_wait_inside_loop_resumes_per_iteration() -> None:
    counts: Counter[str] = Counter()

    async def bump(ctx: NodeContext) -> int:
        counts["bump"] += 1
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        return n

    async def record(ctx: NodeContext) -> Any:
        counts["record"] += 1
        got = await ctx.context.get("answers", [])
        await ctx.context.set("answers", [*got, ctx.input])
        return ctx.input

    flow = (
        Flow("loop-wait")
        .node("bump", bump)
        .wait("ask")
        .node("record", record)
        .edge("bump", "ask")
        .edge("ask", "record")
        .loop("lp", start="bump", end="record", condition="n < 2")
    )
    runtime = FlowRuntime()
    result = await runtime.run(flow)
    assert result.status == "awaiting"
    result = await runtime.resume(flow, result.to_json(), node_id="ask", output="first")
    assert result.status == "awaiting"
    assert result.awaiting == ["ask"]
    result = await runtime.resume(flow, result.to_json(), node_id="ask", output="second")

    assert result.status == "completed", result.errors
    assert result.context["answers"] == ["first", "second"]
    assert counts == Counter(bump=2, record=2)


def test_resume_in_a_new_process_from_json(tmp_path: Path) -> None:
    """Run until the wait here, write the JSON result, resume in a fresh interpreter."""
    paused = asyncio.run(FlowRuntime().run(cli_flows.build_hitl(), context={"amount": 7}))
    assert paused.status == "awaiting"
    assert paused.awaiting == ["approval"]
    result_file = tmp_path / "paused.json"
    result_file.write_bytes(paused.to_json())

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)])
    proc = subprocess.run(
        [sys.executable, str(TESTS_DIR / "resume_child.py"), str(result_file), "approval",
         "approve", json.dumps({"by": "carol"})],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )

    assert proc.returncode == 0, proc.stderr
    resumed = WorkflowResult.from_json(proc.stdout.strip())
    assert resumed.status == "completed", resumed.errors
    assert resumed.run_id == paused.run_id
    assert resumed.context["draft"] == {"amount": 7}
    assert resumed.context["approval"] == {"by": "carol"}
    assert resumed.context["ship"] == "shipped carol"
    assert "cancel" not in resumed.context
