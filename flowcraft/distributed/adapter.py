"""BaseDistributedAdapter: the control side and the worker side in one object.

Technology adapters (such as `flowcraft_arq`) subclass or wrap it: it starts, resumes,
cancels and reconciles runs (`control.py`) and runs node jobs (`worker.py`) against a
`CoordinationStore` and a `JobQueue`.
"""

from __future__ import annotations

from flowcraft.distributed.completion import DEFAULT_STREAM_EVENTS, Flows
from flowcraft.distributed.worker import JobWorker, VersionMismatch


class BaseDistributedAdapter(JobWorker):
    """Runs node jobs and controls runs; see `Control` and `JobWorker` for the parts."""


__all__ = ["DEFAULT_STREAM_EVENTS", "BaseDistributedAdapter", "Flows", "VersionMismatch"]
