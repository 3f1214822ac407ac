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
import sys
from pathlib import Path

from _common import json_lines, quiet_moment

HERE = Path(__file__).resolve().parent
WORKLOADS = {  # name: (our figure, the reference's figure)
    "inmem_chain": ("nodes_per_s", "nodes_per_s_median"),
    "inmem_fanout": ("runs_per_s", "runs_per_s_median"),
    "inmem_many_runs": ("runs_per_s", "runs_per_s_median"),
}


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
            busy = quiet_moment(args.max_busy)
            ours, theirs = WORKLOADS[name]
            for side, command, cwd, key in (
                    ("ts", ["node", f"{name}.mjs"], args.ts_dir, theirs),
                    ("py", [sys.executable, str(HERE / f"{name}.py")], HERE.parent, ours)):
                load = " ".join(f"{v:.2f}" for v in os.getloadavg())
                line = json_lines(command, cwd)[-1]
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
