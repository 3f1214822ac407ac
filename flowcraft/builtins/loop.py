"""The loop controller: after the body's end node, continue (next iteration) or break.

A do-while, as TS Flowcraft runs it: the controller's own output is None; what flows back into
the loop's start is decided by the edges (the builder's `context["<end>"]` transforms).
Iteration ids are the bookkeeping's (`runtime/book.py`); the count the limit checks is the
number of `continue`s since the loop was entered, plus this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcraft.errors import LoopLimitError
from flowcraft.expressions import compile_expression
from flowcraft.nodes import NodeContext, NodeResult

if TYPE_CHECKING:
    from flowcraft.runtime.graph import CompiledNode
    from flowcraft.runtime.host import Host

CONTINUE = "continue"
BREAK = "break"
DEFAULT_MAX_ITERATIONS = 1000


async def run_loop(node: CompiledNode, ctx: NodeContext, host: Host) -> NodeResult:
    source = node.params["condition"]
    expression = compile_expression(source)
    scope = await host.scope(expression.names)
    evaluator = host.evaluator
    holds = (evaluator.evaluate(source, scope) if evaluator is not None
             else expression.evaluate(scope))
    if not holds:
        return NodeResult(None, BREAK)
    done = await host.loop_count(node, ctx.iteration) + 1
    limit = int(node.params.get("maxIterations", DEFAULT_MAX_ITERATIONS))
    if done >= limit:
        raise LoopLimitError(
            f"loop {node.id!r} of run {ctx.run_id!r} exceeded max_iterations={limit}: "
            f"{done} iterations ran and the condition still held")
    return NodeResult(None, CONTINUE)


__all__ = ["BREAK", "CONTINUE", "run_loop"]
