"""The control side of distributed execution: start, resume, cancel and reconcile runs.

It needs blueprints only, never node code: a client that starts runs by name uses it
directly, and the worker side (`worker.py`) builds on it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft.builtins.kinds import SUBFLOW
from flowcraft.builtins.subflow import child_run_id
from flowcraft.context import ensure_encodable, output_key
from flowcraft.distributed.completion import Completer, timestamp
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.jobtrace import CURRENT_JOB, start_carrier
from flowcraft.distributed.protocols import CommitRequest, InstanceRef
from flowcraft.errors import (
    BlueprintError,
    FlowcraftError,
    NodeExecutionError,
    ResumeError,
    RunNotFoundError,
)
from flowcraft.events import Event, WorkflowResume, WorkflowStart
from flowcraft.nodes import NodeResult
from flowcraft.runtime.spec import graph_spec

log = logging.getLogger("flowcraft.distributed")

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class Control(Completer):
    """Starts, resumes, cancels and reconciles runs (and completes instances, see
    `Completer`)."""

    # -- starting and driving runs ----------------------------------------------------------

    async def start_run(self, flow: Flow | WorkflowBlueprint | str,
                        context: Mapping[str, Any] | None = None,
                        run_id: str | None = None,
                        parent: tuple[str, int, int] | None = None, *,
                        version: str | None = None) -> str:
        """Create the run (idempotent on `run_id`) and put its start jobs in the queue.

        A flow named by id runs at `version` (None: the one known here, or found).
        `parent` = (run id, node index, iteration) of the subflow node a child run belongs to.
        """
        if isinstance(flow, str):
            graph = await self.known_graph(flow, version)
        else:
            graph = self._graphs.get(flow.id) or self.register(flow)
        if not graph.start_nodes:
            raise BlueprintError(f"blueprint {graph.id!r} has no start node")
        spec = graph_spec(graph)
        run_id = run_id or uuid.uuid4().hex
        data: dict[str, bytes] = {}
        for key, value in (context or {}).items():
            ensure_encodable(key, value)
            data[key] = _encode(value)
        meta = {"blueprint_id": graph.id, "version": spec.version or "", "status": "running",
                "created": str(int(time.time() * 1000))}
        if parent is not None:
            meta.update(parent_run=parent[0], parent_node=str(parent[1]),
                        parent_it=str(parent[2]))
        events = self.stream([WorkflowStart(run_id=run_id, blueprint_id=graph.id,
                                            context={k: _decode(v) for k, v in data.items()})])
        outcome = await self.store.start_run(run_id, spec, data, meta, events)
        if not outcome.created:
            existing = await self.store.blueprint_of(run_id)
            if existing != graph.id:
                raise FlowcraftError(f"run {run_id!r} already exists for blueprint "
                                     f"{existing!r}, not {graph.id!r}")
        # tracing hook: middleware with `start_run` give the start jobs their trace context
        started = start_carrier(self.middleware, run_id, graph.id)
        token = CURRENT_JOB.set(started) if started is not None else None
        try:
            await self.dispatch(run_id, spec, outcome.jobs)
        finally:
            if token is not None:
                CURRENT_JOB.reset(token)
        return run_id

    async def resume(self, run_id: str, node_id: str | None = None, output: Any = None,
                     action: str | None = None) -> None:
        """Complete an awaiting node with `output`/`action` and continue its branch, as
        `FlowRuntime.resume` does; raises ResumeError when the node is not awaiting."""
        waiting = await self.store.awaiting(run_id)
        if node_id is None:
            if len(waiting) != 1:
                raise ResumeError(f"run {run_id!r}: node_id is required when "
                                  f"{len(waiting)} nodes await: {sorted(waiting.values())}")
            node_id = next(iter(waiting.values()))
        matches = [key for key, waiting_id in waiting.items() if waiting_id == node_id]
        if not matches:
            if await self.store.status(run_id) is None:
                raise RunNotFoundError(f"no run {run_id!r}")
            raise ResumeError(f"run {run_id!r}: node {node_id!r} is not awaiting "
                              f"(awaiting: {sorted(waiting.values())})")
        node_index, iteration = (int(part) for part in matches[0].split("#"))
        blueprint_id = await self.store.blueprint_of(run_id)
        if blueprint_id is None:
            raise RunNotFoundError(f"no run {run_id!r}")
        graph = await self.known_graph(blueprint_id)
        spec = graph_spec(graph)
        node = graph.nodes[node_index]
        ref = InstanceRef(run_id, node_index, iteration)
        resumed = WorkflowResume(run_id=run_id, blueprint_id=graph.id, node_id=node.id)
        if node.kind == SUBFLOW:
            # resuming a subflow node resumes its child run (whose single awaiting node gets
            # the output); the child's end completes the node
            parked = await self.store.resume(ref, spec, CommitRequest(
                node_id=node.id, events=self.stream([resumed]), timestamp=timestamp(),
                park=True))
            if not parked.ok:
                raise ResumeError(f"run {run_id!r}: cannot resume node {node.id!r} "
                                  f"({parked.reason})")
            await self.resume(child_run_id(run_id, node.id, iteration), None, output, action)
            return
        ensure_encodable(output_key(node.id), output)
        events: list[Event] = []
        await self.recorder(events)(resumed)
        request = await self.completion(ref, graph, node, "", NodeResult(output, action),
                                        BufferedContext(self.store, run_id), events)
        outcome = await self.store.resume(ref, spec, request)
        if not outcome.ok:
            raise ResumeError(f"run {run_id!r}: cannot resume node {node.id!r} "
                              f"({outcome.reason})")
        await self.dispatch(run_id, spec, outcome.jobs)
        await self.ended(run_id, outcome)

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: nothing new starts, running nodes are cancelled at their next lease
        renewal. Returns False when the run was not running or awaiting."""
        outcome = await self.store.cancel(run_id, timestamp())
        if outcome.reason == "unknown":
            raise RunNotFoundError(f"no run {run_id!r}")
        if outcome.ok:
            await self.ended(run_id, outcome)
        return outcome.ok

    async def reconcile(self, stalled_after: float = 60.0) -> dict[str, int]:
        """Re-drive runs without progress for `stalled_after` seconds: undelivered jobs,
        instances whose job was lost, subflow nodes whose child already ended."""
        counts = {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
        for run_id in await self.store.stalled_runs(int(stalled_after * 1000)):
            counts["scanned"] += 1
            counts["stalled"] += 1
            try:
                outcome = await self.store.reconcile_run(run_id, timestamp(),
                                                         int(stalled_after * 1000),
                                                         self.max_redrives)
                if outcome.jobs:
                    graph = await self.known_graph(outcome.blueprint_id)
                    await self.dispatch(run_id, graph_spec(graph), outcome.jobs)
                for ref, redrives in outcome.exhausted:
                    await self._give_up(ref, outcome.blueprint_id, redrives)
                adopted = await self._reconcile_parked(run_id, outcome.blueprint_id)
                if outcome.jobs or outcome.finished or outcome.exhausted or adopted:
                    counts["reconciled"] += 1
            except Exception:
                log.exception("reconciling run %s failed", run_id)
                counts["failed"] += 1
        return counts

    async def _give_up(self, ref: InstanceRef, blueprint_id: str, redrives: int) -> None:
        """An instance re-driven `max_redrives` times without completing (its job keeps
        dying) fails the run instead of being re-driven forever (CONTRACT §13.5)."""
        graph = await self.known_graph(blueprint_id)
        node = graph.nodes[ref.node]
        token = uuid.uuid4().hex[:16]
        if not (await self.store.claim(ref, token, self.lease_ms)).ok:
            return
        await self.record_failure(ref, graph_spec(graph), node, token, NodeExecutionError(
            f"node {node.id!r} of run {ref.run_id!r} was re-driven {redrives} times without "
            f"completing (max_redrives={self.max_redrives})", node_id=node.id), 0, [], [])

    async def _reconcile_parked(self, run_id: str, blueprint_id: str) -> bool:
        """Subflow nodes still parked although their child run ended (the worker that
        recorded the child's end died before completing the node): complete them now."""
        parked = await self.store.parked(run_id)
        if not parked or not blueprint_id:
            return False
        graph = await self.known_graph(blueprint_id)
        done = False
        for ref in parked:
            child_id = child_run_id(run_id, graph.nodes[ref.node].id, ref.iteration)
            if await self.store.result(child_id) is not None:
                await self.notify_parent(child_id)
                done = True
        return done


__all__ = ["Control"]
