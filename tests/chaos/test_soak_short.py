"""The 60-second chaos soak (part of `make test`): ~200 runs of every blueprint kind on three
arq worker processes, one of them SIGKILLed every 1.5 s. Nothing may be lost, stuck, failed,
recorded twice or computed differently from an in-memory run. No timing assertions: on a
loaded machine the runs simply take longer to drain (up to 5 minutes)."""

from __future__ import annotations

from typing import Any

from soak import Config, Soak, zero_violations


def assert_zero(report: dict[str, Any]) -> None:
    summary = {k: report[k] for k in (
        "runs_submitted", "runs_completed", "runs_failed", "runs_stuck", "runs_lost",
        "joins_fired_twice", "completions_recorded_twice", "ran_without_completion",
        "started_without_completion", "instances_not_done", "context_mismatches",
        "bad_idempotency_keys", "problems")}
    assert zero_violations(report), summary
    assert report["runs_completed"] == report["runs_submitted"] > 0


async def test_soak_60s_with_sigkills_loses_nothing() -> None:
    report = await Soak(Config(seconds=60, runs=200, workers=3, kill_every_ms=1500,
                               drain_timeout_s=300, seed=1)).run()
    print(report)
    assert_zero(report)
    assert report["sigkills"] >= 20
    assert report["worker_crashes"] == 0, report["worker_crash_logs"]
    assert set(report["completed_by_kind"]) == {"diamond", "fan", "if_else", "loop", "batch",
                                                "sleep", "wait"}
