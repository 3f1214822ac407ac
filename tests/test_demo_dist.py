"""`make demo-dist` (issue 11 item 4): examples/demo_dist.py run as a user would, in a
subprocess; it starts its own redis-server and two arq workers and must stop all of them, also
when interrupted with Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "demo_dist.py"
NODES_RUN = {"fetch", "price", "stock", "fraud", "review", "ship", "notify"}

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="needs redis-server")


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FLOWCRAFT_REDIS_URL")}
    return {**clean, "PYTHONUNBUFFERED": "1"}


def started_pids(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in
            re.findall(r"^(redis-server|worker \d): pid (\d+)$", output, re.M)}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_demo_runs_the_flow_on_two_workers_and_stops_everything() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=180, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    pids = started_pids(out)
    assert sorted(pids) == ["redis-server", "worker 1", "worker 2"]
    assert re.search(r"^redis: private redis-server at redis://127\.0\.0\.1:\d+/0$", out, re.M)
    progress = re.findall(r"^  (worker [12])  (node:\w+)\s+(\w+)(?: \(attempt (\d+)\))?$",
                          out, re.M)
    finished = {node: worker for worker, kind, node, _ in progress if kind == "node:finish"}
    assert set(finished) == NODES_RUN
    assert [(kind, node, attempt) for _, kind, node, attempt in progress
            if kind == "node:retry"] == [("node:retry", "fraud", "2")]
    (run_id,) = re.findall(r"^run (\w+): completed$", out, re.M)
    body = out[out.index("\n{\n") + 1: out.index("\n}\n") + 2]
    context = json.loads(body)
    assert context["tracking"] == f"TRK-{run_id[:8]}"
    assert context["notify"] == "customer notified: order shipped"
    assert context["fraud"] == {"score": 0.07, "attempts": 2}
    summary = dict(re.findall(r"^(worker [12]) ran: (.+)$", out, re.M))
    per_worker = {w: set(nodes.split(", ")) for w, nodes in summary.items()}
    assert set().union(*per_worker.values()) == NODES_RUN
    for worker, nodes in per_worker.items():
        assert {n for n, w in finished.items() if w == worker} == nodes
    stopped = re.findall(r"^stopped (redis-server|worker \d) \(pid (\d+)\)$", out, re.M)
    assert stopped == [("worker 2", str(pids["worker 2"])), ("worker 1", str(pids["worker 1"])),
                       ("redis-server", str(pids["redis-server"]))]
    assert [name for name, pid in pids.items() if not gone(pid)] == []


def _default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal, even when this test runs where SIGINT is
    ignored (a background job of a non-interactive shell, which its children inherit)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_every_process_it_started() -> None:
    demo = subprocess.Popen([sys.executable, str(SCRIPT)], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_sigint)
    assert demo.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        # interrupt while the workers start: a run (one arq job with fusion) could finish
        # before a later Ctrl-C arrives
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("redis: private redis-server") or time.monotonic() > deadline:
                break
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    out = "".join(lines) + rest
    assert demo.returncode == 130, out
    pids = started_pids(out)
    assert "redis-server" in pids
    assert "interrupted: stopping everything this demo started" in out
    assert "started on 2 workers" not in out
    # everything it started, and only that, stopped, the last started first
    assert re.findall(r"^stopped (redis-server|worker \d)", out, re.M) == list(reversed(pids))
    assert [name for name, pid in pids.items() if not gone(pid)] == []
