"""Our in-memory benchmarks alternated with the TypeScript reference's, in one session.

Each round runs, per workload, `node <name>.mjs` in the reference's directory and then
`benchmarks/<name>.py`, prints both JSON lines (tagged with `side`, `round` and the load average)
and at the end one summary line per workload: the medians and their ratio. With `--max-busy`
each pair waits (up to a minute) until the machine's CPU use over one second is at most that
percentage, since other processes share the machine.

Setup of the reference: copy `../shared/anchors/ts` to /tmp/ts-bench and run `npm ci` there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKLOADS = {  # name: (our figure, the reference's figure)
    "inmem_chain": ("nodes_per_s", "nodes_per_s_median"),
    "inmem_fanout": ("runs_per_s", "runs_per_s_median"),
    "inmem_many_runs": ("runs_per_s", "runs_per_s_median"),
}


def cpu_busy(seconds: float = 1.0) -> int:
    """Percent of all CPUs busy over `seconds` (from /proc/stat)."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = snapshot()
    time.sleep(seconds)
    total1, idle1 = snapshot()
    return round(100 * (1 - (idle1 - idle0) / max(1, total1 - total0)))


def json_line(command: list[str], cwd: Path) -> dict[str, Any]:
    out = subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout
    line: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ts-dir", type=Path, default=Path(os.environ.get("TS_BENCH",
                                                                           "/tmp/ts-bench")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-busy", type=int, default=100)
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {w: {"ts": [], "py": []} for w in args.workloads}
    for round_no in range(1, args.rounds + 1):
        for name in args.workloads:
            busy = cpu_busy()
            for _ in range(60):
                if busy <= args.max_busy:
                    break
                busy = cpu_busy()
            ours, theirs = WORKLOADS[name]
            for side, command, cwd, key in (
                    ("ts", ["node", f"{name}.mjs"], args.ts_dir, theirs),
                    ("py", [sys.executable, str(HERE / f"{name}.py")], HERE.parent, ours)):
                load = " ".join(f"{v:.2f}" for v in os.getloadavg())
                line = json_line(command, cwd)
                figures[name][side].append(float(line[key]))
                print(json.dumps({"side": side, "round": round_no, "cpu_busy_before": busy,
                                  "loadavg": load, **line}), flush=True)
    for name, sides in figures.items():
        ts, py = statistics.median(sides["ts"]), statistics.median(sides["py"])
        print(json.dumps({"summary": name, "figure": WORKLOADS[name][0], "ts_median": ts,
                          "py_median": py, "ratio": round(py / ts, 2),
                          "rounds": len(sides["py"])}), flush=True)


if __name__ == "__main__":
    main()
