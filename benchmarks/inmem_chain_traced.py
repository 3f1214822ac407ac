"""Tracing overhead on the 1,000-node in-memory chain: one JSON line.

Three set-ups in the same process, measured alternately (one run of each per round, so drift
hits them alike): no tracing; TracingMiddleware on the OpenTelemetry API's no-op providers (the
extra installed, no SDK configured); TracingMiddleware on SDK providers (spans to a
BatchSpanProcessor with an exporter that drops them, metrics to an in-memory reader).
Needs the dev extra (the SDK).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Sequence
from typing import Any

from _common import median
from inmem_chain import N, build
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from flowcraft import FlowRuntime
from flowcraft.otel import TracingMiddleware


class DropExporter(SpanExporter):
    """Accepts and forgets spans: the SDK's full cost without I/O."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def runtimes() -> tuple[dict[str, FlowRuntime], TracerProvider, DropExporter]:
    exporter = DropExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    noop = TracingMiddleware()  # global providers: the API's no-op ones here
    sdk = TracingMiddleware(tracer_provider=provider, meter_provider=meters)
    return {
        "plain": FlowRuntime(),
        "noop": FlowRuntime(middleware=[noop], event_bus=noop),
        "sdk": FlowRuntime(middleware=[sdk], event_bus=sdk),
    }, provider, exporter


async def main(rounds: int, warmup: int) -> dict[str, Any]:
    flow = build()
    modes, provider, exporter = runtimes()
    times: dict[str, list[float]] = {name: [] for name in modes}
    for round_no in range(warmup + rounds):
        for name, runtime in modes.items():
            start = time.perf_counter()
            result = await runtime.run(flow)
            elapsed = time.perf_counter() - start
            assert result.status == "completed", result.errors
            if round_no >= warmup:
                times[name].append(elapsed)
    provider.force_flush()
    provider.shutdown()
    rate = {name: N / median(values) for name, values in times.items()}
    spans_per_run = exporter.count / (warmup + rounds)
    return {
        "bench": "inmem_chain_traced", "nodes": N, "rounds": rounds,
        "plain_nodes_per_s": round(rate["plain"]), "noop_nodes_per_s": round(rate["noop"]),
        "sdk_nodes_per_s": round(rate["sdk"]),
        "noop_time_ratio": round(rate["plain"] / rate["noop"], 2),
        "sdk_time_ratio": round(rate["plain"] / rate["sdk"], 2),
        "noop_overhead_us_per_node": round((1 / rate["noop"] - 1 / rate["plain"]) * 1e6, 1),
        "sdk_overhead_us_per_node": round((1 / rate["sdk"] - 1 / rate["plain"]) * 1e6, 1),
        "sdk_spans_per_run": spans_per_run, "python": platform.python_version(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rounds, args.warmup))))
