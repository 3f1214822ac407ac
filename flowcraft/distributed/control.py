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
from flowcraft.runtime.graph import CompiledNode
from flowcraft.runtime.spec import GraphSpec, graph_spec

log = logging.getLogger("flowcraft.distributed")

RECONCILE_PAGE = 1000
"""Runs a reconcile pass asks the store for at a time."""

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
        # tracing hook: middleware with `start_run` give the start jobs their trace context
        started = start_carrier(self.middleware, run_id, graph.id)
        token = CURRENT_JOB.set(started) if started is not None else None
        try:
            outcome = await self.store.start_run(run_id, spec, data, meta, events)
            if not outcome.created:
                existing = await self.store.blueprint_of(run_id)
                if existing != graph.id:
                    raise FlowcraftError(f"run {run_id!r} already exists for blueprint "
                                         f"{existing!r}, not {graph.id!r}")
            await self.dispatch(run_id, spec, outcome.jobs, outcome.queued)
        finally:
            if token is not None:
                CURRENT_JOB.reset(token)
        return run_id

    async def resume(self, run_id: str, node_id: str | None = None, output: Any = None,
                     action: str | None = None) -> None:
        """Complete an awaiting node with `output`/`action` and continue its branch, as
        `FlowRuntime.resume` does; raises ResumeError when the node is not awaiting.

        A retry of a call whose caller died after the store recorded it but before its jobs
        were queued succeeds and queues them (the store answers with the jobs still in the
        outbox); once they are queued, resuming the node again raises ResumeError."""
        key, node_id, handed = await self._target(run_id, node_id)
        node_index, iteration = (int(part) for part in key.split("#"))
        blueprint_id = await self.store.blueprint_of(run_id)
        if blueprint_id is None:
            raise RunNotFoundError(f"no run {run_id!r}")
        graph = await self.known_graph(blueprint_id)
        spec = graph_spec(graph)
        node = graph.nodes[node_index]
        ref = InstanceRef(run_id, node_index, iteration)
        resumed = WorkflowResume(run_id=run_id, blueprint_id=graph.id, node_id=node.id)
        if node.kind == SUBFLOW:
            await self._resume_child(ref, spec, node, resumed, handed, output, action)
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
        self.after_commit(node)
        await self.dispatch(run_id, spec, outcome.jobs)
        await self.ended(run_id, outcome)

    async def _target(self, run_id: str, node_id: str | None) -> tuple[str, str, bool]:
        """The instance key and node id `resume(run_id, node_id)` resumes, and whether it is a
        subflow node already handed over to its awaiting child (an interrupted resume)."""
        waiting = await self.store.awaiting(run_id)
        handed: dict[str, str] = {}
        if len(waiting) != 1 if node_id is None else node_id not in waiting.values():
            # maybe a retry: of a resume that fired jobs it did not queue, or of a subflow
            # node's resume that parked the node and did not resume the child
            handed = await self._handed_over(run_id)
            waiting = {**await self._unqueued_resumes(run_id), **waiting, **handed}
        if node_id is None:
            if len(waiting) != 1:
                if not waiting and await self.store.status(run_id) is None:
                    raise RunNotFoundError(f"no run {run_id!r}")
                raise ResumeError(f"run {run_id!r}: node_id is required when "
                                  f"{len(waiting)} nodes await: {sorted(waiting.values())}")
            node_id = next(iter(waiting.values()))
        matches = sorted(key for key, waiting_id in waiting.items() if waiting_id == node_id)
        if not matches:
            if await self.store.status(run_id) is None:
                raise RunNotFoundError(f"no run {run_id!r}")
            raise ResumeError(f"run {run_id!r}: node {node_id!r} is not awaiting "
                              f"(awaiting: {sorted(waiting.values())})")
        return matches[0], node_id, matches[0] in handed

    async def _handed_over(self, run_id: str) -> dict[str, str]:
        """Parked subflow instances whose child run awaits ("n#it" -> node id): a resume
        parked the node and stopped before resuming the child."""
        parked = await self.store.parked(run_id)
        blueprint_id = await self.store.blueprint_of(run_id) if parked else None
        if not blueprint_id:
            return {}
        graph = await self.known_graph(blueprint_id)
        out = {}
        for ref in parked:
            node = graph.nodes[ref.node]
            if await self.store.status(child_run_id(run_id, node.id, ref.iteration)) \
                    == "awaiting":
                out[f"{ref.node}#{ref.iteration}"] = node.id
        return out

    async def _unqueued_resumes(self, run_id: str) -> dict[str, str]:
        """Resumed instances whose fired jobs are not all queued ("n#it" -> node id)."""
        refs = await self.store.unqueued_resumes(run_id)
        blueprint_id = await self.store.blueprint_of(run_id) if refs else None
        if not blueprint_id:
            return {}
        graph = await self.known_graph(blueprint_id)
        return {ref.key: graph.nodes[ref.node].id for ref in refs}

    async def _resume_child(self, ref: InstanceRef, spec: GraphSpec, node: CompiledNode,
                            resumed: WorkflowResume, handed: bool, output: Any,
                            action: str | None) -> None:
        """Resuming a subflow node resumes its child run (whose single awaiting node gets
        the output); the child's end completes the node. What the child would refuse is
        refused before the parent changes; should the child refuse anyway, the parent
        awaits again as before."""
        child_id = child_run_id(ref.run_id, node.id, ref.iteration)
        await self._target(child_id, None)  # raises ResumeError as the child's resume would
        if not handed:
            parked = await self.store.resume(ref, spec, CommitRequest(
                node_id=node.id, events=self.stream([resumed]), timestamp=timestamp(),
                park=True))
            if not parked.ok:
                raise ResumeError(f"run {ref.run_id!r}: cannot resume node {node.id!r} "
                                  f"({parked.reason})")
            self.after_commit(node)
        try:
            await self.resume(child_id, None, output, action)
        except ResumeError:
            await self.notify_parent(child_id)  # the child still awaits: so does the parent
            raise

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: nothing new starts, running nodes are cancelled at their next lease
        renewal, and the child runs of its subflow nodes are cancelled too. A cancelled child
        run fails its parent's subflow node (SubflowError, as in memory). Returns False when
        the run was not running or awaiting."""
        outcome = await self.store.cancel(run_id, timestamp())
        if outcome.reason == "unknown":
            raise RunNotFoundError(f"no run {run_id!r}")
        if not outcome.ok:
            return False
        await self.ended(run_id, outcome)
        if not outcome.finished:
            await self.notify_parent(run_id)  # its nodes still stop, but its status is final
        for child_id in await self._children(run_id, outcome.handed_over):
            await self.cancel_child(child_id)
        return True

    async def cancel_child(self, child_id: str) -> None:
        """Cancel a child run whose parent stopped (it may have ended meanwhile)."""
        try:
            await self.cancel(child_id)
        except RunNotFoundError:
            log.info("child run %s of a cancelled run is gone", child_id)

    async def _children(self, run_id: str, refs: list[InstanceRef]) -> list[str]:
        """The child runs of the subflow nodes among `refs`."""
        blueprint_id = await self.store.blueprint_of(run_id) if refs else None
        if not blueprint_id:
            return []
        graph = await self.known_graph(blueprint_id)
        return [child_run_id(run_id, graph.nodes[ref.node].id, ref.iteration) for ref in refs
                if graph.nodes[ref.node].kind == SUBFLOW]

    async def reconcile(self, stalled_after: float = 60.0) -> dict[str, int]:
        """Re-drive runs without progress for `stalled_after` seconds: undelivered jobs,
        instances whose job was lost, subflow nodes whose child already ended.

        The store lists only runs that may need it (a sleeping or awaiting run is out of
        reach), a page at a time; each run looked at is re-scored, so it leaves the list."""
        counts = {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
        stalled_ms = int(stalled_after * 1000)
        seen: set[str] = set()
        while True:
            page = await self.store.stalled_runs(stalled_ms, RECONCILE_PAGE)
            fresh = [(run_id, score) for run_id, score in page if run_id not in seen]
            for run_id, score in fresh:
                seen.add(run_id)
                await self._reconcile_one(run_id, score, stalled_ms, counts)
            if len(page) < RECONCILE_PAGE or not fresh:
                return counts

    async def _reconcile_one(self, run_id: str, score: float, stalled_ms: int,
                             counts: dict[str, int]) -> None:
        counts["scanned"] += 1
        counts["stalled"] += 1
        try:
            outcome = await self.store.reconcile_run(run_id, timestamp(), stalled_ms,
                                                     self.max_redrives, seen=score)
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
