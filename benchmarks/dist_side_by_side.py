"""Distributed diamonds, ours alternated with the TypeScript reference (BullMQ), in one session.

Each round runs the reference's `dist_bullmq.mjs` in its variants (`--workers 1`: one adapter in
one process; `--workers 2`: two adapters in one process; `--procs 2 --workers 1`: two worker
processes) against a private redis-server this script starts (the reference flushes it), then
our `dist_diamond.py --workers 1 2` (which starts its own); every JSON line is printed tagged
with `side`, `round`, the CPU use before and the load average. The end prints one summary line:
the medians over the rounds of runs/s and Redis commands per node, and the ratios ours / TS
(1 worker process against `--workers 1`; 2 against `--procs 2 --workers 1`), with each round's
ratio. With `--max-busy` each round waits (up to a minute) until the machine's CPU use over one
second is at most that percentage, since other processes share the machine.

Setup of the reference: copy `../shared/anchors/ts` to /tmp/ts-anchor and run `npm ci` there.

    .venv/bin/python benchmarks/dist_side_by_side.py [--rounds 2] [--runs 2000] [--max-busy 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from _common import json_lines, quiet_moment

HERE = Path(__file__).resolve().parent
TS_VARIANTS = {"ts_w1": ["--workers", "1"], "ts_w2": ["--workers", "2"],
               "ts_p2": ["--procs", "2", "--workers", "1"]}
RATIOS = {"ours_1_vs_ts_w1": ("py_1", "ts_w1"), "ours_2_vs_ts_p2": ("py_2", "ts_p2"),
          "ours_2_vs_ts_w2": ("py_2", "ts_w2")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ts-dir", type=Path,
                        default=Path(os.environ.get("TS_BENCH", "/tmp/ts-anchor")))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2000, help="diamonds per dist_diamond line")
    parser.add_argument("--max-busy", type=int, default=100)
    args = parser.parse_args()
    from flowcraft_arq.testing import RedisServer

    runs: dict[str, list[float]] = {}
    cmds: dict[str, list[float]] = {}
    server = RedisServer()
    server.start()
    try:
        for round_no in range(1, args.rounds + 1):
            busy = quiet_moment(args.max_busy)
            sides: list[tuple[str, list[str], Path]] = [
                (name, ["node", "dist_bullmq.mjs", "--port", str(server.port), *flags],
                 args.ts_dir) for name, flags in TS_VARIANTS.items()]
            sides.append(("py", [sys.executable, str(HERE / "dist_diamond.py"), "--runs",
                                 str(args.runs), "--workers", "1", "2"], HERE.parent))
            for side, command, cwd in sides:
                load = " ".join(f"{v:.2f}" for v in os.getloadavg())
                for line in json_lines(command, cwd):
                    name = side if side != "py" else f"py_{line['workers']}"
                    runs.setdefault(name, []).append(
                        float(line.get("runs_per_s_median", line.get("runs_per_s", 0))))
                    cmds.setdefault(name, []).append(float(line["redis_cmds_per_node"]))
                    print(json.dumps({"side": name, "round": round_no, "cpu_busy_before": busy,
                                      "loadavg": load, **line}), flush=True)
    finally:
        server.cleanup()
    summary: dict[str, Any] = {"summary": "dist_diamond_side_by_side", "rounds": args.rounds,
                               "runs_per_s_median": {k: round(statistics.median(v), 1)
                                                     for k, v in runs.items()},
                               "redis_cmds_per_node_median": {k: statistics.median(v)
                                                              for k, v in cmds.items()}}
    for ratio, (ours, theirs) in RATIOS.items():
        summary[ratio] = round(statistics.median(runs[ours]) / statistics.median(runs[theirs]),
                               2)
        summary[f"{ratio}_per_round"] = [round(a / b, 2)
                                         for a, b in zip(runs[ours], runs[theirs], strict=True)]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
