"""The cost of one commit of the Redis store, by graph size: does it grow with the graph?

For each size N it builds a chain of N no-op nodes (n0 -> n1 -> ... ), starts runs of it through
`FlowcraftClient.start` (no worker: the benchmark is the worker) and then, node after node, claims
the instance, commits it (its output written, its one edge taken, which fires the next node) and
acknowledges the job the commit decided, straight through `client.store` (the `RedisRunStore`).
Only the commit call is timed, and around it the server's counters are read (one `INFO stats
commandstats` before and one after), so each commit's Redis commands (those inside the script
included), script time on the server (`usec` of EVALSHA/EVAL/FCALL) and request bytes received by
the server (`total_net_input_bytes`, less the INFO request's own bytes) are its own. A run's last
node (the commit that finishes a run) is committed unmeasured, so every measured commit is the
same step at every size. Prints one JSON line per size.

    .venv/bin/python benchmarks/dist_commit_cost.py [--sizes 10 10000] [--commits 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import statistics
import time
from typing import Any

from _common import median, on_private_redis, percentile
from flowcraft_arq import FlowcraftClient

from flowcraft import Flow, NodeContext
from flowcraft.distributed.protocols import CommitRequest, InstanceRef, Resolution
from flowcraft.runtime.spec import graph_spec

WARMUP = 20
LEASE_MS = 30_000
SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall", "cmdstat_evalsha_ro",
                   "cmdstat_eval_ro", "cmdstat_fcall_ro")


async def noop(ctx: NodeContext) -> int:
    return 1


def chain(size: int) -> Flow:
    flow = Flow(f"chain_{size}").node("n0", noop)
    for i in range(1, size):
        flow.node(f"n{i}", noop).edge(f"n{i - 1}", f"n{i}")
    return flow


class Counters:
    """The server's counters at one moment: commands (INFO excluded), script µs, bytes in."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.calls = sum(int(v["calls"]) for k, v in info.items()
                         if k.startswith("cmdstat_") and k != "cmdstat_info")
        self.script_us = sum(int(info[k]["usec"]) for k in SCRIPT_COMMANDS if k in info)
        self.bytes_in = int(info["total_net_input_bytes"])

    @classmethod
    async def read(cls, redis: Any) -> Counters:
        return cls(await redis.info("stats", "commandstats"))


async def info_request_bytes(redis: Any) -> int:
    """Bytes of one INFO request as the server counts them (read back to back)."""
    deltas = []
    for _ in range(5):
        first = await Counters.read(redis)
        second = await Counters.read(redis)
        deltas.append(second.bytes_in - first.bytes_in)
    return int(median(deltas))


async def cost(client: FlowcraftClient, size: int, commits: int) -> dict[str, Any]:
    flow = chain(size)
    graph = client.adapter.register(flow)
    spec = graph_spec(graph)
    store, redis = client.store, client.redis
    edge_of = [node.out_edges[0].index if node.out_edges else -1 for node in graph.nodes]
    info_bytes = await info_request_bytes(redis)
    commit_s: list[float] = []
    claim_s: list[float] = []
    calls: list[int] = []
    script_us: list[int] = []
    bytes_in: list[int] = []
    run_id, node = "", size
    while len(commit_s) < WARMUP + commits:
        if node == size:
            run_id, node = await client.start(flow), 0
        ref = InstanceRef(run_id, node)
        token = secrets.token_hex(8)
        began = time.perf_counter()
        claim = await store.claim(ref, token, LEASE_MS)
        claimed = time.perf_counter() - began
        assert claim.ok, claim
        node_id = graph.nodes[node].id
        request = CommitRequest(
            token=token, node_id=node_id,
            writes=[(f"_outputs.{node_id}", b"1"), (node_id, b"1")],
            resolutions=[Resolution(edge_of[node], True, b"1")] if edge_of[node] >= 0 else [],
            timestamp="2026-01-01T00:00:00+00:00")
        measured = node < size - 1
        if measured:
            before = await Counters.read(redis)
        began = time.perf_counter()
        outcome = await store.commit(ref, spec, request)
        elapsed = time.perf_counter() - began
        assert outcome.ok, outcome
        if measured:
            after = await Counters.read(redis)
            commit_s.append(elapsed)
            claim_s.append(claimed)
            calls.append(after.calls - before.calls)
            script_us.append(after.script_us - before.script_us)
            bytes_in.append(after.bytes_in - before.bytes_in - info_bytes)
        await store.ack(run_id, outcome.jobs)
        node += 1
    ms = [s * 1000 for s in commit_s[WARMUP:]]
    return {
        "bench": "dist_commit_cost",
        "graph_nodes": size,
        "commit_ms_p50": round(percentile(ms, 0.5), 3),
        "commit_ms_p99": round(percentile(ms, 0.99), 3),
        "commit_ms_mean": round(statistics.fmean(ms), 3),
        "server_script_us_per_commit": round(statistics.fmean(script_us[WARMUP:]), 1),
        "redis_cmds_per_commit": round(statistics.fmean(calls[WARMUP:]), 1),
        "request_bytes_per_commit": round(statistics.fmean(bytes_in[WARMUP:])),
        "graph_json_bytes": len(spec.json),
        "claim_ms_p50": round(percentile([s * 1000 for s in claim_s[WARMUP:]], 0.5), 3),
        "commits": commits,
        "warmup": WARMUP,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 10_000])
    parser.add_argument("--commits", type=int, default=300)
    args = parser.parse_args()

    async def all_sizes(url: str) -> None:
        async with FlowcraftClient.from_url(url, queue_name="commit-cost") as client:
            for size in args.sizes:
                print(json.dumps(await cost(client, size, args.commits)), flush=True)

    on_private_redis(all_sizes)


if __name__ == "__main__":
    main()
