"""The Lua scripts answer like the Python model: MemoryStore and RedisRunStore, driven with the
same random transition sequences on random graphs, agree after every step.

Each example draws a small graph (a DAG with `all` and `any` joins, maybe a fallback-only node,
maybe one loop controller with its back edge and exits) and a sequence of transitions chosen
from the model's observable state: claims of fired instances, commits with random routing and
context writes, awaits and resumes, failures with pills, releases, batch scatters and item
commits, subflow park/adopt, cancel, reconcile, acks; plus a share of steps both stores must
refuse (stale tokens, double commits, claims of finished instances, resumes of instances that
do not await, unknown runs). Leases are ten minutes long, so no answer depends on the clock.

Disagreements found so far are minimised at the end of this file as `xfail(strict=True)` tests,
one per name in `KNOWN`; while a name is there, the property steers around that disagreement
(`_tolerant`, `Harness.adoptable`, ...) so it keeps checking everything else. The change that
fixes one removes its name: its test becomes a plain test and nothing is tolerated for it.

`make test` replays a fixed sequence of examples; FLOWCRAFT_FUZZ_EXAMPLES=n explores n random
ones. The store calls live in parity_stores.py (one driver per store).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parity_stores import (
    TS,
    Inst,
    Observed,
    Pair,
    Res,
    Step,
    inst_of,
    job_of,
    key_of,
    replay,
)
from redis.asyncio import Redis

from flowcraft.blueprint import (
    EdgeDefinition,
    NodeConfig,
    NodeDefinition,
    WorkflowBlueprint,
    load_blueprint,
)
from flowcraft.distributed.protocols import TERMINAL, fused_token
from flowcraft.result import WorkflowError
from flowcraft.runtime.graph import BACK, EXIT, Graph

# How the Lua scripts disagree with the model today (the xfail tests at the end show each).
KNOWN: frozenset[str] = frozenset()


def known(name: str, reason: str) -> pytest.MarkDecorator:
    """The test of disagreement `name`: expected to fail while the name is in KNOWN."""
    return pytest.mark.xfail(name in KNOWN, strict=True, reason=reason)


EXAMPLES = int(os.environ.get("FLOWCRAFT_FUZZ_EXAMPLES", "200"))
PARITY = settings(max_examples=EXAMPLES, deadline=None,
                  derandomize="FLOWCRAFT_FUZZ_EXAMPLES" not in os.environ,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Node ids that JSON-escape differently in msgspec and cjson ("/", quotes, non-ASCII).
NODE_IDS = ("a", "b/x", "c d", "dé", 'e"q', "f", "g")
KEYS = ("k", "_outputs.a", "ü/v", "n")
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner,
                                                                 max_size=2),
    max_leaves=4).map(msgspec.json.encode)
taken = st.integers(0, 3).map(bool)  # an edge is taken three times in four
writes = st.lists(st.tuples(st.sampled_from(KEYS), st.none() | values), max_size=3).map(tuple)


def _error(node_id: str) -> bytes:
    """A node failure as the adapter records it."""
    return msgspec.json.encode(WorkflowError(node_id=node_id, message="boom", type="ValueError",
                                             attempt=1, timestamp=datetime.fromisoformat(TS)))


def _noop() -> None:
    """Stands for every node implementation: the stores never run nodes."""


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    """A random compiled graph."""
    count = draw(st.integers(2, 6))
    ids = list(NODE_IDS[:count])
    forward = st.integers(0, count - 2).flatmap(
        lambda s: st.tuples(st.just(s), st.integers(s + 1, count - 1)))
    pairs = draw(st.lists(forward, max_size=9))
    edges = [EdgeDefinition(ids[s], ids[t]) for s, t in pairs]
    any_join = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    fallback: dict[int, str] = {}
    if draw(st.booleans()):
        owner, offset = draw(st.tuples(st.integers(0, count - 1), st.integers(1, count - 1)))
        fallback[owner] = ids[(owner + offset) % count]
    nodes = [NodeDefinition(ids[i], "fn", config=NodeConfig(
        join_strategy="any" if any_join[i] else "all", fallback=fallback.get(i)))
        for i in range(count)]
    if draw(st.booleans()):
        first, last = sorted(draw(st.tuples(st.integers(0, count - 1),
                                            st.integers(0, count - 1))))
        nodes.append(NodeDefinition("loop", "loop-controller",
                                    params={"condition": "true", "maxIterations": 3}))
        # the body runs first -> ... -> last, so the controller is entered from its body only
        edges += [EdgeDefinition(ids[k], ids[k + 1]) for k in range(first, last)]
        edges += [EdgeDefinition(ids[last], "loop"),
                  EdgeDefinition("loop", ids[first], action="continue")]
        exits = draw(st.lists(st.integers(0, count - 1), max_size=2))
        edges += [EdgeDefinition("loop", ids[t], action=draw(st.sampled_from([None, "break"])))
                  for t in exits]
    blueprint = load_blueprint(WorkflowBlueprint("parity", tuple(nodes), tuple(edges)))
    return Graph(blueprint, {"fn": _noop, "loop-controller": _noop})


class Harness:
    """What the test knows besides the model's state: which tokens hold which leases, which
    (instance, token) pairs already completed, and a counter for fresh tokens."""

    def __init__(self, graph: Graph, may_cancel: bool) -> None:
        self.graph = graph
        self.may_cancel = may_cancel  # one example in three cancels its run at some point
        self.held: dict[Inst, str] = {}
        self.spent: list[tuple[Inst, str]] = []
        self.fired: dict[Inst, tuple[int, Any]] = {}  # last (epoch, input) seen while fired
        self.resumed: set[Inst] = set()  # subflow instances resumed (parked again)
        self.tokens = 0

    def token(self) -> str:
        self.tokens += 1
        return f"t{self.tokens}"

    def resolutions(self, data: st.DataObject, node: int) -> tuple[Res, ...]:
        """Routing decisions shaped like the adapter's: every out edge of a plain node at the
        same iteration; a controller either continues (back edges, fresh iteration) or breaks
        (exit edges, at the loop's entry iteration)."""
        compiled = self.graph.nodes[node]
        edges = [(e.index, e.kind) for e in compiled.out_edges]
        if compiled.is_controller:
            if data.draw(st.booleans(), label="continue"):
                chosen = [(e, True) for e, kind in edges if kind == BACK]
            else:
                chosen = [(e, data.draw(taken)) for e, kind in edges if kind == EXIT]
        else:
            chosen = [(e, data.draw(taken)) for e, _ in edges]
        return tuple((e, taken, data.draw(values) if taken else b"") for e, taken in chosen)

    def adoptable(self, inst: Inst) -> bool:
        """Whether adopting `inst` steers clear of the known disagreements."""
        epoch, data = self.fired.get(inst, (0, None))
        if inst in self.resumed and "resumed_subflow" in KNOWN:
            return (epoch, data) == (0, None)
        return ((epoch == 0 or "adopted_epoch" not in KNOWN)
                and (data is None or "adopted_input" not in KNOWN))

    def stuck(self, seen: Observed) -> bool:
        """Whether no step can make progress (what runs waits for a parked instance this
        test does not adopt, or for nothing)."""
        return not (self.held or seen.awaiting or any(
            s[:1] in ("F", "G") or (s == "S" and self.adoptable(inst_of(k)))
            for k, s in seen.instances.items()))

    def draw(self, data: st.DataObject, seen: Observed) -> Step:
        """The next step: a valid one from the model's state, or one both must refuse."""
        leasable = sorted(inst_of(k) for k, s in seen.instances.items() if s[0] in "FG")
        held = sorted(self.held)
        # a batch scatters from a whole fired instance; only from one at epoch 0 while
        # test_gathered_batch_keeps_its_epoch is a known disagreement
        fired = [i for i in held if i[2] < 0 and seen.instances[key_of(i)][0] == "F"]
        fresh = [i for i in fired if seen.instances[key_of(i)] == "F0"
                 or "gathered_epoch" not in KNOWN]
        choices = {"commit": held, "fail": held, "renew": held, "release": held,
                   "scatter": fresh,
                   "park": fired}
        # progress first (hypothesis draws and shrinks towards the front), the run's end last
        kinds: list[str] = []
        if held:
            kinds += ["commit"] * 12
        if leasable:
            kinds += ["claim"] * 10
        if seen.awaiting:
            kinds += ["resume"] * 4
        if held:
            kinds += ["fail", "renew", "release"]
        if fresh:
            kinds += ["scatter"] * 2
        if choices["park"]:
            kinds.append("park")
        parked = sorted(i for i in map(inst_of, (k for k, v in seen.instances.items() if v == "S"))
                        if self.adoptable(i))
        if parked:
            kinds += ["adopt"] * 2
        if seen.outbox:
            kinds.append("ack")
        if any(n.is_controller for n in self.graph.nodes):
            kinds.append("loop_count")
        if seen.status != "awaiting" or "reconcile_awaiting" not in KNOWN:
            kinds.append("reconcile")
        kinds += ["bad"] * 3 + ["start"] + ["cancel"] * self.may_cancel
        kind = data.draw(st.sampled_from(kinds), label="kind")
        if kind == "claim":
            inst = data.draw(st.sampled_from(leasable))
            own = inst in self.held and data.draw(st.booleans())
            return Step("claim", inst=inst, token=self.held[inst] if own else self.token())
        if kind in choices:
            inst = data.draw(st.sampled_from(choices[kind]))
            return self._holding(data, kind, inst, self.held[inst])
        if kind == "adopt":
            return Step("adopt", inst=data.draw(st.sampled_from(parked)), token=self.token())
        if kind == "resume":
            inst = data.draw(st.sampled_from(sorted(inst_of(k) for k in seen.awaiting)))
            if data.draw(st.integers(0, 4), label="park") == 0:  # a subflow node's resume
                return Step("resume", inst=inst, park=True)
            return Step("resume", inst=inst, writes=data.draw(writes),
                        resolutions=self.resolutions(data, inst[0]))
        if kind == "ack":
            keys = data.draw(st.lists(st.sampled_from(sorted(seen.outbox)), min_size=1,
                                      max_size=3))
            return Step("ack", jobs=tuple(job_of(k) for k in keys))
        if kind == "loop_count":
            node = next(n.index for n in self.graph.nodes if n.is_controller)
            return Step("loop_count", inst=(node, data.draw(st.integers(0, 4)), -1))
        if kind == "reconcile" and "stalled_ms" not in KNOWN:
            return Step("reconcile", stalled_ms=data.draw(st.sampled_from([0, 600_000])))
        if kind == "start":
            return Step("start", context=data.draw(_contexts))
        if kind == "bad":
            return self._bad(data, seen)
        return Step(kind)

    def _holding(self, data: st.DataObject, kind: str, inst: Inst, token: str) -> Step:
        """A step by the holder of `inst`'s lease."""
        node = inst[0]
        if kind == "commit":
            if inst[2] >= 0:
                return Step("commit", inst=inst, token=token, writes=data.draw(writes),
                            output=data.draw(values))
            if data.draw(st.integers(0, 5), label="await") == 0:
                return Step("commit", inst=inst, token=token, writes=data.draw(writes),
                            await_id=self.graph.nodes[node].id)
            return Step("commit", inst=inst, token=token, writes=data.draw(writes),
                        resolutions=self.resolutions(data, node),
                        defer_ms=data.draw(st.sampled_from([0, 0, 0, 50_000])),
                        fuse=data.draw(st.integers(0, 2), label="fuse"))
        if kind == "fail":
            compiled = self.graph.nodes[node]
            pills = tuple((e.target.index, "cancel" if e.target.join_any else "poison")
                          for e in compiled.out_edges)
            return Step("fail", inst=inst, token=token, writes=data.draw(writes),
                        pills=pills, error=_error(compiled.id))
        if kind == "scatter":
            items = tuple(data.draw(st.lists(values, min_size=1, max_size=3)))
            limit = data.draw(st.integers(0, 2))
            return Step("scatter", inst=inst, token=token, items=items, concurrency=limit)
        return Step(kind, inst=inst, token=token)

    def _bad(self, data: st.DataObject, seen: Observed) -> Step:
        """A step both stores must refuse, and refuse the same way."""
        known = sorted(inst_of(k) for k in seen.instances) or [(0, 0, -1)]
        choice = data.draw(st.sampled_from(
            ["claim_any", "claim_unfired", "stale", "double", "resume", "adopt", "ghost"]),
            label="bad")
        if choice == "claim_any":
            return Step("claim", inst=data.draw(st.sampled_from(known)), token=self.token())
        if choice == "adopt":  # mostly of instances that are not parked
            known = [i for i in known if i[2] < 0 and (seen.instances.get(key_of(i)) != "S"
                                                        or self.adoptable(i))] or [(0, 99, -1)]
            return Step("adopt", inst=data.draw(st.sampled_from(known)), token=self.token())
        if choice == "claim_unfired":
            inst = (data.draw(st.integers(0, len(self.graph.nodes) - 1)),
                    data.draw(st.integers(0, 5)), data.draw(st.sampled_from([-1, 0, 2])))
            return Step("claim", inst=inst, token=self.token())
        if choice == "stale":
            kind = data.draw(st.sampled_from(["commit", "fail", "release", "renew", "scatter",
                                              "park"]))
            inst = data.draw(st.sampled_from(known))
            return self._holding(data, kind, inst, self.token())
        if choice == "double" and self.spent:
            inst, token = data.draw(st.sampled_from(self.spent))
            return self._holding(data, data.draw(st.sampled_from(["commit", "fail"])), inst,
                                 token)
        if choice == "resume":
            inst = data.draw(st.sampled_from(known))
            return Step("resume", inst=inst, resolutions=self.resolutions(data, inst[0]))
        kind = data.draw(st.sampled_from(["claim", "commit", "cancel", "reconcile", "resume"]))
        return Step(kind, run="ghost", token=self.token())

    def update(self, step: Step, answer: Any, seen: Observed) -> None:
        """Follow the leases through an answer both stores gave, and the epochs."""
        for key, state in seen.instances.items():
            if state[:1] in ("F", "G"):
                self.fired[inst_of(key)] = (int(state[1:]), seen.inputs[key])
        if step.kind in ("scatter", "park") and answer.reason == "not_running":
            self.held.pop(step.inst, None)  # the run stopped: the instance was dropped
        if not answer.ok:
            return
        if step.kind == "resume" and step.park:
            self.resumed.add(step.inst)
        if step.kind in ("claim", "adopt"):
            self.held[step.inst] = step.token
        elif step.kind in ("commit", "fail", "release", "scatter", "park"):
            self.held.pop(step.inst, None)
            if step.kind in ("commit", "fail"):
                self.spent.append((step.inst, step.token))
            if answer.extra.get("gathered") is not None:
                self.held[(step.inst[0], step.inst[1], -1)] = step.token
            for k, ((node, iteration, item, _), _) in enumerate(answer.extra.get("claimed", ())):
                self.held[(node, iteration, item)] = fused_token(step.token, k)


_contexts = st.dictionaries(st.sampled_from(KEYS), values, max_size=2).map(
    lambda d: tuple(d.items()))


def _tolerant(seen: Observed) -> Observed:
    """`seen` without what the stores are known to disagree on (each has an xfail test)."""
    if seen.status == "cancelled" and "cancel_awaiting" in KNOWN:
        seen = dataclasses.replace(seen, awaiting={})
    if (seen.status == "cancelled" and isinstance(seen.result, dict)
            and "failure_after_cancel" in KNOWN):
        seen = dataclasses.replace(seen, result={**seen.result, "errors": []})
    if isinstance(seen.result, dict) and "awaiting_order" in KNOWN:
        seen = dataclasses.replace(
            seen, result={**seen.result, "awaiting": sorted(seen.result["awaiting"])})
    return seen


async def _example(data: st.DataObject, redis: Redis, tally: dict[str, int]) -> None:
    graph = data.draw(graphs(), label="graph")
    pair = Pair(graph, redis, _tolerant)
    harness = Harness(graph, data.draw(st.integers(0, 2), label="may cancel") == 0)
    try:
        step = Step("start", context=data.draw(_contexts))
        left = data.draw(st.integers(30, 120), label="steps")
        while True:
            answer, seen = await pair.step(step)
            harness.update(step, answer, seen)
            tally[step.kind] = tally.get(step.kind, 0) + 1
            tally["ok " + step.kind] = tally.get("ok " + step.kind, 0) + answer.ok
            if step.kind == "commit" and answer.ok and graph.nodes[step.inst[0]].is_controller:
                tally["controller commits"] = tally.get("controller commits", 0) + 1
            if step.kind == "claim" and answer.ok:  # how much of the routing was reached
                joined = isinstance(answer.extra["input"], dict) and len(answer.extra["input"]) > 1
                tally["claims of joins"] = tally.get("claims of joins", 0) + joined
                tally["claims in loops"] = tally.get("claims in loops", 0) + (step.inst[1] > 0)
            if seen.status in TERMINAL or harness.stuck(seen):
                left = min(left, 2)  # a few refusals after the end, then the next example
            if left == 0:
                break
            left -= 1
            step = harness.draw(data, seen)
        tally[f"final {seen.status}"] = tally.get(f"final {seen.status}", 0) + 1
        tally["complete"] += 1
    finally:
        await pair.close()


def test_memory_store_and_lua_scripts_agree(redis_url: str) -> None:
    """Random transition sequences on random graphs: both stores answer every step alike and
    end in the same observable state."""
    tally: dict[str, int] = {"examples": 0, "complete": 0}
    with asyncio.Runner() as runner:
        redis = Redis.from_url(redis_url)

        @PARITY
        @given(st.data())
        def agree(data: st.DataObject) -> None:
            tally["examples"] += 1
            runner.run(_example(data, redis, tally))

        try:
            agree()
        finally:
            runner.run(redis.aclose())
    print(f"store parity: {tally}")
    assert tally["complete"] >= min(EXAMPLES, 50)


# -- disagreements the property found, minimised. Each reason says how the two stores differed;
# -- the test is an xfail (and the property steers around it) only while its name is in KNOWN.

def _graph(nodes: tuple[str, ...], edges: tuple[tuple[str, str], ...] = ()) -> Graph:
    blueprint = WorkflowBlueprint("parity", tuple(NodeDefinition(n, "fn") for n in nodes),
                                  tuple(EdgeDefinition(s, t) for s, t in edges))
    return Graph(load_blueprint(blueprint), {"fn": _noop})


def _await(node: int, token: str, node_id: str) -> list[Step]:
    """Claim instance (node, 0) and commit it as awaiting a resume."""
    return [Step("claim", inst=(node, 0, -1), token=token),
            Step("commit", inst=(node, 0, -1), token=token, await_id=node_id)]


@known("reconcile_awaiting", (
    "reconcile_run of an awaiting run: MemoryStore returns no jobs, reconcile.lua returns the "
    "undelivered outbox (jobs of instances already done)"))
async def test_reconcile_of_an_awaiting_run(redis_url: str) -> None:
    await replay(redis_url, _graph(("a",)),
                  [Step("start"), *_await(0, "t1", "a"), Step("reconcile")])


@known("cancel_awaiting", (
    "cancel of an awaiting run: MemoryStore clears the awaiting instances, cancel.lua keeps "
    "the w: fields, so awaiting() still lists them"))
async def test_cancel_of_an_awaiting_run_clears_awaiting(redis_url: str) -> None:
    await replay(redis_url, _graph(("a",)), [Step("start"), *_await(0, "t1", "a"), Step("cancel")])


@known("awaiting_order", (
    "the awaiting result lists node ids in the order they began awaiting in MemoryStore, "
    "sorted in lib.lua"))
async def test_awaiting_result_lists_nodes_in_the_same_order(redis_url: str) -> None:
    await replay(redis_url, _graph(("a", "b")),
                  [Step("start"), *_await(1, "t1", "b"), *_await(0, "t2", "a")])


@known("failure_after_cancel", (
    "a node that fails after its run was cancelled: MemoryStore lists the error in the "
    "cancelled result, lib.lua's finish() only lists errors when the status is failed"))
async def test_failure_after_cancel_in_the_result(redis_url: str) -> None:
    error = _error("a")
    await replay(redis_url, _graph(("a",)), [
        Step("start"), Step("claim", inst=(0, 0, -1), token="t1"), Step("cancel"),
        Step("fail", inst=(0, 0, -1), token="t1", error=error)])


@known("gathered_epoch", (
    "a batch whose items all finished: MemoryStore keeps the instance's epoch, commit.lua "
    "writes G0, so a refired gathered batch reuses an earlier job id (epoch 1 twice)"))
async def test_gathered_batch_keeps_its_epoch(redis_url: str) -> None:
    batch, item = (0, 0, -1), (0, 0, 0)
    await replay(redis_url, _graph(("a",)), [
        Step("start"), Step("reconcile"), Step("claim", inst=batch, token="t1"),
        Step("scatter", inst=batch, token="t1", items=(b"1",)),
        Step("claim", inst=item, token="t2"), Step("commit", inst=item, token="t2"),
        Step("release", inst=batch, token="t2"), Step("reconcile")], answers_only=True)


@known("adopted_epoch", (
    "adopt of a parked subflow instance: MemoryStore keeps the instance's epoch, adopt.lua "
    "writes F0, so a refired adopted instance reuses an earlier job id (epoch 1 twice)"))
async def test_adopted_instance_keeps_its_epoch(redis_url: str) -> None:
    node = (0, 0, -1)
    await replay(redis_url, _graph(("a",)), [
        Step("start"), Step("reconcile"), Step("claim", inst=node, token="t1"),
        Step("park", inst=node, token="t1"), Step("adopt", inst=node, token="t2"),
        Step("release", inst=node, token="t2"), Step("reconcile")], answers_only=True)


@known("stalled_ms", (
    "reconcile_run(stalled_ms): reconcile.lua re-fires only instances fired at least "
    "stalled_ms ago, MemoryStore ignores stalled_ms and re-fires every unleased instance"))
async def test_reconcile_waits_for_stalled_ms(redis_url: str) -> None:
    await replay(redis_url, _graph(("a",)), [Step("start"),
                                              Step("reconcile", stalled_ms=600_000)])


@known("adopted_input", (
    "adopt of a parked subflow instance: MemoryStore keeps the instance's input, adopt.lua "
    "writes null, so a later claim of it (after a refire) gets input null"))
async def test_adopted_instance_keeps_its_input(redis_url: str) -> None:
    first, second = (0, 0, -1), (1, 0, -1)
    await replay(redis_url, _graph(("a", "b"), (("a", "b"),)), [
        Step("start"), Step("claim", inst=first, token="t1"),
        Step("commit", inst=first, token="t1", resolutions=((0, True, b"1"),)),
        Step("claim", inst=second, token="t2"), Step("park", inst=second, token="t2"),
        Step("adopt", inst=second, token="t3"), Step("claim", inst=second, token="t3")],
        answers_only=True)


@known("resumed_subflow", (
    "a subflow node resumed after a refire: MemoryStore keeps its input and epoch, resume.lua "
    "parks it from a plain D record, so after adopt a claim gets input null (and a refire "
    "would reuse a job id)"))
async def test_resumed_subflow_keeps_its_input_and_epoch(redis_url: str) -> None:
    first, second = (0, 0, -1), (1, 0, -1)
    await replay(redis_url, _graph(("a", "b"), (("a", "b"),)), [
        Step("start"), Step("claim", inst=first, token="t1"),
        Step("commit", inst=first, token="t1", resolutions=((0, True, b"1"),)),
        Step("reconcile"), *_await(1, "t2", "b"), Step("resume", inst=second, park=True),
        Step("adopt", inst=second, token="t3"), Step("claim", inst=second, token="t3")],
        answers_only=True)


# -- issue 9 items 4 and 5: both stores answer these the same way (plain tests, not in KNOWN).

async def test_retried_resume_answers_its_unqueued_jobs_then_refuses(redis_url: str) -> None:
    """A resume whose jobs are not acked yet, resumed again, answers those jobs (a retry after
    a lost reply); once they are acked, a further resume is refused not_awaiting."""
    wait = (0, 0, -1)
    resumed = Step("resume", inst=wait, resolutions=((0, True, b"1"),))
    await replay(redis_url, _graph(("a", "b"), (("a", "b"),)), [
        Step("start"), *_await(0, "t1", "a"), resumed, resumed, resumed,
        Step("ack", jobs=((1, 0, -1, 0, False),)), resumed])


async def test_park_and_scatter_after_cancel_drop_the_instance(redis_url: str) -> None:
    """A subflow node parking (or a batch scattering) after its run was cancelled: the
    instance is dropped and the run finishes; a retried park is refused 'done'."""
    node = (0, 0, -1)
    for hand_off in (Step("park", inst=node, token="t1"),
                     Step("scatter", inst=node, token="t1", items=(b"1", b"2"))):
        await replay(redis_url, _graph(("a", "b")), [
            Step("start"), Step("claim", inst=node, token="t1"), Step("cancel"), hand_off,
            hand_off])


async def test_cancel_names_the_parked_and_awaiting_instances(redis_url: str) -> None:
    await replay(redis_url, _graph(("a", "b", "c")), [
        Step("start"), Step("claim", inst=(1, 0, -1), token="t1"),
        Step("park", inst=(1, 0, -1), token="t1"), *_await(0, "t2", "a"), Step("cancel")])


async def test_retried_scatter_and_redelivered_batch_answer_the_outbox(redis_url: str) -> None:
    """A scatter retried by its caller is refused 'done', the batch's job delivered again is
    refused 'scattered'; both carry the items' jobs still in the outbox."""
    batch = (0, 0, -1)
    scatter = Step("scatter", inst=batch, token="t1", items=(b"1", b"2"))
    await replay(redis_url, _graph(("a",)), [
        Step("start"), Step("ack", jobs=((0, 0, -1, 0, False),)),
        Step("claim", inst=batch, token="t1"), scatter, scatter,
        Step("claim", inst=batch, token="t2"), Step("ack", jobs=((0, 0, 0, 0, False),)),
        Step("claim", inst=batch, token="t3")])
