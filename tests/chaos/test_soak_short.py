"""The 60-second chaos soak (part of `make test`): ~200 runs of every blueprint kind on three
arq worker processes and one of a second app (another key prefix on the same Redis), one of
them SIGKILLed every 1.5 s; the shapes of issue 9 sized down (fan-outs and batches of 200
instead of `make chaos`'s 2,000). Nothing may be lost, stuck, failed, recorded twice, computed
differently from an in-memory run, or woken before its sleep ended. No timing assertions: on
a loaded machine the runs simply take longer to drain (up to 5 minutes)."""

from __future__ import annotations

from typing import Any

from chaos_flows import ALL_KINDS
from soak import Config, Soak, zero_violations


def assert_zero(report: dict[str, Any]) -> None:
    summary = {k: report[k] for k in (
        "runs_submitted", "runs_completed", "runs_failed", "runs_stuck", "runs_lost",
        "child_runs_not_completed", "joins_fired_twice", "completions_recorded_twice",
        "ran_without_completion", "started_without_completion", "instances_not_done",
        "context_mismatches", "woke_early", "bad_idempotency_keys", "problems")}
    assert zero_violations(report), summary
    assert report["runs_completed"] == report["runs_submitted"] > 0


async def test_soak_60s_with_sigkills_loses_nothing() -> None:
    report = await Soak(Config(seconds=60, runs=200, workers=3, workers2=1, kill_every_ms=1500,
                               drain_timeout_s=300, seed=1, big=200, big_runs=4)).run()
    print(report)
    assert_zero(report)
    assert report["sigkills"] >= 20
    assert report["worker_crashes"] == 0, report["worker_crash_logs"]
    assert set(report["completed_by_kind"]) == set(ALL_KINDS)
    shapes = report["by_shape"]
    # the big shapes ran at full size (two runs each): S + 200 workers + J + End; A, the
    # batch's scatter, 200 items, its gather and T
    assert shapes["fan_big"]["node_completions"] == 2 * 203
    assert shapes["batch_big"]["instances_committed"] >= 2 * 200
    assert shapes["subflow_wait"]["child_runs"] == shapes["subflow_wait"]["submitted"]
    # B of every sleep run started after A ended plus the sleep (6 s under a 1.5 s reconcile
    # whose stalled_after is 4 s); a run woken early counts in `woke_early` (zero, above)
    assert min(report["sleep_min_slack_s"].values()) >= -0.01
