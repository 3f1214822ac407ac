"""Built-in node kinds: loop controller, batch, sleep, wait, subflow.

They are plain data in a blueprint (`uses` is one of the names in `kinds`). Each is written
once, in a module of its own, against the `Host` interface (`runtime/host.py`) that the
in-memory runtime and the distributed worker both implement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from flowcraft.builtins.batch import run_batch
from flowcraft.builtins.kinds import BATCH, LOOP_CONTROLLER, SLEEP, SUBFLOW, WAIT
from flowcraft.builtins.loop import run_loop
from flowcraft.builtins.sleep import run_sleep
from flowcraft.builtins.subflow import run_subflow
from flowcraft.builtins.wait import run_wait
from flowcraft.errors import BlueprintError
from flowcraft.nodes import NodeContext, NodeResult

if TYPE_CHECKING:
    from flowcraft.runtime.graph import CompiledNode
    from flowcraft.runtime.host import Host

Construct = Callable[["CompiledNode", NodeContext, "Host"], Awaitable[NodeResult]]

CONSTRUCTS: dict[str, Construct] = {
    LOOP_CONTROLLER: run_loop,
    BATCH: run_batch,
    SLEEP: run_sleep,
    WAIT: run_wait,
    SUBFLOW: run_subflow,
}


async def run_builtin(node: CompiledNode, ctx: NodeContext, host: Host) -> NodeResult:
    """Run a built-in node through its construct."""
    construct = CONSTRUCTS.get(node.kind or "")
    if construct is None:
        raise BlueprintError(f"node {node.id!r}: unknown built-in kind {node.kind!r}")
    return await construct(node, ctx, host)


__all__ = ["CONSTRUCTS", "run_builtin"]
