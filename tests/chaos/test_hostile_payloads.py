"""Hostile input: garbage put directly on the arq queue, and hostile values through the client.

A real `arq chaos_worker.WorkerSettings` subprocess consumes a corpus of broken jobs while
healthy runs of every blueprint kind execute alongside. Every hostile job must be consumed with
a clear outcome in the worker's log (an error naming its type, or a refusal), the worker process
must stay alive and keep processing, and the healthy runs must complete with the same results
as in memory. `CORPUS_COUNTS` (printed) is the per-category tally quoted in
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from chaos_flows import FLOWS, KINDS, NullTrace, make_input, resume_args
from flowcraft_arq import FlowcraftClient, serialize
from flowcraft_arq.testing import RedisServer
from redis.asyncio import Redis
from soak import HERE, WorkerPool, comparable

from flowcraft import ContextError, FlowRuntime, ResumeError, RunNotFoundError

NODE = "flowcraft.node"


# -- fixtures ----------------------------------------------------------------------------------


class Env:
    def __init__(self, server: RedisServer, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.url = server.url
        self.queue = f"hq-{tag}"
        self.prefix = f"hp-{tag}"
        self.tmp = tmp
        self.env = {**os.environ,
                    "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
                    "CHAOS_REDIS_URL": server.url, "CHAOS_QUEUE": self.queue,
                    "CHAOS_PREFIX": self.prefix, "CHAOS_TRACE_KEY": f"ht-{tag}",
                    "CHAOS_JITTER_S": "0", "CHAOS_VERSION_GRACE_S": "1",
                    "CHAOS_JOB_TIMEOUT": "10", "CHAOS_LEASE_MS": "5000"}


@pytest.fixture
def env(redis_server: RedisServer, tmp_path: Path) -> Env:
    return Env(redis_server, tmp_path)


@pytest.fixture
def worker(env: Env) -> Iterator[WorkerPool]:
    pool = WorkerPool(1, env.env, env.tmp)
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
async def redis(env: Env) -> AsyncIterator[Redis]:
    client = Redis.from_url(env.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def client(env: Env) -> AsyncIterator[FlowcraftClient]:
    async with FlowcraftClient.from_url(env.url, flows=list(FLOWS.values()),
                                        queue_name=env.queue, prefix=env.prefix) as c:
        yield c


async def ready(redis: Redis, env: Env, pool: WorkerPool, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await redis.exists(f"{env.queue}:health-check"):
            return
        assert all(p.poll() is None for p in pool.procs), worker_log(env)
        await asyncio.sleep(0.05)
    raise AssertionError("worker did not start:\n" + worker_log(env))


def worker_log(env: Env) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(env.tmp.glob("worker-*.log")))


# -- the corpus ----------------------------------------------------------------------------------


def envelope(args: Any = None, *, f: Any = NODE, k: Any = None, t: Any = 1, et: Any = None,
             drop: tuple[str, ...] = ()) -> bytes:
    """An arq job as our serializer writes it: {"t", "f", "a", "k", "et"} in msgpack."""
    job = {"t": t, "f": f, "a": [] if args is None else args, "k": {} if k is None else k,
           "et": int(time.time() * 1000) if et is None else et}
    for name in drop:
        job.pop(name)
    return msgspec.msgpack.encode(job)


def payload(run_id: str, blueprint: str = "chaos_diamond", node: str = "A", iteration: int = 0,
            version: str | None = None, item: int = -1) -> list[Any]:
    return [[run_id, blueprint, node, iteration, 1, 0, version, item]]


def pickle_bytes(marker: Path) -> list[tuple[str, bytes]]:
    """Hand-assembled pickles (the pickle module is never used) that, if anything unpickled
    them, would call os.makedirs(marker). The marker must never appear."""
    path = str(marker).encode()
    proto0 = b"cos\nmakedirs\n(V" + path + b"\ntR."
    proto2 = (b"\x80\x02cos\nmakedirs\nX" + struct.pack("<I", len(path)) + path + b"\x85R.")
    return [("pickle protocol 0 calling os.makedirs", proto0),
            ("pickle protocol 2 calling os.makedirs", proto2)]


def build_corpus(marker: Path, done_run: str) -> dict[str, list[tuple[str, bytes]]]:
    rng = random.Random(7)
    valid = serialize({"t": 1, "f": NODE, "a": payload("nope")[0:1], "k": {},
                       "et": int(time.time() * 1000)})
    unknown = f"ghost-{uuid.uuid4().hex[:6]}"
    return {
        "garbage_bytes": [
            ("empty value", b""),
            ("one random byte", rng.randbytes(1)),
            ("7 random bytes", rng.randbytes(7)),
            ("64 random bytes", rng.randbytes(64)),
            ("4 KiB random bytes", rng.randbytes(4096)),
            ("1 MiB random bytes", rng.randbytes(1 << 20)),
            ("msgpack reserved byte 0xc1", b"\xc1"),
            ("truncated msgpack job", valid[:-5]),
            ("JSON instead of msgpack", b'{"t": 1, "f": "flowcraft.node", "a": [], "k": {}}'),
            ("NUL bytes", b"\x00" * 32),
            *pickle_bytes(marker),
        ],
        "wrong_schema": [
            ("msgpack int", msgspec.msgpack.encode(42)),
            ("msgpack list", msgspec.msgpack.encode([1, 2, 3])),
            ("empty map", msgspec.msgpack.encode({})),
            ("no args key", envelope(payload(unknown), drop=("a",))),
            ("no enqueue time", envelope(payload(unknown), drop=("et",))),
            ("args not a list", envelope("not-a-list")),
            ("no payload argument", envelope([])),
            ("two payload arguments", envelope([*payload(unknown), *payload(unknown)])),
            ("payload is a map", envelope([{"run_id": unknown}])),
            ("payload of ints", envelope([[1, 2, 3]])),
            ("payload too short", envelope([[unknown, "chaos_diamond"]])),
            ("payload too long", envelope([[unknown, "chaos_diamond", "A", 0, 1, 0, None, -1,
                                            "extra"]])),
            ("payload field of wrong type", envelope([[unknown, "chaos_diamond", "A", "zero"]])),
            ("payload with None run id", envelope([[None, "chaos_diamond", "A"]])),
            ("unexpected keyword argument", envelope(payload(unknown), k={"evil": 1})),
            ("unknown job function", envelope(payload(unknown), f="os.system")),
            ("job function of wrong type", envelope(payload(unknown), f=7)),
            ("job try of wrong type (float)", envelope(payload(unknown), t=1.5)),
            ("negative iteration", envelope(payload(unknown, iteration=-5))),
            ("huge iteration", envelope(payload(done_run, iteration=2**62))),
            ("huge batch item", envelope(payload(done_run, item=2**62))),
        ],
        "unknown_blueprint": [
            ("unknown blueprint id", envelope(payload(unknown, blueprint="no_such_flow"))),
            ("empty blueprint id", envelope(payload(unknown, blueprint=""))),
            ("unknown node of a known blueprint", envelope(payload(unknown, node="Z"))),
            ("huge blueprint id", envelope(payload(unknown, blueprint="b" * 100_000))),
        ],
        "unknown_run": [
            ("unknown run id", envelope(payload(unknown))),
            ("empty run id", envelope(payload(""))),
            ("run id with a hash tag", envelope(payload("{evil}"))),
            ("huge run id", envelope(payload("r" * 100_000))),
            ("run id of a finished run, node already done", envelope(payload(done_run))),
            ("finished run, a node that never fired", envelope(payload(done_run, node="B",
                                                                       iteration=9))),
        ],
        "wrong_version": [
            ("version of an unknown run", envelope(payload(unknown, version="v999"))),
            ("version of a finished run", envelope(payload(done_run, version="v999"))),
            ("version of wrong type", envelope([[unknown, "chaos_diamond", "A", 0, 1, 0, 7]])),
        ],
    }


CORPUS_COUNTS: dict[str, int] = {}


# -- the test ----------------------------------------------------------------------------------


async def drive(client: FlowcraftClient, run_id: str, context: dict[str, Any]) -> Any:
    result = await client.wait(run_id, timeout=60)
    if result.status == "awaiting":
        await client.resume(run_id, **resume_args(context))
        result = await client.wait(run_id, timeout=120)
    return result


async def reference(kind: str, context: dict[str, Any]) -> Any:
    runtime = FlowRuntime(dependencies={"trace": NullTrace()})
    flow = FLOWS[kind]
    result = await runtime.run(flow, context=dict(context))
    if result.status == "awaiting":
        result = await runtime.resume(flow, result, **resume_args(context))
    return result


async def test_hostile_queue_entries_are_rejected_and_healthy_runs_are_unaffected(
        env: Env, worker: WorkerPool, redis: Redis, client: FlowcraftClient) -> None:
    await ready(redis, env, worker)
    pid = worker.procs[0].pid
    rng = random.Random(3)
    # a finished run, for jobs that name a real run
    done_run = await client.start("chaos_diamond", context={"x": 1})
    assert (await client.wait(done_run, timeout=120)).status == "completed"

    healthy = []
    for kind in KINDS:
        for _ in range(2):
            context = make_input(kind, rng)
            healthy.append((kind, context, await client.start(FLOWS[kind].id, context)))

    marker = env.tmp / "unpickled-marker"
    corpus = build_corpus(marker, done_run)
    job_ids: dict[str, tuple[str, str]] = {}
    now = int(time.time() * 1000)
    for category, entries in corpus.items():
        CORPUS_COUNTS[category] = len(entries)
        for n, (label, raw) in enumerate(entries):
            job_id = f"hostile-{category}-{n}"
            job_ids[job_id] = (category, label)
            await redis.set(f"arq:job:{job_id}", raw, px=600_000)
            await redis.zadd(env.queue, {job_id: now})

    try:
        results = await asyncio.gather(*(drive(client, run_id, ctx)
                                         for _, ctx, run_id in healthy))
    except TimeoutError:
        alive = [p.poll() for p in worker.procs]
        raise AssertionError(f"healthy runs did not finish; worker exit codes {alive}\n"
                             + worker_log(env)[-5000:]) from None
    for (kind, context, run_id), result in zip(healthy, results, strict=True):
        assert comparable(result) == comparable(await reference(kind, context)), run_id

    # every hostile job is consumed (the wrong-version ones after their grace period)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = [j for j in job_ids if await redis.zscore(env.queue, j) is not None]
        if not left:
            break
        await asyncio.sleep(0.2)
    assert not left, f"hostile jobs never consumed: {left}"

    # the same worker process is alive and still processing
    assert worker.procs[0].pid == pid and worker.procs[0].poll() is None, worker_log(env)
    after = await client.start("chaos_fan", context={"x": 4})
    result = await client.wait(after, timeout=120)
    assert comparable(result) == comparable(await reference("fan", {"x": 4}))
    assert worker.procs[0].poll() is None
    assert not marker.exists(), "a pickle was unpickled"

    outcomes = classify(worker_log(env), job_ids)
    print("CORPUS_COUNTS", CORPUS_COUNTS)
    for job_id, (category, label) in job_ids.items():
        print(f"{category:18} {label:45} -> {outcomes.get(job_id)}")
    missing = [job_ids[j] for j in job_ids if j not in outcomes]
    assert not missing, f"no log line for {missing}"


WORKER_KILLERS = {
    "job try of wrong type": {"t": "x"},
    "enqueue time of wrong type": {"et": "yesterday"},
}


@pytest.mark.parametrize("label", list(WORKER_KILLERS))
async def test_a_job_envelope_with_wrongly_typed_fields_does_not_kill_the_worker(
        label: str, env: Env, worker: WorkerPool, redis: Redis,
        client: FlowcraftClient) -> None:
    """Was (found by this campaign, fixed in 9e6fd8c): arq reads the envelope's `t` (job try)
    and `et` (enqueue time) outside its error handling, so a queue entry where either had the
    wrong type raised TypeError in Worker.run_job and killed the worker process, and every
    replacement again (the entry never reached max_tries). flowcraft_arq.adapter.deserialize
    now type-checks the envelope, so arq records a deserialization failure instead."""
    await ready(redis, env, worker)
    job_id = "hostile-envelope-0"
    raw = envelope(payload(f"ghost-{uuid.uuid4().hex[:6]}"), **WORKER_KILLERS[label])
    await redis.set(f"arq:job:{job_id}", raw, px=600_000)
    await redis.zadd(env.queue, {job_id: int(time.time() * 1000)})
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and worker.procs[0].poll() is None:
            if await redis.zscore(env.queue, job_id) is None:
                break
            await asyncio.sleep(0.1)
        assert worker.procs[0].poll() is None, \
            "the worker process died:\n" + worker_log(env)[-2000:]
        run_id = await client.start("chaos_diamond", context={"x": 1})
        assert (await client.wait(run_id, timeout=60)).status == "completed"
        assert worker.procs[0].poll() is None
    finally:  # the session's server is shared: leave no poison behind
        await redis.delete(f"arq:job:{job_id}", f"arq:in-progress:{job_id}",
                           f"arq:retry:{job_id}")
        await redis.zrem(env.queue, job_id)


_LINE = re.compile(r"(hostile-[a-z_]+-\d+)")


def classify(log: str, job_ids: dict[str, Any]) -> dict[str, str]:
    """The outcome arq/flowcraft logged for each hostile job id."""
    outcome: dict[str, str] = {}
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = _LINE.search(line)
        if not m or m.group(1) not in job_ids:
            continue
        job_id = m.group(1)
        if "deserializing job" in line:
            outcome[job_id] = "DeserializationError"
        elif " failed, " in line:
            outcome[job_id] = line.split(" failed, ", 1)[1].split(":")[0]
        elif "expired" in line:
            outcome[job_id] = "expired (empty job)"
        elif "not found" in line:
            outcome[job_id] = "function not found"
        elif "retrying job" in line:
            outcome.setdefault(job_id, "retried (version grace)")
        elif " ← " in line or "\u2190" in line:
            previous = outcome.get(job_id)
            outcome[job_id] = ("refused after version grace" if previous else "refused: "
                               "no such run / nothing to do")
        _ = i
    return outcome


# -- hostile values through the client -------------------------------------------------------------


class Opaque:
    pass


def _deep(depth: int) -> list[Any]:
    root: list[Any] = []
    cur = root
    for _ in range(depth):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    return root


def _selfref() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


HOSTILE_VALUES = {
    "object": Opaque(), "function": (lambda: 1), "class": int, "complex": 1j,
    "generator": (i for i in range(2)), "exception": ValueError("secret-value"),
    "self-referential list": _selfref(), "nested 5000 deep": _deep(5000),
    "dict with object value": {"a": Opaque()}, "list with function": [print],
    "non-str dict key inside": {("t",): 1},
}


async def test_hostile_context_values_through_the_client_raise_context_error(
        flowcraft_client: Any, arq_worker: Any) -> None:
    """Each value is refused with ContextError naming the key (never the value), as an
    initial context value and as a resume output; the awaiting run is unaffected and
    completes afterwards."""
    flows = list(FLOWS.values())
    async with arq_worker(flows, dependencies={"trace": NullTrace()}), \
            flowcraft_client(flows) as client:
        run_id = await client.start("chaos_wait", context={"x": 2})
        assert (await client.wait(run_id, timeout=60)).status == "awaiting"
        for name, value in HOSTILE_VALUES.items():
            with pytest.raises(ContextError) as info:
                await client.start("chaos_wait", context={"x": 1, "hostile": value})
            assert "hostile" in str(info.value), name
            assert "secret-value" not in str(info.value), name
            with pytest.raises(ContextError):
                await client.resume(run_id, node_id="approval", output=value)
        CORPUS_COUNTS["hostile_context_values"] = 2 * len(HOSTILE_VALUES)
        with pytest.raises(RunNotFoundError):
            await client.resume("no-such-run", node_id="approval", output=1)
        with pytest.raises(ResumeError):
            await client.resume(run_id, node_id="A", output=1)
        await client.resume(run_id, **resume_args({"x": 2}))
        result = await client.wait(run_id, timeout=60)
    assert comparable(result) == comparable(await reference("wait", {"x": 2}))


# -- bugs found with hostile values ---------------------------------------------------------------
# These three were xfail(strict) regression tests until commit 4877341 ("Context: reject
# non-string keys and strings that are not valid UTF-8 (lone surrogates) at set time") fixed
# flowcraft.context.ensure_encodable; they now guard the fix, distributed.


@pytest.mark.parametrize("key", [None, ("t",), b"k", 1], ids=["None", "tuple", "bytes", "int"])
async def test_non_string_context_keys_raise_context_error(key: Any,
                                                           flowcraft_client: Any) -> None:
    """Was: None/tuple keys raised a bare TypeError from msgspec, bytes keys a redis
    ResponseError from inside the start_run Lua script, int keys were silently turned into
    strings (in memory they stayed ints)."""
    async with flowcraft_client(list(FLOWS.values())) as client:
        with pytest.raises(ContextError):
            await client.start("chaos_diamond", context={"x": 1, key: 5})


async def test_a_lone_surrogate_string_is_a_context_error(flowcraft_client: Any) -> None:
    """Was: the str fast path of ensure_encodable let a lone surrogate through; in memory the
    run completed and WorkflowResult.to_json() raised later, distributed client.start raised
    a bare UnicodeEncodeError."""
    from flowcraft.context import ensure_encodable
    with pytest.raises(ContextError):
        ensure_encodable("k", "\ud800")
    async with flowcraft_client(list(FLOWS.values())) as client:
        with pytest.raises(ContextError):
            await client.start("chaos_diamond", context={"x": 1, "k": "bad \udcff"})


async def surrogate_output(ctx: Any) -> str:
    return "lone \ud800 surrogate"


async def test_a_node_output_that_cannot_be_encoded_fails_the_run(
        flowcraft_client: Any, arq_worker: Any) -> None:
    """Was: the output passed ensure_encodable, then `_encode` raised UnicodeEncodeError in
    BaseDistributedAdapter._run_node outside its except clauses: the instance was released,
    the arq job failed and the run stayed `running` forever (reconcile re-ran the node every
    `stalled_after`)."""
    from flowcraft import Flow
    flow = Flow("surrogate").node("A", surrogate_output).node("B", surrogate_output)
    flow.edge("A", "B")
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        run_id = await client.start("surrogate")
        try:
            result = await client.wait(run_id, timeout=10)
        except TimeoutError:
            pytest.fail(f"run still {await client.status(run_id)!r} after 10 s")
    assert result.status == "failed"
    assert [(e.node_id, e.type) for e in result.errors] == [("A", "ContextError")]


async def test_wrong_version_jobs_do_not_accumulate_in_worker_memory() -> None:
    """Was (found by this campaign, fixed in 9e6fd8c): _version_mismatch kept the first-seen
    time of every mismatching job id and dropped it only after a successful claim, so jobs for
    unknown, finished or leased instances (forged wrong-version jobs) grew a worker's memory
    without bound. Now nothing is kept per job: the grace period is counted in the queue's
    tries of the job."""
    from flowcraft.distributed import BaseDistributedAdapter, JobPayload, MemoryQueue, MemoryStore
    adapter = BaseDistributedAdapter(MemoryStore(), MemoryQueue(), list(FLOWS.values()),
                                     version_grace_s=0.0)
    for n in range(1000):
        outcome = await adapter.handle(JobPayload(f"forged-{n}", "chaos_diamond", "A",
                                                  version="v999"))
        assert outcome == "unknown"
    assert not hasattr(adapter, "_version_seen")
