"""sleep: the successors run `duration` later; how the time passes is the host's business
(in memory: a sleep or a durable pause; distributed: a deferred job)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcraft.builtins.kinds import parse_duration
from flowcraft.nodes import NodeContext, NodeResult

if TYPE_CHECKING:
    from flowcraft.runtime.graph import CompiledNode
    from flowcraft.runtime.host import Host


async def run_sleep(node: CompiledNode, ctx: NodeContext, host: Host) -> NodeResult:
    return await host.delay(node, ctx, parse_duration(node.params["duration"]))


__all__ = ["run_sleep"]
