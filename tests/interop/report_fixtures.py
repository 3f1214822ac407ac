"""Print one row per TS fixture: the TS runtime's status, ours for the same blueprint, and
whether the results agree or differ as the contract clause says (`make interop`; the assertions
themselves are tests/interop/test_ts_fixtures.py).

    python tests/interop/report_fixtures.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from interop_cases import EXPECTED, MISSING  # noqa: E402
from interop_run import comparable, load_both, run_case  # noqa: E402

from flowcraft import BlueprintError, load_blueprint  # noqa: E402


async def verdict(data: dict[str, Any]) -> tuple[str, str]:
    try:
        strict, lax = load_both(data["blueprint"])
    except BlueprintError as exc:
        return "rejected", f"MISMATCH: {exc}"
    if strict != lax:
        return "loaded", "MISMATCH: strict and lax loads differ"
    sleep = any(n.uses == "sleep" for n in strict.nodes)
    ours = await run_case(strict, data["functions"], data["context"],
                          [] if sleep else data["resume"],
                          [load_blueprint(c) for c in data["children"]],
                          durable_timers=not sleep)
    ts = data["ts_result"]
    mine, theirs = comparable(ours["context"], strict), comparable(ts["context"], strict)
    expected = EXPECTED[data["case"]]
    status = " > ".join([p["status"] for p in ours["phases"]] + [ours["status"]])
    if expected is None:
        same = (ours["status"], mine) == (ts["status"], theirs)
        return status, "ok: same" if same else f"MISMATCH: {mine} vs {theirs}"
    if (ours["status"], ts["status"]) != (expected.status or (ts["status"],) * 2):
        return status, "MISMATCH: status"
    for key, pair in expected.keys.items():
        if (mine.pop(key, MISSING), theirs.pop(key, MISSING)) != pair:
            return status, f"MISMATCH: {key}"
    if mine != theirs:
        return status, f"MISMATCH: {mine} vs {theirs}"
    return status, f"ok: differs as {expected.clause}"


async def main() -> int:
    rows = []
    for path in sorted((HERE / "fixtures").glob("*.json")):
        data = json.loads(path.read_text())
        ts = data["ts_result"]
        ts_status = " > ".join([p["status"] for p in ts["phases"]] + [ts["status"]])
        ours, text = await verdict(data)
        rows.append((data["case"], ts_status, ours, text))
    out = ["TS builder's blueprints -> our runtime, compared with the TS runtime's result",
           f"  {'case':22} {'TS':22} {'ours':22} verdict"]
    out += [f"  {c:22} {t:22} {o:22} {v}" for c, t, o, v in rows]
    good = sum(v.startswith("ok") for *_, v in rows)
    out.append(f"{good}/{len(rows)} cases as expected")
    sys.stdout.write("\n".join(out) + "\n")
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
