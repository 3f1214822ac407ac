"""Chaos soak: real arq worker processes SIGKILLed at random while runs execute; then check
that nothing was lost, stuck, recorded twice or computed differently from an in-memory run.

    .venv/bin/python -m tests.chaos.soak --seconds 60 --runs 200 --workers 3 \
        --kill-every-ms 1500 [--big 2000 --big-runs 4] [--redis-restart] [--json]
    .venv/bin/python tests/chaos/soak.py ...          # the same, as a script

What it does (see docs/reliability.md for the reasoning behind every check):

1. starts its own `redis-server` on a free port (never any other), with AOF and
   `appendfsync always` when `--redis-restart` is given;
2. starts N `arq chaos_worker.WorkerSettings` subprocesses (each in its own process group) with
   a short `job_timeout` and `lease_ms`, so a killed worker's job comes back quickly, and
   `--workers2` more for a second app (another key prefix; both apps on their default queue
   names); every worker runs the periodic reconcile every `--worker-reconcile-every-s` with a
   `stalled_after` of `--worker-stalled-after-s`, shorter than the long sleep;
3. submits R runs of a mix of blueprints (`chaos_flows`: diamond, wide fan-out into `all` and
   `any` joins, if/else merge, loop, batch, 1 s durable sleep, wait resumed by the driver; and
   the shapes of issue 9: a fan-out of `--big` successors into an `all` join and a batch of
   `--big` items (`--big-runs` of them in all, spread over the window), a batch with
   `concurrency`, nested loops, a subflow whose child waits (the driver resumes the parent's
   subflow node), a 6 s sleep, and the 8-wide fan-out on the second app), spread over the
   first 85 % of the chaos window, at most `--in-flight` at a time; every run is driven by
   `client.start` -> `client.wait` (-> `client.resume` -> `client.wait`);
4. every `--kill-every-ms` SIGKILLs a random worker's process group (either app) and starts a
   replacement;
   with `--redis-restart` also SIGKILLs `redis-server` every `--restart-every-s` seconds and
   starts it again on the same port and data directory;
5. runs `client.reconcile(stalled_after=...)` every `--reconcile-every-s` seconds;
6. after the window: stops the chaos, lets the runs drain (up to `--drain-timeout-s`), then
   reads the engine's own records (each run's meta hash, event stream and result) and the
   trace list the node bodies appended to (with the wall time of every body's start and end: a
   node after a sleep must not start before the node before it ended plus the sleep, and no
   more items of a batch with `concurrency` may run at once), and prints ONE JSON line, with
   the counts per shape under `by_shape`.

The process always cleans up: workers and redis-server are killed in `finally` blocks (also on
SIGTERM / Ctrl-C), and the temporary directory is removed unless `--keep` is given.

Environment: CHAOS_DEFAULT_RETRY=1 gives the workers flowcraft_arq's default connection
settings instead of `chaos_worker.retrying_settings`; CHAOS_WORKER_SETTINGS=module.Settings
runs another worker settings object (e.g. a scratch module that patches a candidate fix in,
then imports `chaos_worker.WorkerSettings`), found on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `python -m tests.chaos.soak` and pytest alike
    sys.path.insert(0, str(HERE))

import chaos_flows  # noqa: E402
import msgspec  # noqa: E402
from flowcraft_arq import FlowcraftClient  # noqa: E402
from flowcraft_arq.testing import RedisServer  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

from flowcraft import Flow, FlowRuntime, ResumeError, RunNotFoundError, WorkflowResult  # noqa: E402
from flowcraft.distributed import graph_spec  # noqa: E402

ARQ_CLI = Path(sys.executable).parent / "arq"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


@dataclass
class Config:
    seconds: float = 60.0
    runs: int = 200
    workers: int = 3
    kill_every_ms: int = 1500
    redis_restart: bool = False
    restart_every_s: float = 20.0
    restart_down_s: float = 0.5
    job_timeout: float = 3.0
    lease_ms: int = 3000
    max_jobs: int = 16
    reconcile_every_s: float = 2.0
    stalled_after_s: float = 5.0
    drain_timeout_s: float = 300.0
    wait_timeout_s: float = 20.0
    in_flight: int = 64
    jitter_s: float = 0.08
    seed: int = 0
    kinds: tuple[str, ...] = chaos_flows.ALL_KINDS
    big: int = 2000
    big_runs: int = 4
    workers2: int = 1
    worker_reconcile_every_s: float = 1.5
    worker_stalled_after_s: float = 4.0
    keep: bool = False


@dataclass
class Stats:
    sigkills: int = 0
    worker_crashes: int = 0
    redis_restarts: int = 0
    redis_down_s: float = 0.0
    reconcile: Counter[str] = field(default_factory=Counter)
    reconcile_errors: int = 0
    missed_wakeups: int = 0
    transient_errors: Counter[str] = field(default_factory=Counter)
    resumes: int = 0
    resume_retries_already_applied: int = 0
    killed_pids: set[int] = field(default_factory=set)


# -- processes -------------------------------------------------------------------------------


def start_redis(server: RedisServer, *, fsync_always: bool) -> None:
    server.start()
    if fsync_always:
        # RedisServer(appendonly=True) uses the default `everysec`; make every write durable
        # before it is acknowledged (a CONFIG SET has to be repeated after each restart).
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"CONFIG SET appendfsync always\r\n")
            reply = sock.recv(64)
            if not reply.startswith(b"+OK"):
                raise RuntimeError(f"CONFIG SET appendfsync failed: {reply!r}")


class WorkerPool:
    """N `arq chaos_worker.WorkerSettings` subprocesses, each in its own process group."""

    def __init__(self, count: int, env: dict[str, str], logdir: Path,
                 name: str = "worker") -> None:
        self.count = count
        self.env = env
        self.logdir = logdir
        self.name = name
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.logs: dict[int, Path] = {}
        self.crashes: list[str] = []  # the last lines of the log of each worker that died
        self.crash_causes: Counter[str] = Counter()  # the exception that ended each of them
        # CHAOS_WORKER_SETTINGS lets a candidate fix be soaked without editing the library:
        # point it at a module (on PYTHONPATH) that patches, then builds WorkerSettings
        self.settings = env.get("CHAOS_WORKER_SETTINGS", "chaos_worker.WorkerSettings")

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        path = self.logdir / f"{self.name}-{self.started:04d}.log"
        log = path.open("ab")
        command = [str(ARQ_CLI)] if ARQ_CLI.exists() else [sys.executable, "-m", "arq"]
        try:
            proc = subprocess.Popen([*command, self.settings], cwd=HERE,
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            log.close()
        self.logs[proc.pid] = path
        return proc

    def start(self) -> None:
        while len(self.procs) < self.count:
            self.procs.append(self._spawn())

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def kill_random(self, rng: random.Random) -> int:
        """SIGKILL a random worker's process group, start a replacement; the killed pid."""
        victim = self.procs.pop(rng.randrange(len(self.procs)))
        self._kill(victim)
        self.procs.append(self._spawn())
        return victim.pid

    def replace_dead(self) -> int:
        """Restart workers that exited on their own; how many did."""
        dead = [p for p in self.procs if p.poll() is not None]
        for proc in dead:
            self.procs.remove(proc)
            lines = [line for line in self.logs[proc.pid].read_text(errors="replace")
                     .splitlines() if line.strip()]
            self.crashes.append(f"pid {proc.pid} exit {proc.returncode}:\n"
                                + "\n".join(lines[-25:]))
            self.crash_causes[crash_cause(lines, proc.returncode)] += 1
            self.procs.append(self._spawn())
        return len(dead)

    def stop(self) -> None:
        for proc in self.procs:
            self._kill(proc)
        self.procs.clear()


ARQ_WATCH_RACE = "arq: WatchError between WATCH and EXEC in Worker.start_jobs"
HANDSHAKE_RESET = "redis-py: connection reset during the connection handshake"
KNOWN_RESTART_DEATHS = frozenset({ARQ_WATCH_RACE, HANDSHAKE_RESET})
"""The two ways an arq worker process used to die when redis-server went away (named when a
death is classified): arq 0.28 runs WATCH, EXISTS, ZSCORE, MULTI/EXEC in `Worker.start_jobs`
and catches WatchError only around EXEC, so a connection dropped between WATCH and EXEC
escaped the poll loop; redis-py runs the connection handshake (`on_connect`) outside its
retry. `flowcraft_arq.steady` rides out both, so the restart tests expect no death at all."""


def crash_cause(lines: list[str], returncode: int | None) -> str:
    """Why a worker process ended, from the end of its log."""
    if not lines:
        return f"exit {returncode}"
    last, tail = lines[-1], "\n".join(lines[-12:])
    if "WatchError: A ConnectionError occurred on while watching" in last:
        return ARQ_WATCH_RACE
    if "in on_connect" in tail and "ConnectionError" in last:
        return HANDSHAKE_RESET
    return last[:160]


# -- the soak --------------------------------------------------------------------------------


class Soak:
    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.stats = Stats()
        self.tag = uuid.uuid4().hex[:8]
        # two apps on one Redis, each on its default queue name (derived from its prefix)
        self.prefix = f"chaos-{self.tag}"
        self.prefix2 = f"chaos2-{self.tag}"
        self.trace_key = f"chaos-trace-{self.tag}"
        self.runs: dict[str, tuple[str, dict[str, Any]]] = {}
        self.outcomes: dict[str, str] = {}
        self.clients: dict[str, FlowcraftClient] = {}  # by prefix
        self.specs: dict[str, Any] = {}  # graph specs by flow id
        # test hook: called with (soak, redis, client) between the drain and the checks
        self.before_verify: Any = None

    # the parts that touch Redis tolerate a restart: retry transient errors while it is down

    async def _retry(self, what: str, factory: Any) -> Any:
        delay = 0.05
        while True:
            try:
                return await factory()
            except TRANSIENT as exc:
                self.stats.transient_errors[f"{what}:{type(exc).__name__}"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def client_of(self, kind: str) -> FlowcraftClient:
        return self.clients[self.prefix2 if kind in chaos_flows.OTHER_APP else self.prefix]

    async def drive(self, run_id: str, kind: str, context: dict[str, Any]) -> None:
        client = self.client_of(kind)
        flow_id = chaos_flows.flow_of(kind).id
        await self._retry("start", lambda: client.start(flow_id, context, run_id))
        steps = chaos_flows.resume_steps(kind, context)
        while True:
            try:
                result = await client.wait(run_id, timeout=self.cfg.wait_timeout_s)
            except RunNotFoundError:
                self.outcomes[run_id] = "not_found"  # verify() counts it as lost
                return
            except TimeoutError:
                # wait() sleeps on the run's pub/sub channel; if the run is already awaiting
                # or terminal, its announcement was missed (e.g. across a reconnect)
                status = await self._retry("status", lambda: client.status(run_id))
                if status == "running":
                    continue
                self.stats.missed_wakeups += 1
                raw = await self._retry("result", lambda: client.result(run_id))
                if raw is None:
                    continue
                result = raw
            except TRANSIENT as exc:
                self.stats.transient_errors[f"wait:{type(exc).__name__}"] += 1
                await asyncio.sleep(0.2)
                continue
            if result.status == "awaiting" and steps:
                await self._resume(client, run_id, steps.pop(0))
                continue
            if result.status == "awaiting":
                await asyncio.sleep(0.05)  # the stored result still says awaiting: look again
                continue
            self.outcomes[run_id] = result.status
            return

    async def _resume(self, client: FlowcraftClient, run_id: str, args: dict[str, Any]) -> None:
        while True:
            try:
                await client.resume(run_id, **args)
                self.stats.resumes += 1
                return
            except TRANSIENT as exc:
                self.stats.transient_errors[f"resume:{type(exc).__name__}"] += 1
                await asyncio.sleep(0.2)
            except ResumeError:
                # a retried resume whose first attempt was applied but whose reply was lost
                self.stats.resume_retries_already_applied += 1
                return

    async def submit_all(self, deadline: float) -> list[asyncio.Task[None]]:
        tasks: list[asyncio.Task[None]] = []
        slots = asyncio.Semaphore(self.cfg.in_flight)
        began = time.monotonic()
        spacing = (deadline - began) * 0.85 / max(self.cfg.runs, 1)

        async def one(run_id: str, kind: str, context: dict[str, Any]) -> None:
            try:
                await self.drive(run_id, kind, context)
            finally:
                slots.release()

        for i, kind in enumerate(schedule(self.cfg)):
            due = began + i * spacing
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            await slots.acquire()
            context = chaos_flows.make_input(kind, self.rng)
            run_id = f"{kind}-{i:06d}-{self.tag}"
            self.runs[run_id] = (kind, context)
            tasks.append(asyncio.create_task(one(run_id, kind, context)))
        return tasks

    async def killer(self, pools: list[WorkerPool], deadline: float) -> None:
        """SIGKILL a worker of either app (chosen in proportion to their worker counts)."""
        interval = self.cfg.kill_every_ms / 1000.0
        slots = [pool for pool in pools for _ in range(pool.count)]
        while time.monotonic() + interval < deadline:
            await asyncio.sleep(interval)
            for pool in pools:
                self.stats.worker_crashes += pool.replace_dead()
            self.stats.killed_pids.add(self.rng.choice(slots).kill_random(self.rng))
            self.stats.sigkills += 1

    async def redis_restarter(self, server: RedisServer, deadline: float) -> None:
        every = self.cfg.restart_every_s
        while time.monotonic() + every < deadline:
            await asyncio.sleep(every)
            began = time.monotonic()
            server.stop()  # SIGKILL: only what AOF (appendfsync always) has is kept
            await asyncio.sleep(self.cfg.restart_down_s)
            await asyncio.to_thread(start_redis, server, fsync_always=True)
            self.stats.redis_restarts += 1
            self.stats.redis_down_s += time.monotonic() - began

    async def reconciler(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.reconcile_every_s)
            for client in self.clients.values():
                try:
                    counts = await client.reconcile(stalled_after=self.cfg.stalled_after_s)
                    self.stats.reconcile.update(counts)
                except (*TRANSIENT, RedisError):
                    self.stats.reconcile_errors += 1

    async def watchdog(self, pools: list[WorkerPool], stop: asyncio.Event) -> None:
        """Workers that die on their own (not SIGKILLed by us) are counted and replaced."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            for pool in pools:
                self.stats.worker_crashes += pool.replace_dead()

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        chaos_flows.JITTER_S = 0.0  # reference runs need no jitter
        chaos_flows.configure(cfg.big)  # the workers get the same size through CHAOS_BIG
        tmp = Path(tempfile.mkdtemp(prefix="flowcraft-chaos-"))
        server = RedisServer(appendonly=cfg.redis_restart)
        pools: list[WorkerPool] = []
        began = time.monotonic()
        try:
            start_redis(server, fsync_always=cfg.redis_restart)
            env = {**{k: v for k, v in os.environ.items() if k != "CHAOS_QUEUE"},
                   "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
                   "CHAOS_REDIS_URL": server.url, "CHAOS_PREFIX": self.prefix,
                   "CHAOS_TRACE_KEY": self.trace_key,
                   "CHAOS_JOB_TIMEOUT": str(cfg.job_timeout), "CHAOS_LEASE_MS": str(cfg.lease_ms),
                   "CHAOS_MAX_JOBS": str(cfg.max_jobs), "CHAOS_JITTER_S": str(cfg.jitter_s),
                   "CHAOS_RESULT_TTL": "86400", "CHAOS_BIG": str(cfg.big),
                   "CHAOS_RECONCILE_EVERY": str(cfg.worker_reconcile_every_s),
                   "CHAOS_RECONCILE_STALLED_AFTER": str(cfg.worker_stalled_after_s)}
            pools.append(WorkerPool(cfg.workers, env, tmp))
            if cfg.workers2 > 0:
                pools.append(WorkerPool(cfg.workers2, {**env, "CHAOS_PREFIX": self.prefix2},
                                        tmp, name="app2-worker"))
            for pool in pools:
                pool.start()
            report = await self._soak(server, pools, began)
            report["worker_log_errors"] = scan_logs(tmp)
            report["worker_crash_causes"] = dict(sum((p.crash_causes for p in pools),
                                                     Counter[str]()))
            report["worker_crash_logs"] = [c for p in pools for c in p.crashes][:3]
            return report
        finally:
            for pool in pools:
                pool.stop()
            server.cleanup()
            if cfg.keep:
                print(f"logs kept in {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    async def _soak(self, server: RedisServer, pools: list[WorkerPool],
                    began: float) -> dict[str, Any]:
        cfg = self.cfg
        redis = chaos_flows.retrying_redis(server.url)
        flows = list(chaos_flows.FLOWS.values())
        self.clients = {prefix: FlowcraftClient(redis, flows=flows, prefix=prefix,
                                                result_ttl=86400)
                        for prefix in (self.prefix, self.prefix2)}
        client = self.clients[self.prefix]
        stop = asyncio.Event()
        deadline = time.monotonic() + cfg.seconds
        helpers = [asyncio.create_task(self.reconciler(stop))]
        chaos = [asyncio.create_task(self.killer(pools, deadline))]
        if cfg.redis_restart:
            chaos.append(asyncio.create_task(self.redis_restarter(server, deadline)))
        try:
            tasks = await self.submit_all(deadline)
            await asyncio.gather(*chaos)
            chaos_ended = time.monotonic()
            helpers.append(asyncio.create_task(self.watchdog(pools, stop)))
            _done, pending = await asyncio.wait(tasks, timeout=cfg.drain_timeout_s) \
                if tasks else (set(), set())
            drained = time.monotonic()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            stop.set()
            await asyncio.gather(*helpers, return_exceptions=True)
            for pool in pools:
                self.stats.worker_crashes += pool.replace_dead()
            if self.before_verify is not None:
                await self.before_verify(self, redis, client)
            report = await self.verify(redis)
        finally:
            stop.set()
            for task in [*helpers, *chaos]:
                task.cancel()
            await asyncio.gather(*helpers, *chaos, return_exceptions=True)
            await redis.aclose()
        report.update({
            "seconds": round(time.monotonic() - began, 1),
            "chaos_seconds": round(chaos_ended - began, 1),
            "drain_seconds": round(drained - chaos_ended, 1),
        })
        return report

    # -- verification ------------------------------------------------------------------------

    async def expected_results(self) -> dict[tuple[str, bytes], WorkflowResult]:
        """In-memory runs of every distinct (blueprint, input), resumed like the driver does."""
        child = chaos_flows.FLOWS["subflow_child"]
        runtime = FlowRuntime(dependencies={"trace": chaos_flows.NullTrace()},
                              blueprints={child.id: child})
        wanted = {expected_key(kind, ctx): (kind, ctx) for kind, ctx in self.runs.values()}

        async def reference(kind: str, ctx: dict[str, Any]) -> WorkflowResult:
            flow = chaos_flows.flow_of(kind)
            result = await runtime.run(flow, context=dict(ctx))
            for step in chaos_flows.resume_steps(kind, ctx):
                result = await runtime.resume(flow, result, **step)
            return result

        keys = list(wanted)
        results = await asyncio.gather(*(reference(*wanted[k]) for k in keys))
        return dict(zip(keys, results, strict=True))

    async def read_trace(self, redis: Redis) -> Trace:
        raw_trace = await self._retry("trace", lambda: redis.lrange(self.trace_key, 0, -1))
        trace = Trace(entries=len(raw_trace))
        for raw in raw_trace:
            run_id, node_id, iteration, key, phase, pid, attempt, *rest = msgspec.json.decode(raw)
            inst = (run_id, node_id, iteration)
            if key != f"{run_id}:{node_id}:{iteration}":
                trace.bad_keys += 1
            at = float(rest[0]) if rest else 0.0
            trace.bodies.setdefault(run_id, []).append((node_id, pid, phase, at))
            if phase == "start":
                trace.started.setdefault(inst, []).append((pid, attempt))
                trace.first_start[inst] = min(at, trace.first_start.get(inst, at))
            else:
                trace.ended.setdefault(inst, []).append(pid)
                trace.first_end[inst] = min(at, trace.first_end.get(inst, at))
        return trace

    async def check_records(self, redis: Redis, client: FlowcraftClient, run_id: str,
                            flow: Flow, tally: Counter[str], problems: list[str],
                            committed: set[tuple[str, str, int]]) -> str:
        """The engine's own records of one run (meta hash, event log); its status."""
        keys = client.store.keys(run_id)
        meta = await self._retry("meta", lambda: redis.hgetall(keys.meta))
        if not meta:
            tally["runs_lost"] += 1
            problems.append(f"{run_id}: keys missing")
            return "lost"
        status: str = meta.get(b"status", b"").decode()
        if status == "failed":
            problems.append(f"{run_id}: failed")
        elif status not in TERMINAL:
            tally["runs_stuck"] += 1
            problems.append(f"{run_id}: stuck in {status}")
        if status in TERMINAL:
            tally[f"runs_{status}"] += 1
        spec = self.specs.get(flow.id)
        if spec is None:
            spec = self.specs[flow.id] = graph_spec(client.adapter.graph(flow.id))
        # counters the commits maintain: `live` (fired, not finished instances) must be 0
        # in a finished run, and `b:` (items of a batch still running) 0 once gathered; a
        # completion applied twice would have decremented one of them twice
        if status in TERMINAL and meta.get(b"live") != b"0":
            tally["live_counter_off"] += 1
            problems.append(f"{run_id}: live = {meta.get(b'live')!r} in a finished run")
        for name, value in meta.items():
            if name.startswith(b"b:") and status == "completed" and value != b"0":
                tally["batch_counter_off"] += 1
                problems.append(f"{run_id}: {name.decode()} = {value!r}")
        # the engine's completion records: instance fields of the meta hash
        for name, value in meta.items():
            if not name.startswith(b"i:"):
                continue
            inst_key = name[2:].decode()
            m = re.fullmatch(r"(\d+)#(\d+)(?:/(\d+))?", inst_key)
            assert m is not None, inst_key
            node_id = spec.node_ids[int(m.group(1))]
            if m.group(3) is not None:
                node_id = f"{node_id}[{m.group(3)}]"
            if value == b"D":
                committed.add((run_id, node_id, int(m.group(2))))
                tally["instances_committed"] += 1
            elif status == "completed":
                tally["instances_not_done"] += 1
                problems.append(f"{run_id}: instance {node_id}#{m.group(2)} is {value[:1]!r}")
        # the engine's event log: one node:finish per committed node instance
        entries = await self._retry("events", lambda: redis.xrange(keys.events))
        finishes: Counter[tuple[str, int]] = Counter()
        for _id, fields in entries:
            for raw in fields.values():
                event = msgspec.json.decode(raw)
                if event.get("type") == "node:finish":
                    finishes[(event["node_id"], int(event.get("iteration", 0)))] += 1
        tally["node_completions"] += sum(finishes.values())
        joins = chaos_flows.join_nodes(flow)
        for (node_id, iteration), n in finishes.items():
            if n > 1:
                tally["completions_recorded_twice"] += 1
                problems.append(f"{run_id}: {node_id}#{iteration} recorded {n} times")
                if node_id in joins:
                    tally["joins_fired_twice"] += 1
        tally["join_instances"] += sum(1 for (nid, _it) in finishes if nid in joins)
        return status

    async def verify(self, redis: Redis) -> dict[str, Any]:
        expected = await self.expected_results()
        trace = await self.read_trace(redis)
        counts: Counter[str] = Counter()
        shapes: dict[str, Counter[str]] = {}
        problems: list[str] = []
        by_kind: Counter[str] = Counter()
        committed: set[tuple[str, str, int]] = set()
        slack: dict[str, float] = {}
        for run_id, (kind, ctx) in self.runs.items():
            client = self.client_of(kind)
            flow = chaos_flows.flow_of(kind)
            tally = shapes.setdefault(kind, Counter())
            tally["submitted"] += 1
            status = await self.check_records(redis, client, run_id, flow, tally, problems,
                                              committed)
            if status == "completed":
                by_kind[kind] += 1
            # child runs (a subflow's) are runs of their own, checked the same way
            for suffix in chaos_flows.CHILDREN.get(kind, ()):
                child: Counter[str] = Counter()
                child_status = await self.check_records(
                    redis, client, f"{run_id}/{suffix}", chaos_flows.FLOWS["subflow_child"],
                    child, problems, committed)
                tally["child_runs"] += 1
                if child_status != "completed":
                    tally["child_runs_not_completed"] += 1
                    problems.append(f"{run_id}/{suffix}: child run {child_status}")
                tally.update({k: v for k, v in child.items()
                              if not k.startswith("runs_") and k != "join_instances"})
            # nothing after a sleep starts before the node before it ended plus the sleep
            if kind in chaos_flows.SLEEPS:
                before = trace.first_end.get((run_id, "A", 0))
                after = trace.first_start.get((run_id, "B", 0))
                if before is not None and after is not None:
                    margin = after - before - chaos_flows.SLEEPS[kind]
                    slack[kind] = min(margin, slack.get(kind, margin))
                    if margin < -0.01:
                        tally["woke_early"] += 1
                        problems.append(f"{run_id}: B started {-margin:.2f} s before its "
                                        f"{chaos_flows.SLEEPS[kind]:g} s sleep ended")
            # a batch with `concurrency` never runs more items at once
            if kind in chaos_flows.CONCURRENCY:
                batch, limit = chaos_flows.CONCURRENCY[kind]
                most = trace.most_items_at_once(run_id, batch)
                tally["most_items_at_once"] = max(most, tally["most_items_at_once"])
                if most > limit:
                    tally["concurrency_exceeded"] += 1
                    problems.append(f"{run_id}: {most} items of {batch} ran at once "
                                    f"(concurrency {limit})")
            # the result against an in-memory run of the same blueprint and input
            if status not in TERMINAL:
                continue
            raw_result = await self._retry("result", lambda c=client, r=run_id: c.result(r))
            if raw_result is not None and raw_result.errors:
                problems += [f"{run_id}: {e.node_id} {e.type}: {e.message[:200]}"
                             for e in raw_result.errors]
            reference = expected[expected_key(kind, ctx)]
            if raw_result is None or comparable(raw_result) != comparable(reference):
                tally["context_mismatches"] += 1
                problems.append(f"{run_id}: result differs from the in-memory run")
        for tally in shapes.values():
            counts.update({k: v for k, v in tally.items() if k != "most_items_at_once"})

        # bodies that ran (trace) but whose completion the engine never recorded
        for inst in trace.ended:
            if inst not in committed:
                counts["ran_without_completion"] += 1
                problems.append(f"body of {inst} ran to its end, completion not recorded")
        for inst, starts in trace.started.items():
            if inst not in committed:
                counts["started_without_completion"] += 1
                problems.append(f"body of {inst} started, completion not recorded")
            if len(starts) > 1:
                counts["bodies_rerun"] += 1
            if any(pid in self.stats.killed_pids for pid, _ in starts) and \
                    len(trace.ended.get(inst, ())) < len(starts):
                counts["bodies_interrupted_by_kill"] += 1
        submitted = len(self.runs)
        info = await self._retry("info", lambda: redis.info("memory"))
        report: dict[str, Any] = {
            "runs_submitted": submitted,
            "runs_completed": counts["runs_completed"],
            "runs_failed": counts["runs_failed"],
            "runs_stuck": counts["runs_stuck"],
            "runs_lost": counts["runs_lost"],
            "child_runs": counts["child_runs"],
            "child_runs_not_completed": counts["child_runs_not_completed"],
            "sigkills": self.stats.sigkills,
            "bodies_interrupted_by_kill": counts["bodies_interrupted_by_kill"],
            "bodies_rerun": counts["bodies_rerun"],
            "joins_fired_twice": counts["joins_fired_twice"],
            "completions_recorded_twice": counts["completions_recorded_twice"],
            "ran_without_completion": counts["ran_without_completion"],
            "started_without_completion": counts["started_without_completion"],
            "instances_not_done": counts["instances_not_done"],
            "live_counter_off": counts["live_counter_off"],
            "batch_counter_off": counts["batch_counter_off"],
            "context_mismatches": counts["context_mismatches"],
            "woke_early": counts["woke_early"],
            "concurrency_exceeded": counts["concurrency_exceeded"],
            "bad_idempotency_keys": trace.bad_keys,
            "node_completions": counts["node_completions"],
            "join_instances": counts["join_instances"],
            "trace_entries": trace.entries,
            "worker_crashes": self.stats.worker_crashes,
            "redis_restarts": self.stats.redis_restarts,
            "redis_down_s": round(self.stats.redis_down_s, 1),
            "missed_wakeups": self.stats.missed_wakeups,
            "resumes": self.stats.resumes,
            "resume_retries_already_applied": self.stats.resume_retries_already_applied,
            "reconcile": dict(self.stats.reconcile),
            "reconcile_errors": self.stats.reconcile_errors,
            "transient_client_errors": sum(self.stats.transient_errors.values()),
            "redis_used_memory_mb": round(int(info["used_memory"]) / 2**20, 1),
            "completed_by_kind": dict(sorted(by_kind.items())),
            "by_shape": {kind: shape_summary(tally) for kind, tally in sorted(shapes.items())},
            "sleep_min_slack_s": {k: round(v, 3) for k, v in sorted(slack.items())},
            "problems": problems[:20],
            "config": {k: v for k, v in asdict(self.cfg).items() if k not in ("kinds", "keep")},
        }
        return report


@dataclass
class Trace:
    """What the node bodies appended to the trace list, by instance (run, node, iteration)."""

    entries: int = 0
    bad_keys: int = 0
    started: dict[tuple[str, str, int], list[tuple[int, int]]] = field(default_factory=dict)
    ended: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    first_start: dict[tuple[str, str, int], float] = field(default_factory=dict)
    first_end: dict[tuple[str, str, int], float] = field(default_factory=dict)
    bodies: dict[str, list[tuple[str, int, str, float]]] = field(default_factory=dict)
    """(node, pid, phase, wall time) of every entry, by run."""

    def most_items_at_once(self, run_id: str, batch: str) -> int:
        """The most items of `batch` whose bodies ran at the same time in `run_id` (a body
        is from its start to the next end in the same process; one cut short by a SIGKILL has
        no end and is left out, so this is a lower bound)."""
        opened: dict[tuple[str, int], float] = {}
        spans: list[tuple[float, float, str]] = []
        for node_id, pid, phase, at in self.bodies.get(run_id, ()):
            if not node_id.startswith(batch + "["):
                continue
            if phase == "start":
                opened[(node_id, pid)] = at
            elif (node_id, pid) in opened:
                spans.append((opened.pop((node_id, pid)), at, node_id))
        most = 0
        for begin, _end, _item in spans:
            running = {item for b, e, item in spans if b <= begin <= e}
            most = max(most, len(running))
        return most


SHAPE_FIELDS = ("submitted", "runs_completed", "runs_failed", "runs_stuck", "runs_lost",
                "child_runs", "child_runs_not_completed", "completions_recorded_twice",
                "joins_fired_twice", "instances_not_done", "live_counter_off",
                "batch_counter_off", "context_mismatches", "woke_early", "concurrency_exceeded",
                "node_completions", "instances_committed", "most_items_at_once")


def shape_summary(tally: Counter[str]) -> dict[str, int]:
    """One shape's counts: what was submitted and completed, and every non-zero violation."""
    keep = ("submitted", "runs_completed", "node_completions", "instances_committed")
    return {name.removeprefix("runs_"): tally[name] for name in SHAPE_FIELDS
            if name in keep or tally[name]}


def expected_key(kind: str, ctx: dict[str, Any]) -> tuple[str, bytes]:
    """Runs of the same blueprint and input share one in-memory reference run."""
    return chaos_flows.OTHER_APP.get(kind, kind), msgspec.json.encode(ctx)


def schedule(cfg: Config) -> list[str]:
    """The kind of every run: the small kinds in turn, with `big_runs` big ones (fan-outs and
    batches of `big`, alternating) spread evenly over the first three quarters."""
    small = [k for k in cfg.kinds if k not in chaos_flows.BIG_KINDS]
    big = [k for k in cfg.kinds if k in chaos_flows.BIG_KINDS]
    if not small:
        return [big[i % len(big)] for i in range(cfg.runs)]
    kinds = [small[i % len(small)] for i in range(cfg.runs)]
    n = min(cfg.big_runs, cfg.runs) if big else 0
    for j in range(n):
        kinds[(2 * j + 1) * cfg.runs * 3 // (8 * n)] = big[j % len(big)]
    return kinds


def comparable(result: WorkflowResult) -> dict[str, Any]:
    return {"status": result.status, "context": result.context,
            "errors": sorted((e.node_id, e.type) for e in result.errors),
            "awaiting": sorted(result.awaiting)}


_JOB_FAILED = re.compile(rb" ! \S+ failed, (\w+):")


def scan_logs(logdir: Path) -> dict[str, int]:
    """Counts of notable lines in the worker logs: arq job failures by exception type,
    tracebacks, rejected commits, expired jobs, exhausted retries."""
    counts: Counter[str] = Counter()
    for path in logdir.glob("*worker-*.log"):
        for line in path.read_bytes().splitlines():
            m = _JOB_FAILED.search(line)
            if m:
                counts[f"job_failed:{m.group(1).decode()}"] += 1
            elif b"Traceback" in line:
                counts["traceback"] += 1
            elif b"rejected" in line:
                counts["commit_rejected"] += 1
            elif b"max retries" in line:
                counts["max_retries_exceeded"] += 1
            elif b" expired" in line:
                counts["job_expired"] += 1
    return dict(sorted(counts.items()))


def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Config()
    p.add_argument("--seconds", type=float, default=d.seconds, help="chaos window (s)")
    p.add_argument("--runs", type=int, default=d.runs, help="runs to submit")
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes")
    p.add_argument("--kill-every-ms", type=int, default=d.kill_every_ms,
                   help="SIGKILL a random worker this often (0: never)")
    p.add_argument("--redis-restart", action="store_true",
                   help="AOF with appendfsync always; SIGKILL + restart redis-server")
    p.add_argument("--restart-every-s", type=float, default=d.restart_every_s)
    p.add_argument("--job-timeout", type=float, default=d.job_timeout,
                   help="arq job_timeout (s); a killed worker's job returns after this + 10 s")
    p.add_argument("--lease-ms", type=int, default=d.lease_ms)
    p.add_argument("--max-jobs", type=int, default=d.max_jobs)
    p.add_argument("--reconcile-every-s", type=float, default=d.reconcile_every_s)
    p.add_argument("--stalled-after-s", type=float, default=d.stalled_after_s)
    p.add_argument("--drain-timeout-s", type=float, default=d.drain_timeout_s)
    p.add_argument("--in-flight", type=int, default=d.in_flight)
    p.add_argument("--jitter-s", type=float, default=d.jitter_s,
                   help="max random sleep inside every node body")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--kinds", default=",".join(d.kinds), help="comma-separated flow kinds")
    p.add_argument("--big", type=int, default=d.big,
                   help="successors of the big fan-out, items of the big batch")
    p.add_argument("--big-runs", type=int, default=d.big_runs,
                   help="runs of the big kinds (fan_big, batch_big alternating)")
    p.add_argument("--workers2", type=int, default=d.workers2,
                   help="worker processes of the second app (key prefix)")
    p.add_argument("--worker-reconcile-every-s", type=float,
                   default=d.worker_reconcile_every_s)
    p.add_argument("--worker-stalled-after-s", type=float, default=d.worker_stalled_after_s)
    p.add_argument("--keep", action="store_true", help="keep the worker logs")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    a = p.parse_args(argv)
    kinds = tuple(k for k in a.kinds.split(",") if k)
    unknown = set(kinds) - set(chaos_flows.ALL_KINDS)
    if unknown or not kinds:
        p.error(f"unknown kinds {sorted(unknown)}; choose from {list(chaos_flows.ALL_KINDS)}")
    if any(k in chaos_flows.OTHER_APP for k in kinds) and a.workers2 < 1:
        p.error("the kinds of the second app need --workers2 >= 1")
    config = Config(seconds=a.seconds, runs=a.runs, workers=a.workers,
                    kill_every_ms=a.kill_every_ms, redis_restart=a.redis_restart,
                    restart_every_s=a.restart_every_s, job_timeout=a.job_timeout,
                    lease_ms=a.lease_ms, max_jobs=a.max_jobs,
                    reconcile_every_s=a.reconcile_every_s, stalled_after_s=a.stalled_after_s,
                    drain_timeout_s=a.drain_timeout_s, in_flight=a.in_flight,
                    jitter_s=a.jitter_s, seed=a.seed, kinds=kinds, big=a.big,
                    big_runs=a.big_runs, workers2=a.workers2,
                    worker_reconcile_every_s=a.worker_reconcile_every_s,
                    worker_stalled_after_s=a.worker_stalled_after_s, keep=a.keep)
    return config, a.json


def zero_violations(report: dict[str, Any]) -> bool:
    """What the soak promises: nothing lost, stuck, failed, recorded twice or different."""
    return all(report[k] == 0 for k in (
        "runs_failed", "runs_stuck", "runs_lost", "joins_fired_twice",
        "completions_recorded_twice", "ran_without_completion", "started_without_completion",
        "instances_not_done", "live_counter_off", "batch_counter_off", "context_mismatches",
        "bad_idempotency_keys", "woke_early", "concurrency_exceeded",
        "child_runs_not_completed")) and \
        report["runs_completed"] == report["runs_submitted"]


async def soak(config: Config) -> dict[str, Any]:
    return await Soak(config).run()


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so the `finally` blocks kill our processes."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    config, json_only = parse_args(argv)
    if config.kill_every_ms <= 0:
        config.kill_every_ms = 10**9
    with _terminate_cleanly():
        report = asyncio.run(soak(config))
    report["ok"] = zero_violations(report)
    if not json_only:
        for line in report["problems"]:
            print(line, file=sys.stderr)
    print(msgspec.json.encode(report).decode())
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
