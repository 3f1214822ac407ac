"""batch: run a worker once per item of a context list and gather the outputs in item order.

The host decides where the items run: concurrently in this process (bounded by `concurrency`)
or as jobs of their own (the store releases at most `concurrency` at a time). Either way the
batch starts and finishes here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowcraft.builtins.kinds import HANDOFF
from flowcraft.context import Context
from flowcraft.errors import ContextError
from flowcraft.events import BatchFinish, BatchStart
from flowcraft.nodes import NodeContext, NodeResult

if TYPE_CHECKING:
    from flowcraft.runtime.graph import CompiledNode
    from flowcraft.runtime.host import Host


async def run_batch(node: CompiledNode, ctx: NodeContext, host: Host) -> NodeResult:
    key = node.params["inputKey"]
    items = await ctx.context.get(key)
    if not isinstance(items, list):
        raise ContextError(f"batch {node.id!r}: context key {key!r} holds "
                           f"{type(items).__name__}, expected a list")
    await host.emit(BatchStart(run_id=ctx.run_id, blueprint_id=ctx.blueprint_id,
                               node_id=node.id, iteration=ctx.iteration, size=len(items)))
    outputs = await host.fan_out(node, ctx, items)
    if outputs is None:
        return NodeResult(HANDOFF)
    return await finish_batch(node, ctx, outputs, host)


async def finish_batch(node: CompiledNode, ctx: NodeContext, outputs: list[Any],
                       host: Host) -> NodeResult:
    """All items finished: write `outputKey` and complete with the list of outputs."""
    target = node.params.get("outputKey") or node.id
    if target != node.id:
        await ctx.context.set(target, outputs)
    await host.emit(BatchFinish(run_id=ctx.run_id, blueprint_id=ctx.blueprint_id,
                                node_id=node.id, iteration=ctx.iteration, size=len(outputs)))
    return NodeResult(outputs)


def concurrency_of(node: CompiledNode, size: int) -> int:
    """How many items may run at once (all of them when `concurrency` is not set)."""
    limit = node.params.get("concurrency")
    return int(limit) if limit else max(size, 1)


def item_context(node: CompiledNode, context: Context, index: int, item: Any, *,
                 run_id: str, blueprint_id: str, iteration: int,
                 dependencies: Any) -> NodeContext:
    """The context of item `index`: its item as input, its index in params, `<batch>[i]`."""
    return NodeContext(context=context, input=item, params={**node.params, "index": index},
                       dependencies=dependencies, run_id=run_id,
                       node_id=f"{node.id}[{index}]", blueprint_id=blueprint_id,
                       iteration=iteration)


__all__ = ["concurrency_of", "finish_batch", "item_context", "run_batch"]
