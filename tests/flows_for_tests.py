"""Flows imported by the tests, also from fresh subprocesses (see test_builder.py).

Importable as ``tests.flows_for_tests`` when the repository root is on ``sys.path``.
"""

from __future__ import annotations

import json
from typing import Any

from flowcraft import Flow, Node, NodeContext


async def fetch(ctx: NodeContext) -> Any:
    return {"total": 3}


def sync_total(ctx: NodeContext) -> Any:
    return ctx.input


class Charge(Node):
    async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
        return prepared


def make_closure(factor: int) -> Any:
    async def scaled(ctx: NodeContext) -> Any:
        return factor

    return scaled


def build_flow() -> Flow:
    return (
        Flow("sub-order")
        .node("fetch", fetch)
        .node("sync_total", sync_total)
        .node("charge", Charge)
        .node("lam", lambda ctx: 1)
        .node("closure", make_closure(2))
        .node("explicit", fetch, uses="my.explicit.key")
        .edge("fetch", "sync_total")
        .edge("sync_total", "charge")
        .edge("charge", "lam")
        .edge("lam", "closure")
        .edge("closure", "explicit")
    )


def build_noise() -> list[Flow]:
    """Build other flows first, to disturb any process-order dependent naming."""
    return [
        Flow(f"noise-{i}").node("n", lambda ctx, _i=i: _i).node("m", make_closure(i)).edge("n", "m")
        for i in range(5)
    ]


def uses_keys(flow: Flow) -> dict[str, str]:
    return {node.id: node.uses for node in flow.to_blueprint().nodes}


def main(noise: bool) -> None:
    if noise:
        build_noise()
    print(json.dumps(uses_keys(build_flow()), sort_keys=True))
