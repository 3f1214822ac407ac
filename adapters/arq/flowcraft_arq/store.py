"""RedisRunStore: the CoordinationStore of `flowcraft.distributed` on Redis, backed by Lua.

Every state transition of a run is one Lua script call (atomic): `start_run`, `claim`, `renew`,
`commit`, `fail`, `release`, `cancel`, `reconcile`. The scripts implement exactly the semantics
of `flowcraft.distributed.memory.MemoryStore` (the reference model). They are composed from
`lua/*.lua` once per process (`scripts.py`) and called with EVALSHA; a NOSCRIPT answer (a
restarted or flushed server) loads them and retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from flowcraft.distributed.jobtrace import outgoing_carrier
from flowcraft.distributed.protocols import (
    ORPHAN_AFTER_MS,
    TERMINAL,
    ClaimOutcome,
    CommitOutcome,
    CommitRequest,
    FailRequest,
    InstanceRef,
    JobRef,
    ReconcileOutcome,
    Refusal,
    StartOutcome,
)
from flowcraft.events import Event, decode_event, event_of_fact
from flowcraft.result import WorkflowError, WorkflowResult, result_of, utc_now
from flowcraft.runtime.spec import GraphSpec
from flowcraft_arq.coalesce import Coalescer
from flowcraft_arq.keys import (
    DEFAULT_PREFIX,
    MetaField,
    RunKeys,
    active_key,
    check_prefix,
    graph_key,
    runs_index_key,
)
from flowcraft_arq.scripts import scripts

log = logging.getLogger("flowcraft.arq.store")

_pack = msgspec.msgpack.encode
_Commit = tuple[tuple[str, ...], str, dict[str, Any]]
"""One commit script call: its keys, the run id, its arguments."""

RUNS_INDEX_RECHECK_S = 2.0
"""How long a store trusts its last look at whether a dashboard keeps the runs index."""


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("utf-8")


def _ref(raw: bytes | str) -> JobRef:
    parts = [int(p) for p in _text(raw).split(",")]
    return JobRef(*parts)


def _refs(raw: Sequence[Any]) -> list[JobRef]:
    return [_ref(r) for r in raw]


def _handed_over(raw: Sequence[Any]) -> tuple[list[JobRef], list[JobRef],
                                               list[tuple[JobRef, bytes]]]:
    """A script's fired jobs (lua/routing.lua `handed_over`): to dispatch, already queued, and
    claimed for the caller with their inputs."""
    jobs: list[JobRef] = []
    queued: list[JobRef] = []
    claimed: list[tuple[JobRef, bytes]] = []
    i = 0
    while i < len(raw):
        entry = raw[i]
        tag = entry[:1]
        if tag == b"c":
            claimed.append((_ref(entry[1:]), bytes(raw[i + 1])))
            i += 2
            continue
        if tag == b"q":
            queued.append(_ref(entry[1:]))
        else:
            jobs.append(_ref(entry))
        i += 1
    return jobs, queued, claimed


def _flat_writes(writes: Sequence[tuple[str, bytes | None]]) -> list[str | bool]:
    flat: list[str | bool] = []
    for key, value in writes:
        flat.append(key)
        flat.append(False if value is None else _text(value))
    return flat


def _at(ref: InstanceRef) -> dict[str, int]:
    """An instance as the scripts name it: node index, iteration, item (-1: none)."""
    return {"n": ref.node, "it": ref.iteration, "item": ref.item}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _progress_ms() -> float:
    """The score of a run that just made progress (sub-ms, so a pass's conditional rescore
    never mistakes it for the score it read)."""
    return time.time() * 1000


class ScriptQueue(msgspec.Struct, frozen=True):
    """The arq queue the scripts enqueue node jobs in themselves: its sorted set, arq's job
    key prefix and the job function's name."""

    queue_name: str
    function: str
    job_key_prefix: str = "arq:job:"


class RedisRunStore:
    """CoordinationStore on one Redis (or one Cluster slot per run).

    `result_ttl` (seconds) is how long a finished run's keys live; `events_maxlen` caps each
    run's event stream (approximately, `MAXLEN ~`).
    """

    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX,
                 result_ttl: float = 86_400.0, events_maxlen: int = 10_000,
                 queue: ScriptQueue | None = None) -> None:
        self.redis = redis
        self.prefix = check_prefix(prefix)
        self.queue = queue
        self._published: set[str] = set()
        self._queue_docs: dict[GraphSpec, dict[str, Any]] = {}  # built once per spec
        self._commits: Coalescer[_Commit] = Coalescer(self._commit_one, self._commit_many)
        self._index_listed, self._index_checked_at = False, -RUNS_INDEX_RECHECK_S
        self.result_ttl_ms = int(result_ttl * 1000)
        self.events_maxlen = events_maxlen
        self.active = active_key(prefix)
        self.runs_index = runs_index_key(prefix)
        self._keys: dict[str, RunKeys] = {}
        self._scripts = scripts()

    def keys(self, run_id: str) -> RunKeys:
        keys = self._keys.get(run_id)
        if keys is None:
            if len(self._keys) > 4096:
                self._keys.clear()
            keys = self._keys[run_id] = RunKeys(self.prefix, run_id)
        return keys

    async def _call(self, name: str, run_id: str, doc: Mapping[str, Any],
                    graph: GraphSpec | None = None, *, register: bool = False) -> Any:
        """Run script `name` on run `run_id` (with `graph`'s hash as its 6th key).
        `register`: in the same round trip, first put the run in the active set as having
        progressed now (write-ahead: a client that dies right after the script leaves the run
        where reconcile finds it)."""
        keys = self.keys(run_id)
        script_keys = keys.script_keys
        if graph is not None:
            script_keys = (*script_keys, graph_key(self.prefix, graph.digest))
        return await self._eval(name, script_keys, [
            run_id, keys.channel, self.result_ttl_ms, self.events_maxlen, _pack(doc)],
            register=run_id if register else None)

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any], *,
                    register: str | None = None) -> Any:
        script = self._scripts[name]
        evalsha: Any = self.redis.evalsha
        try:
            if register is None:
                return await evalsha(script.sha, len(keys), *keys, *args)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self.active, {register: _progress_ms()})
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                return (await pipe.execute())[1]
        except NoScriptError:
            log.info("loading Lua script %s (%s)", name, script.sha)
            await self.redis.script_load(script.source)
            return await evalsha(script.sha, len(keys), *keys, *args)

    async def _routing(self, name: str, ref: InstanceRef, spec: GraphSpec,
                       doc: dict[str, Any], *, register: bool = False) -> Any:
        """Call a script that routes along the edges of `ref`'s node: it gets the graph
        records it needs (`GraphSpec.seeds`) and reads any others from the graph's hash,
        published here once per process, and again if it was lost."""
        doc["gs"], lazy = spec.seeds(ref.node)
        if lazy:
            doc["lazy"] = True
        if spec.digest not in self._published:
            await self.publish_graph(spec)
        if name == "commit":  # concurrent commits share a round trip
            keys = self.keys(ref.run_id)
            out = await self._commits.call(
                ((*keys.script_keys, graph_key(self.prefix, spec.digest)), ref.run_id, doc))
        else:
            out = await self._call(name, ref.run_id, doc, spec, register=register)
        if out[1] == b"nograph":
            await self.publish_graph(spec)
            out = await self._call(name, ref.run_id, doc, spec, register=register)
        return out

    async def _commit_one(self, call: _Commit) -> Any:
        keys, run_id, doc = call
        return await self._eval("commit", keys, [run_id, self.keys(run_id).channel,
                                                 self.result_ttl_ms, self.events_maxlen,
                                                 _pack(doc)])

    async def _commit_many(self, calls: list[_Commit]) -> list[Any]:
        """Several commits in one call of lua/commit_many.lua (replies in order)."""
        keys = [key for call in calls for key in call[0]]
        batch = [[run_id, self.keys(run_id).channel, doc] for _, run_id, doc in calls]
        replies: list[Any] = await self._eval("commit_many", keys, [
            "", "", self.result_ttl_ms, self.events_maxlen, _pack(batch)])
        return replies

    async def publish_graph(self, spec: GraphSpec) -> None:
        """Store the records of `spec`'s shape (idempotent: a shape's records never change)."""
        await self.redis.hset(graph_key(self.prefix, spec.digest),  # type: ignore[misc]
                              mapping=spec.records())
        self._published.add(spec.digest)

    def _queue_doc(self, spec: GraphSpec) -> dict[str, Any] | None:
        """What a script needs to enqueue jobs itself, or None when they go through the
        outbox (no queue bound, or the jobs carry a trace context, which is per job)."""
        if self.queue is None or outgoing_carrier():
            return None
        doc = self._queue_docs.get(spec)
        if doc is None:
            doc = self._queue_docs[spec] = {
                "k": self.queue.queue_name, "p": self.queue.job_key_prefix,
                "f": self.queue.function, "v": spec.version or False, "bp": spec.blueprint_id}
        return doc

    # -- reads ------------------------------------------------------------------------------

    async def status(self, run_id: str) -> str | None:
        raw = await self.redis.hget(self.keys(run_id).meta, "status")  # type: ignore[misc]
        return None if raw is None else _text(raw)

    async def result(self, run_id: str) -> WorkflowResult | None:
        """The run's result once it is terminal (and nothing runs any more) or awaiting,
        built from the stored facts; None while it runs."""
        return (await self.outcome(run_id))[1]

    async def announced(self, run_id: str, message: bytes) -> WorkflowResult | None:
        """The result a run's channel `message` announced ("<status>|<blueprint id>" of a
        run that ended, which no longer changes), or None (a pause: read `outcome`)."""
        status, _, blueprint_id = _text(message).partition("|")
        if status not in TERMINAL:
            return None
        keys = self.keys(run_id)
        errors: list[bytes] = []
        if status == "completed":  # a completed run has no errors list
            ctx = await self.redis.hgetall(keys.ctx)  # type: ignore[misc]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(keys.ctx)
                pipe.lrange(keys.errors, 0, -1)
                ctx, errors = await pipe.execute()
        return result_of(run_id, status, blueprint_id, {_text(k): v for k, v in ctx.items()},
                         errors, [])

    async def outcome(self, run_id: str) -> tuple[str | None, WorkflowResult | None]:
        """The run's status (None: no such run) and its result (as `result`). Reads the
        context and errors only once the run ended, so asking a running run is cheap."""
        keys = self.keys(run_id)
        status, blueprint_id, live = await self.redis.hmget(  # type: ignore[misc]
            keys.meta, ["status", "blueprint_id", "live"])
        if status is None:
            return None, None
        state = _text(status)
        if state != "awaiting" and (state not in TERMINAL or int(live or 0) > 0):
            return state, None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.ctx)
            pipe.lrange(keys.errors, 0, -1)
            ctx, errors = await pipe.execute()
        awaiting: list[str] = []
        if state == "awaiting":
            awaiting = sorted((await self.awaiting(run_id)).values())
        return state, result_of(run_id, state, _text(blueprint_id or b""),
                                {_text(k): v for k, v in ctx.items()}, errors, awaiting)

    async def decode_entry(self, run_id: str, fields: Mapping[bytes, bytes]) -> list[Event]:
        """The events of one stream entry, in order: encoded events ('e<n>') as they are,
        facts ('f<n>') recorded by the scripts built into events."""
        names = sorted(fields, key=lambda name: int(name[1:]))
        if not any(name[:1] == b"f" for name in names):
            return [decode_event(fields[name]) for name in names]
        keys = self.keys(run_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.meta, "blueprint_id")
            pipe.lrange(keys.errors, 0, -1)
            blueprint_id, raw_errors = await pipe.execute()
        errors = [msgspec.json.decode(e, type=WorkflowError) for e in raw_errors]
        return [decode_event(fields[name]) if name[:1] == b"e" else
                event_of_fact(fields[name], run_id, _text(blueprint_id or b""),
                              lambda: list(errors))
                for name in names]

    async def meta(self, run_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys(run_id).meta)  # type: ignore[misc]
        return {_text(k): _text(v) for k, v in raw.items()}

    async def get_values(self, run_id: str, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = await self.redis.hmget(  # type: ignore[misc]
            self.keys(run_id).ctx, list(keys))
        return values

    async def get_context(self, run_id: str) -> dict[str, bytes]:
        raw = await self.redis.hgetall(self.keys(run_id).ctx)  # type: ignore[misc]
        return {_text(k): v for k, v in raw.items()}

    async def loop_count(self, ref: InstanceRef) -> int:
        return int(await self._call("loop_count", ref.run_id, _at(ref)))

    async def stalled_runs(self, idle_ms: int, limit: int = 1000) -> list[tuple[str, float]]:
        """Up to `limit` runs of the active set scored at least `idle_ms` ago, oldest first,
        with their scores; runs that await (scored +inf) or sleep are out of reach."""
        raw = await self.redis.zrangebyscore(self.active, "-inf", _now_ms() - idle_ms,
                                             start=0, num=limit, withscores=True)
        return [(_text(run_id), float(score)) for run_id, score in raw]

    # -- transitions ------------------------------------------------------------------------

    async def start_run(self, run_id: str, spec: GraphSpec, context: Mapping[str, bytes],
                        meta: Mapping[str, str], events: Sequence[bytes] = ()) -> StartOutcome:
        meta_flat: list[str] = []
        for key, value in meta.items():
            meta_flat += [key, value]
        ctx_flat: list[str] = []
        for key, raw in context.items():
            ctx_flat += [key, _text(raw)]
        now = _now_ms()
        doc: dict[str, Any] = {
            "meta": meta_flat, "ctx": ctx_flat, "start": list(spec.start),
            "ev": [_text(e) for e in events], "now": now, "bp": spec.blueprint_id,
            "gs": spec.start_seeds()}
        if (queue := self._queue_doc(spec)) is not None:
            doc["q"] = queue
        out = await self._call("start_run", run_id, doc, spec, register=True)
        created, status = bool(out[0]), _text(out[1])
        if status in TERMINAL:  # registered, but nothing is left to reconcile
            await self.redis.zrem(self.active, run_id)
        if created and await self._runs_listed():  # a dashboard keeps a list of runs
            await self.redis.zadd(self.runs_index, {run_id: now})
        jobs, queued, _ = _handed_over(out[2:])
        return StartOutcome(created, jobs, status, queued)

    def runs_listed(self) -> None:
        """The runs index exists now (a dashboard of this process created it)."""
        self._index_listed, self._index_checked_at = True, time.monotonic()

    async def _runs_listed(self) -> bool:
        """Whether the runs index exists (asked at most every RUNS_INDEX_RECHECK_S)."""
        now = time.monotonic()
        if now >= self._index_checked_at + RUNS_INDEX_RECHECK_S:
            self._index_listed = bool(await self.redis.exists(self.runs_index))
            self._index_checked_at = now
        return self._index_listed

    async def claim(self, ref: InstanceRef, token: str, lease_ms: int, *,
                    adopt: bool = False) -> ClaimOutcome:
        out = await self._call("adopt" if adopt else "claim", ref.run_id, {
            **_at(ref), "tok": token, "lease": lease_ms, "now": _now_ms()})
        if out[0]:
            return ClaimOutcome(True, input=out[3], status=_text(out[2]), gathered=bool(out[4]))
        return ClaimOutcome(False, Refusal(_text(out[1])), status=_text(out[2]),
                            jobs=_refs(out[3:]))

    async def renew(self, ref: InstanceRef, token: str, lease_ms: int) -> str | None:
        out = await self._call("renew", ref.run_id, {**_at(ref), "tok": token,
                                                     "lease": lease_ms, "now": _now_ms()})
        return None if out is None else _text(out)

    async def _finished(self, run_id: str, out: Sequence[Any]) -> CommitOutcome:
        flags = int(out[3])
        ok, status, finished = bool(out[0]), _text(out[2]), bool(flags & 1)
        child = True if flags & 2 else False if flags & 4 else None
        reason = Refusal(_text(out[1])) if out[1] else None
        if finished:
            await self.redis.zrem(self.active, run_id)
        rest = out[4:]
        if rest and rest[0][:1] == b"G":
            return CommitOutcome(ok, reason, [], status, finished, gathered=bytes(rest[0][1:]))
        jobs, queued, claimed = _handed_over(rest)
        return CommitOutcome(ok, reason, jobs, status, finished, claimed=claimed,
                             queued=queued, child=child)

    async def commit(self, ref: InstanceRef, spec: GraphSpec,
                     request: CommitRequest) -> CommitOutcome:
        doc: dict[str, Any] = {
            **_at(ref), "tok": request.token,
            "w": _flat_writes(request.writes),
            "r": [[r.edge, r.taken, _text(r.value)] for r in request.resolutions],
            "ev": [_text(e) for e in request.events], "ts": request.timestamp,
            "bp": spec.blueprint_id, "now": _now_ms(), "df": request.defer_ms,
            "aw": request.node_id if request.await_details is not None else False,
            "out": _text(request.item_output), "lease": request.lease_ms,
            "sk": request.skip_events,
        }
        if request.fuse > 0:
            doc["fz"], doc["ftok"] = request.fuse, request.fuse_token
        if (queue := self._queue_doc(spec)) is not None:
            doc["q"] = queue
        return await self._finished(ref.run_id, await self._routing("commit", ref, spec, doc))

    async def fail(self, ref: InstanceRef, spec: GraphSpec,
                   request: FailRequest) -> CommitOutcome:
        pills: list[int | str] = []
        for target, kind in request.pills:
            pills += [target, kind]
        doc = {
            **_at(ref), "tok": request.token, "err": _text(request.error),
            "w": _flat_writes(request.writes), "pills": pills,
            "ev": [_text(e) for e in request.events], "ts": request.timestamp,
            "bp": spec.blueprint_id, "now": _now_ms(),
        }
        return await self._finished(ref.run_id, await self._call("fail", ref.run_id, doc))

    async def release(self, ref: InstanceRef, token: str) -> CommitOutcome:
        out = await self._call("release", ref.run_id, {**_at(ref), "tok": token,
                                                       "ts": utc_now().isoformat()})
        return await self._finished(ref.run_id, out)

    async def hand_off(self, ref: InstanceRef, token: str, items: Sequence[bytes] | None = None,
                       events: Sequence[bytes] = (), concurrency: int = 0) -> CommitOutcome:
        if items is None:
            out = await self._call("park", ref.run_id, {**_at(ref), "tok": token,
                                                        "ts": utc_now().isoformat()})
        else:
            out = await self._call("scatter", ref.run_id, {
                **_at(ref), "tok": token, "items": [_text(i) for i in items],
                "ev": [_text(e) for e in events], "now": _now_ms(), "conc": concurrency,
                "ts": utc_now().isoformat()})
        return await self._finished(ref.run_id, out)

    async def awaiting(self, run_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys(run_id).meta)  # type: ignore[misc]
        tag = MetaField.AWAITING.encode()
        return {_text(k)[len(tag):]: _text(v) for k, v in raw.items() if k.startswith(tag)}

    async def blueprint_of(self, run_id: str) -> str | None:
        keys = self.keys(run_id)
        raw = await self.redis.hget(keys.meta, "blueprint_id")  # type: ignore[misc]
        if not raw:
            raw = await self.redis.get(keys.blueprint)
        return None if not raw else _text(raw)

    async def resume(self, ref: InstanceRef, spec: GraphSpec,
                     request: CommitRequest) -> CommitOutcome:
        doc: dict[str, Any] = {
            **_at(ref), "w": _flat_writes(request.writes),
            "r": [[r.edge, r.taken, _text(r.value)] for r in request.resolutions],
            "ev": [_text(e) for e in request.events], "ts": request.timestamp,
            "bp": spec.blueprint_id, "now": _now_ms(), "park": request.park,
            "sk": request.skip_events,
        }
        return await self._finished(ref.run_id, await self._routing("resume", ref, spec, doc,
                                                                    register=True))

    async def parked(self, run_id: str) -> list[InstanceRef]:
        raw = await self.redis.hgetall(self.keys(run_id).meta)  # type: ignore[misc]
        tag, parked = MetaField.INSTANCE.encode(), MetaField.PARKED.encode()
        out = []
        for key, value in raw.items():
            if value == parked and key.startswith(tag):
                node, _, iteration = _text(key)[len(tag):].partition("#")
                out.append(InstanceRef(run_id, int(node), int(iteration)))
        return out

    async def unqueued_resumes(self, run_id: str) -> list[InstanceRef]:
        raw = await self.meta(run_id)
        tag = MetaField.RESUMED
        out = []
        for key, fields in raw.items():
            if key.startswith(tag) and any(f in raw for f in fields.split(" ")):
                node, _, iteration = key[len(tag):].partition("#")
                out.append(InstanceRef(run_id, int(node), int(iteration)))
        return out

    async def parent_of(self, run_id: str) -> InstanceRef | None:
        raw = await self.redis.hmget(self.keys(run_id).meta,  # type: ignore[misc]
                                     ["parent_run", "parent_node", "parent_it"])
        if raw[0] is None:
            return None
        return InstanceRef(_text(raw[0]), int(raw[1]), int(raw[2]))

    async def ack(self, run_id: str, jobs: Sequence[JobRef],
                  events: Sequence[bytes] = ()) -> None:
        if jobs:
            await self.redis.hdel(self.keys(run_id).meta,  # type: ignore[misc]
                                  *[MetaField.outbox(j.key) for j in jobs])
        await self.log(run_id, events)

    async def log(self, run_id: str, events: Sequence[bytes]) -> None:
        """Append events to the run's stream (outside any transition: job events)."""
        if events:
            fields = {f"e{i}": event for i, event in enumerate(events, 1)}
            await self.redis.xadd(self.keys(run_id).events,
                                  fields,  # type: ignore[arg-type]
                                  maxlen=self.events_maxlen, approximate=True)

    async def cancel(self, run_id: str, timestamp: str) -> CommitOutcome:
        out = await self._call("cancel", run_id, {"ts": timestamp, "now": _now_ms()})
        outcome = await self._finished(run_id, out[:4])
        handed = sorted(tuple(int(p) for p in _text(key).split("#")) for key in out[4:])
        return msgspec.structs.replace(
            outcome, handed_over=[InstanceRef(run_id, n, it) for n, it in handed])

    async def reconcile_run(self, run_id: str, timestamp: str, stalled_ms: int = 0,
                            max_redrives: int = 0, seen: float | None = None) -> ReconcileOutcome:
        now = _now_ms()
        out = await self._call("reconcile", run_id, {"stalled": stalled_ms, "ts": timestamp,
                                                     "now": now, "cap": max_redrives})
        status, blueprint_id = _text(out[0]), _text(out[1])
        finished, score = bool(out[3]), _text(out[4])
        if status == "unknown":
            if seen is not None and seen <= now - ORPHAN_AFTER_MS:
                await self._eval("rescore", [self.active], [run_id, seen, ""])
        elif not score:  # finished for good
            await self.redis.zrem(self.active, run_id)
        elif seen is not None:
            await self._eval("rescore", [self.active], [run_id, seen, score])
        jobs, exhausted = [], []
        for entry in out[5:]:
            if entry[:1] == b"X":  # "X<node>#<iteration>[/<item>]#<epoch>"
                instance, _, epoch = _text(entry)[1:].rpartition("#")
                node, _, rest = instance.partition("#")
                iteration, _, item = rest.partition("/")
                exhausted.append((InstanceRef(run_id, int(node), int(iteration),
                                              int(item) if item else -1), int(epoch)))
            else:
                jobs.append(_ref(entry))
        return ReconcileOutcome(jobs, int(out[2]), status, blueprint_id, finished, exhausted)


__all__ = ["RedisRunStore", "ScriptQueue"]
