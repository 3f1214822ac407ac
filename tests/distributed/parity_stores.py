"""The store parity test's one seam to the coordination stores (imported as `parity_stores`).

The property test in test_store_parity.py describes transitions as plain `Step` records and
compares plain `Answer` / `Observed` values; only the drivers below know the store protocol's
method names, request structs and (for `instances`) each store's internal layout. When the
protocol changes, this module is the one to update.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from flowcraft_arq.keys import RunKeys, run_pattern
from flowcraft_arq.store import RedisRunStore
from redis.asyncio import Redis

from flowcraft.distributed import GraphSpec, MemoryStore, graph_spec
from flowcraft.distributed.protocols import (
    ClaimOutcome,
    CommitOutcome,
    CommitRequest,
    FailRequest,
    InstanceRef,
    JobRef,
    ReconcileOutcome,
    Refusal,
    Resolution,
    StartOutcome,
    inst_key,
)
from flowcraft.runtime.graph import Graph

TS = "2026-01-01T00:00:00+00:00"
LEASE_MS = 600_000  # ten minutes: no lease expires while an example runs

Inst = tuple[int, int, int]  # node index, iteration, item (-1: not a batch item)
Job = tuple[int, int, int, int, bool]  # node, iteration, item, epoch, deferred
Write = tuple[str, bytes | None]
Res = tuple[int, bool, bytes]  # edge, taken, value JSON


@dataclass(frozen=True)
class Step:
    """One transition: `kind` names it, the other fields are its arguments (unused ones stay
    at their defaults). `run` is the run it targets (another id tests unknown runs)."""

    kind: str
    run: str = "r"
    inst: Inst = (0, 0, -1)
    token: str = ""
    writes: tuple[Write, ...] = ()
    resolutions: tuple[Res, ...] = ()
    await_id: str | None = None
    defer_ms: int = 0
    output: bytes = b"null"
    items: tuple[bytes, ...] = ()
    pills: tuple[tuple[int, str], ...] = ()
    error: bytes = b"null"
    jobs: tuple[Job, ...] = ()
    context: tuple[tuple[str, bytes], ...] = ()
    park: bool = False
    concurrency: int = 0
    stalled_ms: int = 0
    fuse: int = 0


@dataclass(frozen=True)
class Answer:
    """What a store answered, reduced to what both stores must agree on."""

    ok: bool
    reason: str = ""
    jobs: tuple[Job, ...] = ()
    status: str = ""
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """A run's observable state, plus the bookkeeping both stores keep in the same shape."""

    status: str | None
    context: dict[str, Any]
    result: Any
    awaiting: dict[str, str]
    instances: dict[str, str]  # "n#it[/k]" -> state letter, with the epoch while leasable
    inputs: dict[str, Any]  # the input (decoded) of each leasable instance
    outbox: frozenset[str]
    live: int
    joins: frozenset[str] = frozenset()  # "n#it" of joins still waiting for required edges


Book = tuple[dict[str, str], dict[str, bytes], frozenset[str], int, frozenset[str]]


def _json(raw: bytes | None) -> Any:
    return None if raw is None else msgspec.json.decode(raw)


def _result(raw: Any) -> Any:
    """The result (JSON, or a WorkflowResult) as plain data, errors without timestamps."""
    doc = _json(raw) if raw is None or isinstance(raw, bytes) else msgspec.to_builtins(raw)
    if isinstance(doc, dict):
        for error in doc.get("errors", []):
            if isinstance(error, dict):
                error.pop("timestamp", None)
    return doc


def _jobs(refs: Sequence[JobRef]) -> tuple[Job, ...]:
    return tuple(sorted((j.node_index, j.iteration, j.item, j.epoch, j.defer_until_ms > 0)
                        for j in refs))


def _outcome(out: ClaimOutcome | CommitOutcome | StartOutcome | ReconcileOutcome) -> Answer:
    if isinstance(out, ClaimOutcome):
        return Answer(out.ok, _reason(out.reason), _jobs(out.jobs), out.status,
                      extra={"input": _json(out.input) if out.ok else None,
                             "gathered": out.gathered})
    if isinstance(out, StartOutcome):
        return Answer(out.created, "", _jobs(out.jobs), out.status)
    if isinstance(out, ReconcileOutcome):
        return Answer(True, "", _jobs(out.jobs), out.status, out.finished,
                      extra={"refired": out.refired, "blueprint_id": out.blueprint_id})
    claimed = [((j.node_index, j.iteration, j.item, j.epoch), _json(raw))
               for j, raw in out.claimed]
    return Answer(out.ok, _reason(out.reason), _jobs(out.jobs), out.status, out.finished,
                  extra={"gathered": _json(out.gathered),
                         "handed_over": [ref.key for ref in out.handed_over],
                         "claimed": claimed})


def _reason(reason: Refusal | str | None) -> str:
    return "" if reason is None else str(reason)


class StoreDriver:
    """Runs `Step`s against one CoordinationStore; subclasses read its bookkeeping."""

    def __init__(self, store: Any, spec: GraphSpec) -> None:
        self.store = store
        self.spec = spec

    async def do(self, step: Step) -> Answer:
        handler = getattr(self, f"_{step.kind}")
        answer: Answer = await handler(step)
        return answer

    async def _start(self, step: Step) -> Answer:
        meta = {"blueprint_id": self.spec.blueprint_id, "version": "", "status": "running",
                "created": "0"}
        return _outcome(await self.store.start_run(step.run, self.spec, dict(step.context), meta))

    def _ref(self, step: Step, *, whole: bool = False) -> InstanceRef:
        node, iteration, item = step.inst
        return InstanceRef(step.run, node, iteration, -1 if whole else item)

    async def _claim(self, step: Step) -> Answer:
        return _outcome(await self.store.claim(self._ref(step), step.token, LEASE_MS))

    async def _adopt(self, step: Step) -> Answer:
        return _outcome(await self.store.claim(self._ref(step, whole=True), step.token,
                                               LEASE_MS, adopt=True))

    async def _renew(self, step: Step) -> Answer:
        status = await self.store.renew(self._ref(step), step.token, LEASE_MS)
        return Answer(status is not None, status=status or "")

    def _request(self, step: Step) -> CommitRequest:
        return CommitRequest(
            token=step.token, node_id=step.await_id or "", writes=step.writes,
            resolutions=[Resolution(*r) for r in step.resolutions], timestamp=TS,
            await_details=b"{}" if step.await_id is not None else None,
            defer_ms=step.defer_ms, item_output=step.output, lease_ms=LEASE_MS, park=step.park,
            fuse=step.fuse, fuse_token=step.token)

    async def _commit(self, step: Step) -> Answer:
        return _outcome(await self.store.commit(self._ref(step), self.spec, self._request(step)))

    async def _resume(self, step: Step) -> Answer:
        return _outcome(await self.store.resume(self._ref(step, whole=True), self.spec,
                                                self._request(step)))

    async def _fail(self, step: Step) -> Answer:
        request = FailRequest(token=step.token, error=step.error, writes=step.writes,
                              pills=step.pills, timestamp=TS)
        return _outcome(await self.store.fail(self._ref(step), self.spec, request))

    async def _release(self, step: Step) -> Answer:
        return _outcome(await self.store.release(self._ref(step), step.token))

    async def _scatter(self, step: Step) -> Answer:
        return _outcome(await self.store.hand_off(self._ref(step, whole=True), step.token,
                                                  step.items, concurrency=step.concurrency))

    async def _park(self, step: Step) -> Answer:
        return _outcome(await self.store.hand_off(self._ref(step, whole=True), step.token))

    async def _cancel(self, step: Step) -> Answer:
        return _outcome(await self.store.cancel(step.run, TS))

    async def _reconcile(self, step: Step) -> Answer:
        return _outcome(await self.store.reconcile_run(step.run, TS, step.stalled_ms))

    async def _ack(self, step: Step) -> Answer:
        refs = [JobRef(n, it, epoch, 0, item) for n, it, item, epoch, _ in step.jobs]
        await self.store.ack(step.run, refs)
        return Answer(True)

    async def _loop_count(self, step: Step) -> Answer:
        count = await self.store.loop_count(self._ref(step, whole=True))
        return Answer(True, extra={"count": count})

    async def observe(self, run_id: str) -> Observed:
        context = await self.store.get_context(run_id)
        instances, inputs, outbox, live, joins = await self.bookkeeping(run_id)
        return Observed(
            status=await self.store.status(run_id),
            context={k: _json(v) for k, v in context.items()},
            result=_result(await self.store.result(run_id)),
            awaiting=await self.store.awaiting(run_id),
            instances=instances, inputs={k: _json(v) for k, v in inputs.items()},
            outbox=outbox, live=live, joins=joins)

    async def bookkeeping(self, run_id: str) -> Book:
        """Instance states, inputs of leasable instances, outbox keys, live count, joins
        waiting for required edges (a resolved join's fields are gone)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Forget what this driver created."""


class MemoryDriver(StoreDriver):
    """The reference model, `MemoryStore`."""

    def __init__(self, spec: GraphSpec) -> None:
        super().__init__(MemoryStore(), spec)

    async def bookkeeping(self, run_id: str) -> Book:
        run = self.store.runs.get(run_id)
        if run is None:
            return {}, {}, frozenset(), 0, frozenset()
        instances = {key: rec.state + (str(rec.epoch) if rec.state in "FG" else "")
                     for key, rec in run.inst.items()}
        inputs = {key: rec.input for key, rec in run.inst.items() if rec.state in "FG"}
        joins = frozenset(inst_key(n, it) for n, it in run.book.joins)
        return instances, inputs, frozenset(run.outbox), run.live, joins


class RedisDriver(StoreDriver):
    """`RedisRunStore` (the Lua scripts), under a key prefix of its own."""

    def __init__(self, redis: Redis, spec: GraphSpec) -> None:
        self.prefix = f"fcparity-{uuid.uuid4().hex[:10]}"
        super().__init__(RedisRunStore(redis, prefix=self.prefix), spec)
        self.redis = redis

    async def bookkeeping(self, run_id: str) -> Book:
        raw = await self.redis.hgetall(RunKeys(self.prefix, run_id).meta)  # type: ignore[misc]
        instances: dict[str, str] = {}
        inputs: dict[str, bytes] = {}
        outbox: set[str] = set()
        joins: set[str] = set()
        live = 0
        for key, value in raw.items():
            name, text = key.decode(), value.decode()
            if name.startswith("i:") and text[:1] in ("F", "G"):
                fields = text.split("|", 4)  # kind+epoch|token|expiry|fired at|input
                instances[name[2:]] = fields[0]
                inputs[name[2:]] = fields[4].encode()
            elif name.startswith("i:"):
                instances[name[2:]] = text[:1]
            elif name.startswith("o:"):
                outbox.add(name[2:])
            elif name.startswith("j:"):
                joins.add(name[2:])
            elif name == "live":
                live = int(text)
        return instances, inputs, frozenset(outbox), live, frozenset(joins)

    async def close(self) -> None:
        keys = [key async for key in self.redis.scan_iter(match=run_pattern(self.prefix))]
        if keys:
            await self.redis.delete(*keys)


class Pair:
    """The model and the Lua scripts side by side: every step goes to both, both must answer
    alike and (when `states`) show the same state afterwards, seen through `normalise`."""

    def __init__(self, graph: Graph, redis: Redis,
                 normalise: Callable[[Observed], Observed] | None = None, *,
                 states: bool = True) -> None:
        spec = graph_spec(graph)
        self.memory, self.lua = MemoryDriver(spec), RedisDriver(redis, spec)
        self.normalise = normalise or (lambda seen: seen)
        self.states = states
        self.trace = [f"graph: {graph.blueprint.to_json().decode()}"]

    async def step(self, step: Step) -> tuple[Answer, Observed]:
        expected, got = await self.memory.do(step), await self.lua.do(step)
        self.trace.append(f"{step}\n    -> {expected}")
        assert got == expected, "\n".join([*self.trace, f"    Lua: {got}"])
        seen, lua_seen = await self.memory.observe("r"), await self.lua.observe("r")
        same = not self.states or self.normalise(lua_seen) == self.normalise(seen)
        assert same, "\n".join([*self.trace, f"model: {seen}", f"Lua:   {lua_seen}"])
        return expected, seen

    async def close(self) -> None:
        await self.lua.close()


async def replay(redis_url: str, graph: Graph, steps: Sequence[Step], *,
                 answers_only: bool = False) -> None:
    """Both stores answer `steps` alike (and, unless `answers_only`, show the same state)."""
    redis = Redis.from_url(redis_url)
    pair = Pair(graph, redis, states=not answers_only)
    try:
        for step in steps:
            await pair.step(step)
    finally:
        await pair.close()
        await redis.aclose()


def key_of(inst: Inst) -> str:
    """How both stores name an instance: `n#it`, `n#it/k` for item k of a batch."""
    node, iteration, item = inst
    return f"{node}#{iteration}" if item < 0 else f"{node}#{iteration}/{item}"


def inst_of(key: str) -> Inst:
    node, _, rest = key.partition("#")
    iteration, _, item = rest.partition("/")
    return int(node), int(iteration), int(item) if item else -1


def job_of(key: str) -> Job:
    """The job of an outbox key `n#it[/k]#epoch`."""
    inst, _, epoch = key.rpartition("#")
    node, iteration, item = inst_of(inst)
    return node, iteration, item, int(epoch), False


__all__ = ["LEASE_MS", "TS", "Answer", "Inst", "Job", "MemoryDriver",
           "Observed", "Pair", "RedisDriver", "Res", "Step", "StoreDriver", "Write", "inst_of",
           "job_of", "key_of", "replay"]
