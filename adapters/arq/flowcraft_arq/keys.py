"""Every Redis key name flowcraft_arq uses, in one place.

All keys of one run carry the hash tag `{<run_id>}`, so a run lives in one Redis Cluster slot and
its Lua scripts touch a single slot. The only keys without a run's hash tag are the documented
globals: the `runs:active` index (run id -> when the reconciler should look at it next), the
reconciler's lock and arq's own queue keys. The blueprint-id fallback key
`<prefix>:blueprint:{<run_id>}` is kept apart from the run's metadata on purpose (reconcile
reads it when the metadata lost the blueprint id).
"""

from __future__ import annotations

from flowcraft.errors import FlowcraftError

DEFAULT_PREFIX = "flowcraft"


class RunKeys:
    """The keys of one run; `script_keys` is the KEYS array every Lua script receives."""

    __slots__ = ("blueprint", "channel", "ctx", "errors", "events", "meta", "run_id",
                 "script_keys")

    def __init__(self, prefix: str, run_id: str) -> None:
        if "{" in run_id or "}" in run_id:
            raise ValueError(f"run id {run_id!r} must not contain braces (it is a hash tag)")
        base = f"{prefix}:{{{run_id}}}"
        self.run_id = run_id
        # hash: blueprint_id, version, status, live, ... plus the run's bookkeeping (instances
        # with their leases, outbox, joins, loops, pills, awaiting nodes; see lua/lib.lua)
        self.meta = f"{base}:meta"
        self.ctx = f"{base}:ctx"            # hash: context key -> msgspec JSON value
        self.errors = f"{base}:errors"      # list: WorkflowError JSON
        self.events = f"{base}:events"      # stream: encoded events ('e') and facts ('f')
        self.blueprint = f"{prefix}:blueprint:{{{run_id}}}"  # string: blueprint id fallback
        self.channel = f"{base}:done-ch"    # pub/sub channel announcing results
        self.script_keys: tuple[str, ...] = (
            self.meta, self.ctx, self.errors, self.events, self.blueprint)

    def all(self) -> tuple[str, ...]:
        return self.script_keys


def check_prefix(prefix: str) -> str:
    """A key prefix, refused when it would break the runs' hash tags."""
    if not prefix or "{" in prefix or "}" in prefix:
        raise FlowcraftError(f"key prefix {prefix!r} must be non-empty and must not contain "
                             "'{' or '}' (they delimit each run's Redis Cluster hash tag)")
    return prefix


def queue_of(prefix: str, queue_name: str | None) -> str:
    """The arq queue of an app: `queue_name`, by default its key prefix, so two apps with
    different prefixes on one Redis never take each other's jobs."""
    return queue_name or prefix


def active_key(prefix: str) -> str:
    """Global sorted set: live or awaiting run id -> when a reconcile pass should next look at
    it (ms; a pass reads the runs scored at least `stalled_after` ago).

    `start_run` and `resume` write now before their script runs (write-ahead); a pass re-scores
    each run it looked at (`lua/rescore.lua`, only if nobody wrote a newer score meanwhile): to
    the earliest time one of its instances may be stalled (a deferred job's defer time while
    the run sleeps), or `+inf` while the run awaits, so runs waiting for days cost a pass
    nothing. Finished runs are removed.
    """
    return f"{prefix}:runs:active"


def runs_index_key(prefix: str) -> str:
    """Global sorted set: every run id -> ms it was created (the dashboard's run list).

    Opt-in: a dashboard creates it (with the member "" at score 0, never a run id), and from
    then on `RedisRunStore.start_run` adds every new run (outside the run's script: a global
    key is in no run's Cluster slot); without a dashboard it does not exist. Members of runs
    whose keys expired are pruned lazily by the dashboard when it meets them.
    """
    return f"{prefix}:runs:all"


def reconcile_lock_key(prefix: str) -> str:
    """Global string: the automatic reconciler's lock (`SET NX PX`, a worker's random token).

    Whoever sets it runs the reconcile pass of the current interval; it is not released but
    expires after the interval, so one pass per interval runs in the whole deployment.
    """
    return f"{prefix}:reconcile:lock"


def catalog_key(prefix: str) -> str:
    """Global hash: `[blueprint id, version]` (JSON) -> the blueprint the workers serve
    (published by every worker at start-up, read by clients that start flows by name; no
    expiry)."""
    return f"{prefix}:blueprints"


class MetaField:
    """The grammar of the meta hash's bookkeeping fields, named once (the Lua scripts, which
    spell them too, document each in `lua/lib.lua`): `<tag><node>#<iteration>[/<item>]`."""

    INSTANCE = "i:"   # instance state: F/G (fired, with lease), D, X, C, B, S, H
    OUTBOX = "o:"     # a job decided but not yet confirmed queued
    AWAITING = "w:"   # node id of an awaiting instance
    RESUMED = "r:"    # outbox fields of the jobs a resume fired (until they are queued)
    BATCH_LEFT = "b:"  # items of a batch still running
    BATCH_SIZE = "bn:"  # items of a batch
    PARKED = "S"      # the instance state of a subflow node waiting for its child run

    @staticmethod
    def outbox(job_key: str) -> str:
        return f"{MetaField.OUTBOX}{job_key}"


def channel_pattern(prefix: str) -> str:
    """A PSUBSCRIBE pattern matching the announcement channel (`RunKeys.channel`) of every run
    under `prefix` (glob characters in the prefix are escaped)."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return f"{escaped}:{{*}}:done-ch"


def graph_key(prefix: str, digest: str) -> str:
    """Global hash: the records of one graph shape (`GraphSpec.records`), read by the scripts
    that route; named by the shape's digest, so every blueprint version with that shape shares
    it and another shape never overwrites it (no expiry: a run of it may live for days)."""
    return f"{prefix}:graph:{digest}"


def run_pattern(prefix: str) -> str:
    """A SCAN pattern matching every key of every run under `prefix`."""
    return f"{prefix}:*"


__all__ = ["DEFAULT_PREFIX", "MetaField", "RunKeys", "active_key", "catalog_key", "check_prefix",
           "channel_pattern", "graph_key", "queue_of",
           "reconcile_lock_key", "run_pattern", "runs_index_key"]
