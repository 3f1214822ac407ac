"""subflow: run another blueprint as one node.

Its inputs copy parent context values into the child's initial context, its outputs copy
child values back; the node's output is the child's final context without `_` keys. A child
that awaits makes the parent await; a child that fails fails the node with SubflowError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from flowcraft.builtins.kinds import HANDOFF, SUBFLOW, Suspended
from flowcraft.errors import SubflowError
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import WorkflowResult

if TYPE_CHECKING:
    from flowcraft.runtime.graph import CompiledNode
    from flowcraft.runtime.host import Host


def child_run_id(run_id: str, node_id: str, iteration: int) -> str:
    """The run id of a subflow node's child run, the same in memory and distributed."""
    return f"{run_id}/{node_id}#{iteration}"


async def run_subflow(node: CompiledNode, ctx: NodeContext, host: Host) -> NodeResult:
    params = node.params
    context = {child_key: await ctx.context.get(parent_key)
               for child_key, parent_key in params.get("inputs", {}).items()}
    child = await host.run_child(node, ctx, params["blueprintId"], context,
                                 child_run_id(ctx.run_id, node.id, ctx.iteration))
    if child is None:
        return NodeResult(HANDOFF)
    return await subflow_outcome(node, ctx, child)


async def subflow_outcome(node: CompiledNode, ctx: NodeContext,
                          child: WorkflowResult) -> NodeResult:
    """The subflow node's result once its child run ended or paused."""
    if child.status == "awaiting":
        return NodeResult(Suspended(kind=SUBFLOW, child=msgspec.to_builtins(child)))
    if child.status != "completed":
        detail = "; ".join(f"{e.node_id}: {e.type}: {e.message}" for e in child.errors)
        raise SubflowError(f"subflow {node.id!r} (blueprint {node.params['blueprintId']!r}) "
                           f"ended {child.status}: {detail or 'no error recorded'}")
    for parent_key, child_key in node.params.get("outputs", {}).items():
        await ctx.context.set(parent_key, child.context.get(child_key))
    return NodeResult({k: v for k, v in child.context.items() if not k.startswith("_")})


__all__ = ["child_run_id", "run_subflow", "subflow_outcome"]
