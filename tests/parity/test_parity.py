"""One engine, two hosts: every construct and every doc flow, in memory and on arq workers.

Each case runs through `FlowRuntime` and through real in-process arq workers on the session's
real redis-server, with the same run id, and must give EQUAL status, context, node outputs,
errors (node id, type, message, attempt), awaiting nodes, and node function call counts (every
node function is wrapped by a per-node counter, see parity_flows.py). Wait cases are resumed
step by step and compared after every step. `pytest -v tests/parity` lists the matrix: one
`test_parity[<case>]` per case (each runs the case in both modes), plus batch items in flight
per mode and concurrency, a custom evaluator per mode, and the distributed job events.

The drifts this suite found when it was written (nested loops counting across outer passes, a
finished instance fired again, batch `concurrency` ignored, a custom evaluator seeing only some
names, no `job:*` events) are fixed: every case here must pass in both modes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from flowcraft_arq import FlowcraftClient
from flowcraft_arq.testing import running_worker
from parity_flows import (
    BLUEPRINTS,
    COUNTS,
    PEAK,
    REGISTRY,
    ScopeRecorder,
    reset_observations,
)

from flowcraft import EventRecorder, FlowRuntime, WorkflowResult

pytestmark = pytest.mark.asyncio(loop_scope="module")

Step = tuple[str | None, Any, str | None]
"""A resume: (node id, output, action)."""


@dataclass(frozen=True)
class Case:
    flow: str
    status: str  # the in-memory run's final status: keeps each case meaningful
    context: dict[str, Any] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    expect: dict[str, Any] = field(default_factory=dict)  # context values the memory run must have


NINE_PAIRS = [[outer, inner] for outer in (1, 2, 3) for inner in (1, 2, 3)]
AFTER_3_3 = {"from": "after", "value": {"from": "o2", "value": "3.3"}}
X_OUTPUT = {"from": "X", "value": {"x": 1}}

CASES: dict[str, Case] = {
    # README.md, docs/constructs.md, examples/order_processing.py (docs/distributed.md)
    "readme_condition_charge": Case("order", "completed", {"amount": 42}),
    "readme_condition_skip": Case("order", "completed", {"amount": 0}),
    "docs_loop_pager": Case("pager", "completed"),
    "docs_loop_runaway_max_iterations": Case("runaway", "failed"),
    "docs_batch_pricing": Case("pricing", "completed", {"skus": ["kettle", "mug", "teapot"]}),
    "docs_batch_pricing_empty": Case("pricing", "completed", {"skus": []}),
    "docs_subflow_signup": Case("signup", "completed", {"raw_email": "  Ada@Example.COM "}),
    "docs_sleep_reminder": Case("reminder", "completed"),
    "docs_wait_resume_approve": Case("expense", "completed", {"amount": 120},
                                     (("manager", {"by": "grace"}, "approve"),)),
    "docs_wait_resume_deny": Case("expense", "completed", {"amount": 120},
                                  ((None, {"by": "bob"}, "deny"),)),
    "docs_chain_scoring": Case("scoring", "completed", {"weight": 10}),
    "docs_fan_in_adder": Case("adder", "completed"),
    "docs_cli_greeter": Case("greeter", "completed", {"name": "ada"}),
    "docs_cli_broken_fails": Case("broken", "failed"),
    "example_order_processing": Case("order-processing", "completed"),
    # every other construct
    "fan_out_all_join": Case("fan_out", "completed", {"x": 4}),
    "any_join": Case("any_join", "completed", {"x": 2}),
    "if_else_all_join_then": Case("if_else", "completed", {"x": 5}),
    "if_else_all_join_else": Case("if_else", "completed", {"x": -5}),
    "route_action_approve": Case("triage", "completed", {"amount": 10, "verdict": "approve"}),
    "route_action_deny": Case("triage", "completed", {"amount": 900, "verdict": "deny"}),
    "route_action_unmatched": Case("triage", "completed", {"amount": 5, "verdict": "escalate"}),
    "retries": Case("retries", "completed"),
    "fallback": Case("fallback", "completed"),
    "timeout": Case("timeout", "failed"),
    "fail_fast": Case("fail_fast", "failed"),
    "subflow_child_fails": Case("parent_fails", "failed", {"x": 7}),
    "subflow_in_loop": Case("subflow_loop", "completed",
                            expect={"history": [None, 20, 40], "last_doubled": 60}),
    "nested_loops_inner_max_iterations_3": Case("nested_loops", "completed",
                                                expect={"pairs": NINE_PAIRS, "after": AFTER_3_3}),
    "nested_loops_inner_exit_into_all_join": Case(
        "nested_loop_join", "completed",
        expect={"pairs": NINE_PAIRS,
                "J_input": {"inner_loop": "3.3", "side": {"from": "side", "value": 3}}}),
    "loop_into_all_join": Case("loop_join", "completed",
                               expect={"J_input": {"lp": 3, "X": X_OUTPUT}}),
    "loop_into_all_join_late_branch": Case("loop_join_slow", "completed",
                                           expect={"J_input": {"lp": 3, "X": X_OUTPUT}}),
    "loop_body_all_join": Case("loop_body_join", "completed",
                               expect={"J_input": {"L": {"from": "L", "value": 3},
                                                   "R": {"from": "R", "value": 3}}}),
    "wait_two_pending": Case("two_waits", "completed", {},
                             (("w2", "second", None), ("w1", "first", None))),
    "batch_concurrency_1": Case("batch_c1", "completed"),
    "batch_concurrency_2": Case("batch_c2", "completed"),
    "batch_concurrency_3": Case("batch_c3", "completed"),
    "batch_item_fails": Case("batch_c2", "failed", {"count": 13}),  # the 13th item fails
}

def case_params() -> list[Any]:
    return [pytest.param(name, id=name) for name in CASES]


# -- the two hosts ---------------------------------------------------------------------------


def unique(tag: str) -> str:
    return f"parity-{tag}-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def arq(redis_url: str) -> AsyncIterator[FlowcraftClient]:
    """Two in-process arq workers serving every parity flow, shared by the whole module."""
    queue, prefix = unique("q"), unique("p")
    flows = list(BLUEPRINTS.values())
    settings: dict[str, Any] = {"queue_name": queue, "prefix": prefix, "registry": REGISTRY}
    async with running_worker(flows, redis_url, **settings), \
            running_worker(flows, redis_url, **settings), \
            FlowcraftClient.from_url(redis_url, flows=flows, registry=REGISTRY, queue_name=queue,
                                     prefix=prefix) as client:
        yield client


async def run_in_memory(case: Case, run_id: str,
                        runtime: FlowRuntime | None = None) -> list[WorkflowResult]:
    runtime = runtime or FlowRuntime(registry=REGISTRY, blueprints=BLUEPRINTS)
    blueprint = BLUEPRINTS[case.flow]
    results = [await runtime.run(blueprint, context=dict(case.context), run_id=run_id)]
    for node_id, output, action in case.steps:
        results.append(await runtime.resume(blueprint, results[-1], node_id, output, action))
    return results


async def run_on_arq(client: FlowcraftClient, case: Case, run_id: str) -> list[WorkflowResult]:
    await client.start(case.flow, context=dict(case.context), run_id=run_id)
    results = [await client.wait(run_id, timeout=10)]
    for node_id, output, action in case.steps:
        await client.resume(run_id, node_id=node_id, output=output, action=action)
        results.append(await client.wait(run_id, timeout=10))
    return results


@asynccontextmanager
async def dedicated_arq(redis_url: str, **settings: Any) -> AsyncIterator[FlowcraftClient]:
    """One worker with extra `settings` (evaluator, event bus) on a queue of its own; the
    client records the same event types (it enqueues the start jobs)."""
    queue, prefix = unique("q"), unique("p")
    flows = list(BLUEPRINTS.values())
    client_settings = {k: v for k, v in settings.items() if k == "stream_events"}
    async with running_worker(flows, redis_url, queue_name=queue, prefix=prefix,
                              registry=REGISTRY, **settings), \
            FlowcraftClient.from_url(redis_url, flows=flows, registry=REGISTRY,
                                     queue_name=queue, prefix=prefix,
                                     **client_settings) as client:
        yield client


def view(result: WorkflowResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "context": result.context,
        "outputs": {k: v for k, v in result.context.items() if k.startswith("_outputs.")},
        "errors": sorted((e.node_id, e.type, e.message, e.attempt) for e in result.errors),
        "awaiting": sorted(result.awaiting),
    }


# -- parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", case_params())
async def test_parity(name: str, arq: FlowcraftClient) -> None:
    case = CASES[name]
    run_id = f"parity-{name}"
    reset_observations()
    memory = [view(r) for r in await run_in_memory(case, run_id)]
    memory_counts = dict(COUNTS)
    assert memory[-1]["status"] == case.status
    assert {key: memory[-1]["context"].get(key) for key in case.expect} == case.expect
    assert [s["status"] for s in memory[:-1]] == ["awaiting"] * len(case.steps)
    reset_observations()
    distributed = [view(r) for r in await run_on_arq(arq, case, run_id)]
    assert distributed == memory
    assert dict(COUNTS) == memory_counts


def in_flight_params() -> list[Any]:
    params = [pytest.param("memory", c, id=f"memory-concurrency_{c}") for c in (1, 2, 3)]
    params += [pytest.param("arq", c, id=f"arq-concurrency_{c}") for c in (1, 2, 3)]
    return params


@pytest.mark.parametrize(("mode", "concurrency"), in_flight_params())
async def test_batch_items_in_flight_equal_concurrency(mode: str, concurrency: int,
                                                       arq: FlowcraftClient) -> None:
    """Six items of 0.1 s each: at most `concurrency` in flight, and the peak reaches it."""
    case = Case(f"batch_c{concurrency}", "completed", {"count": 6})
    run_id = unique(f"in-flight-{mode}-{concurrency}")
    reset_observations()
    if mode == "memory":
        results = await run_in_memory(case, run_id)
    else:
        results = await run_on_arq(arq, case, run_id)
    assert results[-1].status == "completed"
    assert [line["item"] for line in results[-1].context["worked"]] == [1, 2, 3, 4, 5, 6]
    assert PEAK[f"batch_c{concurrency}"] == concurrency


# -- a custom evaluator (CONTRACT §7) sees the whole context ---------------------------------

# The names each scope must hold (internal `_` keys aside): the context is {alpha, beta}, node A
# writes gamma, the loop body writes n; an edge condition also sees `result`.
WHOLE_CONTEXT = {"alpha", "beta", "gamma", "A"}
EXPECTED_SCOPES = [
    ("alpha > 0", WHOLE_CONTEXT | {"result"}),
    ("n < 2", WHOLE_CONTEXT | {"n", "body"}),
    ("n < 2", WHOLE_CONTEXT | {"n", "body"}),
]


@pytest.mark.parametrize("mode", ["memory", "arq"])
async def test_custom_evaluator_sees_whole_context(mode: str, redis_url: str) -> None:
    recorder = ScopeRecorder()
    case = Case("evaluated", "completed", {"alpha": 1, "beta": 2})
    run_id = unique(f"evaluator-{mode}")
    if mode == "memory":
        runtime = FlowRuntime(registry=REGISTRY, blueprints=BLUEPRINTS, evaluator=recorder)
        results = await run_in_memory(case, run_id, runtime)
    else:
        async with dedicated_arq(redis_url, evaluator=recorder) as client:
            results = await run_on_arq(client, case, run_id)
    assert results[-1].status == "completed"
    assert results[-1].context["after"] == {"from": "after", "value": 2}
    conditions = [(e, names) for e, names in recorder.seen if e in ("alpha > 0", "n < 2")]
    assert [expression for expression, _ in conditions] == [e for e, _ in EXPECTED_SCOPES]
    missing = [sorted(expected - names)
               for (_, names), (_, expected) in zip(conditions, EXPECTED_SCOPES, strict=True)]
    assert missing == [[], [], []]


# -- job events (CONTRACT §6) ----------------------------------------------------------------

JOB_EVENTS = ("job:enqueued", "job:processed", "job:failed")


async def test_job_events_are_emitted_distributed(redis_url: str) -> None:
    """Looked for both on the worker's event bus and in the run's event log."""
    bus = EventRecorder()
    streamed: dict[str, list[str]] = {}
    async with dedicated_arq(redis_url, event_bus=bus,
                             stream_events=("workflow:start", "workflow:finish", *JOB_EVENTS)
                             ) as client:
        for flow, last in (("scoring", "job:processed"), ("broken", "job:failed")):
            run_id = unique(flow)
            await client.start(flow, run_id=run_id)
            await client.wait(run_id, timeout=10)
            # a job's event follows its outcome, so it may come just after the run ended
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                streamed[flow] = [e.type async for e in client.events(run_id)]
                streamed[flow] += [e.type for e in bus.events if e.run_id == run_id]
                if last in streamed[flow] or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
    job_types = {flow: {t for t in types if t.startswith("job:")}
                 for flow, types in streamed.items()}
    assert job_types["scoring"] == {"job:enqueued", "job:processed"}
    assert {"job:enqueued", "job:failed"} <= job_types["broken"]
