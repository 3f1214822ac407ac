"""Distributed execution, independent of any queue or store technology.

`BaseDistributedAdapter` runs node jobs; `CoordinationStore` and `JobQueue` are what an adapter
for a concrete technology implements (see `flowcraft_arq` for Redis + arq; the requests and
outcomes they exchange are in `flowcraft.distributed.protocols`); `MemoryStore` and
`MemoryQueue` are the in-process reference implementations used by tests.
"""

from flowcraft.distributed.adapter import BaseDistributedAdapter
from flowcraft.distributed.completion import DEFAULT_STREAM_EVENTS, Completer
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.control import Control
from flowcraft.distributed.memory import MemoryStore
from flowcraft.distributed.memory_queue import MemoryQueue
from flowcraft.distributed.protocols import (
    CommitRequest,
    CoordinationStore,
    InstanceRef,
    JobPayload,
    JobQueue,
    QueuedJob,
    Refusal,
    Resolution,
    RunReader,
)
from flowcraft.distributed.worker import JobOutcome, JobWorker, VersionMismatch
from flowcraft.runtime.spec import GraphSpec, graph_spec

__all__ = [
    "DEFAULT_STREAM_EVENTS",
    "BaseDistributedAdapter",
    "BufferedContext",
    "CommitRequest",
    "Completer",
    "Control",
    "CoordinationStore",
    "InstanceRef",
    "GraphSpec",
    "JobPayload",
    "JobQueue",
    "JobOutcome",
    "JobWorker",
    "MemoryQueue",
    "MemoryStore",
    "QueuedJob",
    "Refusal",
    "Resolution",
    "RunReader",
    "VersionMismatch",
    "graph_spec",
]
