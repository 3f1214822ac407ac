"""Local continuation ("fusion"): the successors a commit claimed run on in the queue job
that fired them, under a budget, instead of a queue round trip per node.

The store claims them in the commit itself (leases and fencing tokens exactly as a queue
claim, the tokens derived from the job's delivery token: `protocols.fused_token`), so a crash
leaves them fired and leased; a later delivery of the job, or `reconcile`, re-drives them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from flowcraft.distributed.protocols import JobPayload, JobRef, QueuedJob, Refusal, fused_token
from flowcraft.runtime.spec import GraphSpec

if TYPE_CHECKING:
    from flowcraft.distributed.worker import JobOutcome, JobWorker

log = logging.getLogger("flowcraft.distributed")


class Fusion:
    """The local-continuation budget of one queue job: the successors its commits claim run
    here, next to the job's own node, until `nodes` of them ran or `seconds` passed (so one run
    cannot hog a worker); then the commits leave every successor to the queue. At most
    `width` are claimed per commit (a wide fan-out still spreads over the workers)."""

    def __init__(self, worker: JobWorker, nodes: int, seconds: float, width: int) -> None:
        self.worker = worker
        self.left = nodes
        self.deadline = time.monotonic() + seconds
        self.width = width
        self.unfinished: dict[str, JobPayload] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def run_job(self, payload: JobPayload) -> JobOutcome | Refusal:
        """Run the job's own node, then wait for the successors it ran on."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                outcome = await self.worker._traced(payload, self, None)
        except BaseExceptionGroup as group:  # the job's own error (fused ones are logged)
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return outcome

    def wanted(self) -> int:
        """How many successors the next commit may claim."""
        if self.left <= 0 or time.monotonic() >= self.deadline:
            return 0
        return min(self.left, self.width)

    def start(self, parent: JobPayload, spec: GraphSpec, token: str,
              claimed: list[tuple[JobRef, bytes]]) -> None:
        """Start the claimed successors of a commit made with `token`."""
        assert self._tg is not None
        self.left -= len(claimed)
        for k, (ref, raw_input) in enumerate(claimed):
            payload = self.worker.payload_for(parent.run_id, spec, ref)
            self.unfinished[payload.job_id] = payload
            self._tg.start_soon(self._run, payload, fused_token(token, k), raw_input)

    async def _run(self, payload: JobPayload, token: str, raw_input: bytes) -> None:
        try:
            await self.worker._traced(payload, self, (token, raw_input))
        except Exception:  # one fused node's bug must not cancel its siblings
            log.exception("run %s: fused job %s failed", payload.run_id, payload.job_id)
        self.unfinished.pop(payload.job_id, None)

    async def requeue_unfinished(self) -> None:
        """The job ran out of time: the successors still running gave their instances up
        (released); queue each as a job of its own rather than fail it for the time its
        predecessors took."""
        with anyio.CancelScope(shield=True):
            if self.unfinished:
                await self.worker.queue.enqueue([QueuedJob(p) for p in self.unfinished.values()])
            self.unfinished.clear()


__all__ = ["Fusion"]
