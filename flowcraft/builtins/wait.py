"""wait: the instance pauses until `resume` completes it with an output and an action."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcraft.builtins.kinds import WAIT, Suspended
from flowcraft.nodes import NodeContext, NodeResult

if TYPE_CHECKING:
    from flowcraft.runtime.graph import CompiledNode
    from flowcraft.runtime.host import Host


async def run_wait(node: CompiledNode, ctx: NodeContext, host: Host) -> NodeResult:
    return NodeResult(Suspended(kind=WAIT))


__all__ = ["run_wait"]
