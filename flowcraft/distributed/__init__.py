"""Distributed execution, independent of any queue or store technology.

`BaseDistributedAdapter` runs node jobs; `CoordinationStore` and `JobQueue` are what an adapter
for a concrete technology implements (see `flowcraft_arq` for Redis + arq); `MemoryStore` and
`MemoryQueue` are the in-process reference implementations used by tests.
"""

from flowcraft.distributed.adapter import (
    CRASH_AFTER_COMMIT_ENV,
    DEFAULT_STREAM_EVENTS,
    BaseDistributedAdapter,
    VersionMismatch,
)
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.memory import MemoryQueue, MemoryStore, build_result
from flowcraft.distributed.protocols import (
    ClaimOutcome,
    CommitOutcome,
    CommitRequest,
    CoordinationStore,
    FailRequest,
    JobPayload,
    JobQueue,
    JobRef,
    QueuedJob,
    ReconcileOutcome,
    Resolution,
    StartOutcome,
)
from flowcraft.runtime.spec import GraphSpec, graph_spec

__all__ = [
    "CRASH_AFTER_COMMIT_ENV",
    "DEFAULT_STREAM_EVENTS",
    "BaseDistributedAdapter",
    "BufferedContext",
    "ClaimOutcome",
    "CommitOutcome",
    "CommitRequest",
    "CoordinationStore",
    "FailRequest",
    "GraphSpec",
    "JobPayload",
    "JobQueue",
    "JobRef",
    "MemoryQueue",
    "MemoryStore",
    "QueuedJob",
    "ReconcileOutcome",
    "Resolution",
    "StartOutcome",
    "VersionMismatch",
    "build_result",
    "graph_spec",
]
