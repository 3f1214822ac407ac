"""Distributed execution, independent of any queue or store technology.

`BaseDistributedAdapter` runs node jobs; `CoordinationStore` and `JobQueue` are what an adapter
for a concrete technology implements (see `flowcraft_arq` for Redis + arq); `MemoryStore` and
`MemoryQueue` are the in-process reference implementations used by tests.
"""

from flowcraft.distributed.adapter import BaseDistributedAdapter
from flowcraft.distributed.completion import DEFAULT_STREAM_EVENTS, Completer
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.control import Control
from flowcraft.distributed.memory import MemoryStore
from flowcraft.distributed.memory_queue import MemoryQueue
from flowcraft.distributed.protocols import (
    ClaimOutcome,
    CommitOutcome,
    CommitRequest,
    CoordinationStore,
    FailRequest,
    InstanceRef,
    JobPayload,
    JobQueue,
    JobRef,
    QueuedJob,
    ReconcileOutcome,
    Refusal,
    Resolution,
    RunReader,
    StartOutcome,
)
from flowcraft.distributed.worker import JobOutcome, JobWorker, VersionMismatch
from flowcraft.runtime.spec import GraphSpec, graph_spec

__all__ = [
    "DEFAULT_STREAM_EVENTS",
    "BaseDistributedAdapter",
    "BufferedContext",
    "ClaimOutcome",
    "CommitOutcome",
    "CommitRequest",
    "Completer",
    "Control",
    "CoordinationStore",
    "FailRequest",
    "InstanceRef",
    "GraphSpec",
    "JobPayload",
    "JobQueue",
    "JobRef",
    "JobOutcome",
    "JobWorker",
    "MemoryQueue",
    "MemoryStore",
    "QueuedJob",
    "ReconcileOutcome",
    "Refusal",
    "Resolution",
    "RunReader",
    "StartOutcome",
    "VersionMismatch",
    "graph_spec",
]
