"""The order-processing example on two arq workers, in one command: `make demo-dist`.

Starts a private redis-server on a free port (or uses REDIS_URL), two arq worker processes
(`arq examples.demo_dist.WorkerSettings`), runs the flow of examples/order_processing.py through
a FlowcraftClient and prints, live, which worker runs which node; then the result. Every
process it started is stopped when it ends, also on Ctrl-C or SIGTERM.

The workers report progress through their `event_bus`: one line per node event on their stdout,
which this script reads and prints with the worker's name.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python examples/demo_dist.py`
    sys.path.insert(0, str(ROOT))

from arq.connections import RedisSettings  # noqa: E402
from flowcraft_arq import FlowcraftClient, worker_settings  # noqa: E402
from flowcraft_arq.keys import run_pattern  # noqa: E402

from examples.order_processing import ORDER, flow  # noqa: E402
from flowcraft import Event  # noqa: E402

MARK = "@progress"
SHOWN = ("node:start", "node:finish", "node:retry", "node:error")


class WorkerProgress:
    """The workers' event bus: one `@progress <event> <node> [attempt]` line per node event."""

    async def emit(self, event: Event) -> None:
        if event.type in SHOWN:
            attempt = getattr(event, "attempt", "")
            print(f"{MARK} {event.type} {getattr(event, 'node_id', '')} {attempt}".rstrip(),
                  flush=True)


_url = os.environ.get("FLOWCRAFT_REDIS_URL")
if _url:  # imported by `arq examples.demo_dist.WorkerSettings` in a worker process
    WorkerSettings = worker_settings(
        [flow], redis_settings=RedisSettings.from_dsn(_url),
        queue_name=os.environ["FLOWCRAFT_QUEUE"], prefix=os.environ["FLOWCRAFT_PREFIX"],
        event_bus=WorkerProgress(),
        max_jobs=2)  # small, so the three-way fan-out visibly spreads over both workers


# -- the demo's processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Processes:
    """Everything the demo started, stopped in reverse order by `stop_all` (idempotent)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.dirs: list[str] = []

    def spawn(self, name: str, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # a session of its own: Ctrl-C reaches only this script, which stops them in order
        process = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.started.append((name, process))
        print(f"{name}: pid {process.pid}", flush=True)
        return process

    def stop_all(self) -> None:
        while self.started:
            name, process = self.started.pop()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
            print(f"stopped {name} (pid {process.pid})", flush=True)
        for directory in self.dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self.dirs.clear()


def start_redis(procs: Processes) -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server); "
                         "or set REDIS_URL to a Redis of yours")
    port = free_port()
    directory = tempfile.mkdtemp(prefix="flowcraft-demo-redis-")
    procs.dirs.append(directory)
    process = procs.spawn("redis-server", [
        executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", directory, "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not answers_ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"redis-server on port {port} did not start")
        time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0"


class Progress:
    """Reads a worker's stdout in a thread and prints its progress lines as they come."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: dict[str, list[str]] = {}
        self.finished: set[str] = set()

    def follow(self, name: str, stream: TextIO) -> None:
        def read() -> None:
            for line in stream:
                parts = line.split()
                if len(parts) < 3 or parts[0] != MARK:
                    continue
                kind, node = parts[1], parts[2]
                attempt = f" (attempt {parts[3]})" if len(parts) > 3 else ""
                with self.lock:
                    print(f"  {name}  {kind:<12} {node}{attempt}", flush=True)
                    if kind == "node:finish":
                        self.ran.setdefault(name, []).append(node)
                        self.finished.add(node)

        threading.Thread(target=read, name=f"{name}-stdout", daemon=True).start()

    async def until_finished(self, nodes: set[str], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not nodes <= self.finished and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def start_workers(procs: Processes, url: str, queue: str, prefix: str, logs: Path,
                  progress: Progress) -> None:
    arq = Path(sys.executable).parent / "arq"
    command = [str(arq)] if arq.exists() else [sys.executable, "-m", "arq"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")])), "PYTHONUNBUFFERED": "1",
        "FLOWCRAFT_REDIS_URL": url, "FLOWCRAFT_QUEUE": queue, "FLOWCRAFT_PREFIX": prefix}
    for number in (1, 2):
        name = f"worker {number}"
        process = procs.spawn(name, [*command, "examples.demo_dist.WorkerSettings"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE,
                              stderr=(logs / f"worker{number}.log").open("wb"))
        assert process.stdout is not None
        progress.follow(name, io.TextIOWrapper(process.stdout, encoding="utf-8"))


async def wait_for_workers(client: FlowcraftClient, queue: str, procs: Processes) -> None:
    deadline = time.monotonic() + 30
    while not await client.redis.exists(f"{queue}:health-check"):
        for name, process in procs.started:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not start within 30 s")
        await asyncio.sleep(0.05)


async def demo(procs: Processes, logs: Path) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    url = os.environ.get("REDIS_URL")
    if url:
        print(f"redis: {url} (REDIS_URL)", flush=True)
    else:
        url = start_redis(procs)
        print(f"redis: private redis-server at {url}", flush=True)
    tag = uuid.uuid4().hex[:8]
    queue, prefix = f"demo-{tag}", f"demo-{tag}"
    progress = Progress()
    start_workers(procs, url, queue, prefix, logs, progress)
    async with FlowcraftClient.from_url(url, flows=[flow], queue_name=queue,
                                        prefix=prefix) as client:
        await wait_for_workers(client, queue, procs)
        run_id = await client.start(flow.id, context={"order": ORDER})
        print(f"run {run_id} of {flow.id!r} started on 2 workers", flush=True)
        result = await client.wait(run_id, timeout=60)
        done = {k for k in result.context if not k.startswith("_") and k in _node_ids()}
        await progress.until_finished(done)
        print(f"\nrun {run_id}: {result.status}")
        public = {k: v for k, v in result.context.items() if not k.startswith("_")}
        print(json.dumps(public, indent=2))
        for name in sorted(progress.ran):
            print(f"{name} ran: {', '.join(progress.ran[name])}")
        if os.environ.get("REDIS_URL"):  # leave nothing behind in someone else's Redis
            async for key in client.redis.scan_iter(match=run_pattern(prefix)):
                await client.redis.delete(key)
    return 0 if result.status == "completed" else 1


def _node_ids() -> set[str]:
    return {node.id for node in flow.to_blueprint().nodes}


def main() -> int:
    procs = Processes()
    logs = Path(tempfile.mkdtemp(prefix="flowcraft-demo-logs-"))
    code = 1
    try:
        code = asyncio.run(demo(procs, logs))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: stopping everything this demo started", flush=True)
        code = 130
    finally:
        procs.stop_all()
        if code not in (0, 130):
            for log in sorted(logs.glob("*.log")):
                sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        shutil.rmtree(logs, ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
