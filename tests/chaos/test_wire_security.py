"""What is on the wire and in Redis: no pickle anywhere, and key prefixes that isolate apps.

The no-pickle test snapshots every key in the test's Redis namespace (arq's queue, job, retry
and in-progress keys and every key of the runs) repeatedly while runs of every blueprint kind
execute, and decodes every value with msgspec only (msgpack for arq job entries, JSON for
context, results, events, errors and the JSON tails of instance records), allowing besides
that only short printable bookkeeping tokens (status words, ids, integers, `n,it,epoch,defer`
outbox entries). Nothing may look like a pickle.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import msgspec
import pytest
from arq.constants import retry_key_prefix
from chaos_flows import FLOWS, KINDS, NullTrace, make_input, resume_args
from redis.asyncio import Redis

from flowcraft import ResumeError, RunNotFoundError
from flowcraft.distributed import JobPayload

ARQ_GLOBALS = ("arq:job:", "arq:retry:", "arq:in-progress:", "arq:result:")
# instance records: F|G<epoch>|<token>|<lease expiry>|<fired at>|<input JSON>
_RECORD = re.compile(rb"^[FG]\d+\|[0-9a-f~.]*\|\d*\|\d*\|(.*)$", re.S)
_TOKEN = re.compile(rb"^[\w.:,\-#/ \[\]]{0,200}$")


class JobEnvelope(msgspec.Struct, kw_only=True):
    """What arq stores under arq:job:<id> (through our job_serializer)."""

    f: str
    a: list[Any]
    k: dict[str, Any]
    t: int | None = None
    et: int


def looks_like_pickle(raw: bytes) -> bool:
    protocol_2_plus = len(raw) >= 2 and raw[0] == 0x80 and 2 <= raw[1] <= 5 and \
        raw.endswith(b".")
    protocol_0 = raw.endswith(b".") and (b"\nc" in raw or raw.startswith(b"c")) and b"\n" in raw
    return protocol_2_plus or protocol_0


def decode(key: str, raw: bytes) -> str:
    """How a value decodes; raises AssertionError for anything opaque."""
    assert not looks_like_pickle(raw), (key, raw[:60])
    if key.startswith("arq:job:"):
        job = msgspec.msgpack.decode(raw, type=JobEnvelope)
        assert job.f == "flowcraft.node", (key, job.f)
        msgspec.convert(job.a[0], JobPayload)
        return "msgpack"
    if key.endswith(":health-check"):
        assert raw.isascii() and raw.decode().isprintable(), (key, raw[:60])
        return "text"
    try:
        msgspec.json.decode(raw)
        return "json"
    except msgspec.DecodeError:
        pass
    record = _RECORD.match(raw)
    if record:
        msgspec.json.decode(record.group(1))
        return "record+json"
    assert _TOKEN.match(raw), (key, raw[:80])
    return "token"


async def values_of(redis: Redis, key: str) -> list[bytes]:
    kind = (await redis.type(key)).decode()
    if kind == "string":
        value = await redis.get(key)
        return [] if value is None else [value]
    if kind == "hash":
        flat = await redis.hgetall(key)
        return [*flat.keys(), *flat.values()]
    if kind == "list":
        return list(await redis.lrange(key, 0, -1))
    if kind == "set":
        return list(await redis.smembers(key))
    if kind == "zset":
        return [m for m, _ in await redis.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        out: list[bytes] = []
        for _id, fields in await redis.xrange(key):
            out += [*fields.keys(), *fields.values()]
        return out
    assert kind == "none", (key, kind)
    return []


async def snapshot(redis: Redis, patterns: list[str], seen: dict[str, int]) -> None:
    for pattern in patterns:
        async for raw_key in redis.scan_iter(match=pattern, count=500):
            key = raw_key.decode()
            for value in await values_of(redis, key):
                kind = decode(key, value)
                seen[kind] = seen.get(kind, 0) + 1


@pytest.fixture
async def redis(redis_url: str) -> Any:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_no_pickle_in_queue_entries_or_any_redis_value_of_a_run(
        flowcraft_client: Any, arq_worker: Any, redis: Redis, fc_queue: str,
        fc_prefix: str) -> None:
    flows = list(FLOWS.values())
    seen: dict[str, int] = {}
    async with flowcraft_client(flows, result_ttl=600) as client:
        contexts = {}
        for i, kind in enumerate(KINDS * 2):
            context = make_input(kind, random.Random(i))
            contexts[await client.start(FLOWS[kind].id, context)] = (kind, context)
        # this test's keys: its runs, its queue, and arq's keys of its runs' jobs (job ids
        # start with the run id); other tests share the session's server
        patterns = [f"{fc_prefix}:*", f"{fc_queue}*", *(f"arq:*:{r}*" for r in contexts)]
        # the start jobs, still in the queue (no worker yet)
        queued = [m.decode() for m in await redis.zrange(fc_queue, 0, -1)]
        assert len(queued) == len(contexts)
        for job_id in queued:
            assert decode(f"arq:job:{job_id}", await redis.get(f"arq:job:{job_id}")) == "msgpack"
        async with arq_worker(flows, dependencies={"trace": NullTrace()}, result_ttl=600):
            stop = asyncio.Event()

            async def scanner() -> None:
                while not stop.is_set():
                    await snapshot(redis, patterns, seen)
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(scanner())
            try:
                for run_id, (_kind, context) in contexts.items():
                    result = await client.wait(run_id, timeout=60)
                    if result.status == "awaiting":
                        await client.resume(run_id, **resume_args(context))
                for run_id in contexts:
                    assert (await client.wait(run_id, timeout=60)).status == "completed"
            finally:
                stop.set()
                await task
        await snapshot(redis, patterns, seen)
    print("decoded values by kind:", seen)
    assert seen.get("msgpack", 0) >= len(contexts)
    assert seen.get("json", 0) > 100 and seen.get("record+json", 0) > 0


# -- key namespacing -----------------------------------------------------------------------------


async def test_one_prefix_cannot_see_or_touch_another_prefixs_runs(
        flowcraft_client: Any, arq_worker: Any, redis: Redis, fc_queue: str,
        fc_prefix: str) -> None:
    flows = list(FLOWS.values())
    other_prefix, other_queue = f"{fc_prefix}-other", f"{fc_queue}-other"
    async with arq_worker(flows, dependencies={"trace": NullTrace()}), \
            flowcraft_client(flows) as mine, \
            flowcraft_client(flows, prefix=other_prefix, queue_name=other_queue) as theirs:
        done = await mine.start("chaos_diamond", context={"x": 3})
        assert (await mine.wait(done, timeout=60)).status == "completed"
        waiting = await mine.start("chaos_wait", context={"x": 2})
        assert (await mine.wait(waiting, timeout=60)).status == "awaiting"
        for run_id in (done, waiting):
            with pytest.raises(RunNotFoundError):
                await theirs.status(run_id)
            assert await theirs.result(run_id) is None
            with pytest.raises(RunNotFoundError):
                await theirs.wait(run_id, timeout=5)
            with pytest.raises(RunNotFoundError):
                await theirs.cancel(run_id)
            with pytest.raises(RunNotFoundError):
                await theirs.resume(run_id, node_id="approval", output=1, action="approve")
            assert [e async for e in theirs.events(run_id, block_ms=100)] == []
        assert (await theirs.reconcile(stalled_after=0))["scanned"] == 0
        assert (await mine.reconcile(stalled_after=0))["scanned"] == 1  # the awaiting run
        # the other app starting a run with the same id creates its own, separate run
        assert await theirs.start("chaos_diamond", context={"x": 99}, run_id=done) == done
        assert await mine.status(done) == "completed"
        assert (await mine.result(done)).context["x"] == 3  # type: ignore[union-attr]
        await mine.resume(waiting, **resume_args({"x": 2}))
        assert (await mine.wait(waiting, timeout=60)).status == "completed"
        with pytest.raises(ResumeError):
            await mine.resume(waiting, node_id="approval", output=1)
    keys = [k.decode() async for k in redis.scan_iter(match=f"{fc_prefix}*")]
    # both apps wrote keys, each under its own prefix, and nothing else matches
    assert {k.split(":", 1)[0] for k in keys} == {fc_prefix, other_prefix}
    assert not [k for k in keys if k.startswith(f"{fc_prefix}:") and other_prefix in k]


async def test_a_shared_queue_with_another_prefix_puts_foreign_jobs_back(
        flowcraft_client: Any, arq_worker: Any, fc_queue: str, fc_prefix: str) -> None:
    """Two apps that share one queue name on purpose (by default each app's queue is named
    after its prefix): a worker of the other app takes this app's job, finds no such run
    under its prefix and puts the job back (arq Retry) instead of dropping it; this app's
    worker then runs it, with no reconcile."""
    flows = list(FLOWS.values())
    async with flowcraft_client(flows) as mine:
        run_id = await mine.start("chaos_diamond", context={"x": 1})
        retried = f"{retry_key_prefix}{run_id}:A:0:0"
        async with arq_worker(flows, prefix=f"{fc_prefix}-other",
                              dependencies={"trace": NullTrace()}):
            for _ in range(100):  # the foreign worker takes the start job and puts it back
                if await mine.redis.exists(retried):
                    break
                await asyncio.sleep(0.05)
        assert await mine.redis.exists(retried) == 1
        assert await mine.redis.zcard(fc_queue) == 1  # still queued
        assert await mine.status(run_id) == "running"
        async with arq_worker(flows, dependencies={"trace": NullTrace()}):
            result = await mine.wait(run_id, timeout=60)
    assert result.status == "completed"


def test_job_payload_decoding_never_calls_pickle() -> None:
    """The arq job (de)serializers are msgspec msgpack; a pickle is just invalid msgpack."""
    from flowcraft_arq import deserialize, serialize
    raw = serialize({"t": 1, "f": "flowcraft.node", "a": [JobPayload("r", "b", "n")], "k": {},
                     "et": 0})
    assert not looks_like_pickle(raw)
    assert deserialize(raw)["a"][0][:3] == ["r", "b", "n"]
    with pytest.raises(msgspec.DecodeError):
        deserialize(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.")  # pickle of {}
