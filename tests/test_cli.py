"""The `flowcraft` command, run as `python -m flowcraft` in a subprocess: issue 3 item 8;
CONTRACT §10, §12.15. Flows come from tests/cli_flows.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The error the command ended with: its last stderr line (a plugin that fails to load
    warns on a line of its own before it, which test_plugin.py covers)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.splitlines()[-1]


def flowcraft(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)])
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "flowcraft", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


GOOD_BLUEPRINT = {
    "id": "good",
    "nodes": [
        {"id": "a", "uses": "x:a"},
        {"id": "b", "uses": "x:b", "config": {"maxRetries": 2}},
    ],
    "edges": [{"source": "a", "target": "b", "condition": "result.output > 1"}],
}

BAD_BLUEPRINT = {
    "id": "bad",
    "nodes": [
        {"id": "a", "uses": "x:a", "config": {"fallback": "nobody"}},
        {"id": "b", "uses": "x:b"},
    ],
    "edges": [
        {"source": "a", "target": "b", "condition": "result.output >"},
        {"source": "b", "target": "ghost"},
    ],
}


# --------------------------------------------------------------------------- run


def test_run_with_context_prints_progress_and_exits_0() -> None:
    proc = flowcraft("run", "cli_flows:ok", "--context", '{"name": "ada"}')

    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    # a progress line per node, greet before shout
    greet_lines = [i for i, line in enumerate(lines) if "greet" in line]
    shout_lines = [i for i, line in enumerate(lines) if "shout" in line]
    assert greet_lines
    assert shout_lines
    assert min(greet_lines) < min(shout_lines)
    assert "completed" in out
    assert "HELLO ADA" in out
    # not a TTY: plain lines, no colour escapes
    assert "\x1b[" not in out


def test_run_json_prints_one_json_document() -> None:
    proc = flowcraft("run", "cli_flows:ok", "--context", '{"name": "bo"}', "--json")

    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)  # the whole stdout is one JSON document
    assert document["status"] == "completed"
    assert document["context"]["greet"] == "hello bo"
    assert document["context"]["shout"] == "HELLO BO"
    assert document["errors"] == []
    assert document["run_id"]


def test_run_without_context_uses_empty_context() -> None:
    proc = flowcraft("run", "cli_flows:ok", "--json")

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["context"]["shout"] == "HELLO WORLD"


def test_run_failing_flow_exits_1() -> None:
    proc = flowcraft("run", "cli_flows:failing")

    assert proc.returncode == 1
    assert "explode" in proc.stdout
    assert "failed" in proc.stdout
    assert "kaboom" in proc.stdout


def test_run_failing_flow_json_exits_1_with_errors() -> None:
    proc = flowcraft("run", "cli_flows:failing", "--json")

    assert proc.returncode == 1
    document = json.loads(proc.stdout)
    assert document["status"] == "failed"
    assert [e["node_id"] for e in document["errors"]] == ["explode"]
    assert "never" not in document["context"]


def test_run_awaiting_flow_reports_awaiting() -> None:
    proc = flowcraft("run", "cli_flows:hitl", "--json")

    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["status"] == "awaiting"
    assert document["awaiting"] == ["approval"]


@pytest.mark.parametrize(("target", "message"), [
    ("cli_flows:no_such_flow", "cli_flows:no_such_flow is not a Flow or WorkflowBlueprint"),
    ("no_such_module_xyz:flow",
     "cannot import no_such_module_xyz: No module named 'no_such_module_xyz'"),
    ("not-a-target", "expected FILE.json or module:flow, got 'not-a-target'"),
    ("cli_flows:not_a_flow", "cli_flows:not_a_flow is not a Flow or WorkflowBlueprint"),
    ("missing-file.json", "no such file: missing-file.json"),
])
def test_run_bad_target_exits_2_with_message(target: str, message: str) -> None:
    proc = flowcraft("run", target)

    assert proc.returncode == 2
    assert error_line(proc) == f"flowcraft: {message}"
    assert proc.stdout == ""


@pytest.mark.parametrize(("context", "message"), [
    ("{not json", "--context is not valid JSON: JSON is malformed: object keys must be strings "
                  "(byte 1)"),
    ("[1, 2]", "--context must be a JSON object"),
    ('"text"', "--context must be a JSON object"),
])
def test_run_bad_context_exits_2_with_message(context: str, message: str) -> None:
    proc = flowcraft("run", "cli_flows:ok", "--context", context)

    assert proc.returncode == 2
    assert error_line(proc) == f"flowcraft: {message}"
    assert proc.stdout == ""


def test_no_subcommand_is_usage_error() -> None:
    proc = flowcraft()
    assert proc.returncode == 2
    assert "usage: flowcraft " in proc.stderr
    assert error_line(proc) == "flowcraft: error: the following arguments are required: command"


def test_unknown_subcommand_is_usage_error() -> None:
    proc = flowcraft("frobnicate")
    assert proc.returncode == 2
    assert "usage: flowcraft " in proc.stderr
    assert error_line(proc).startswith(
        "flowcraft: error: argument command: invalid choice: 'frobnicate' (choose from 'run', ")


# --------------------------------------------------------------------------- events + inspect


def test_run_events_then_inspect_prints_row_per_node(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    proc = flowcraft("run", "cli_flows:ok", "--context", '{"name": "cy"}', "--events", str(log))
    assert proc.returncode == 0, proc.stderr
    assert log.is_file()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    types = [r["type"] for r in records]
    assert types[0] == "workflow:start"
    assert types[-1] == "workflow:finish"
    assert types.count("node:finish") == 2

    inspected = flowcraft("inspect", str(log))

    assert inspected.returncode == 0, inspected.stderr
    rows = inspected.stdout.splitlines()
    for node_id in ("greet", "shout"):
        (row,) = [r for r in rows if r.split() and r.split()[0] == node_id]
        assert row.split()[1:4] == ["finished", "1", "1"], row


def test_inspect_shows_failed_node(tmp_path: Path) -> None:
    log = tmp_path / "failed.jsonl"
    proc = flowcraft("run", "cli_flows:failing", "--json", "--events", str(log))
    assert proc.returncode == 1

    inspected = flowcraft("inspect", str(log))

    assert inspected.returncode == 0, inspected.stderr
    rows = inspected.stdout.splitlines()
    (explode_row,) = [r for r in rows if r.split() and r.split()[0] == "explode"]
    assert explode_row.split()[1:4] == ["failed", "1", "1"], explode_row
    (greet_row,) = [r for r in rows if r.split() and r.split()[0] == "greet"]
    assert greet_row.split()[1:4] == ["finished", "1", "1"], greet_row


def test_inspect_shows_awaiting_node(tmp_path: Path) -> None:
    log = tmp_path / "paused.jsonl"
    assert flowcraft("run", "cli_flows:hitl", "--events", str(log)).returncode == 0

    inspected = flowcraft("inspect", str(log))

    assert inspected.returncode == 0, inspected.stderr
    (row,) = [r for r in inspected.stdout.splitlines()
              if r.split() and r.split()[0] == "approval"]
    assert row.split()[1:4] == ["awaiting", "1", "1"], row


def test_inspect_missing_file_exits_2(tmp_path: Path) -> None:
    proc = flowcraft("inspect", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2
    assert error_line(proc) == f"flowcraft: no such file: {tmp_path / 'nope.jsonl'}"


def test_inspect_malformed_log_exits_2(tmp_path: Path) -> None:
    log = tmp_path / "junk.jsonl"
    log.write_text('{"type": "workflow:start"\nnot json at all\n')
    proc = flowcraft("inspect", str(log))
    assert proc.returncode == 2
    # the first line is cut short: the error names the file and line
    assert error_line(proc) == f"flowcraft: {log}:1: not an event: Input data was truncated"


# --------------------------------------------------------------------------- lint + mermaid


def test_lint_bad_blueprint_file_exits_1_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(BAD_BLUEPRINT))

    proc = flowcraft("lint", str(path))

    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 3, lines
    assert len([line for line in lines if "ghost" in line]) == 1
    assert len([line for line in lines if "nobody" in line]) == 1
    assert sorted(line.split(":", 1)[0] for line in lines) == [
        "bad-expression", "unknown-fallback", "unknown-node"]
    (expression_line,) = [line for line in lines if line.startswith("bad-expression:")]
    assert expression_line.startswith("bad-expression: edge 0 condition: ")
    assert expression_line.endswith("'result.output >'")


def test_lint_reports_bad_sleep_duration(tmp_path: Path) -> None:
    """A blueprint that load_blueprint rejects (§12.13) is a lint problem: exit 1, one line."""
    path = tmp_path / "bad-sleep.json"
    path.write_text(json.dumps({
        "id": "bad-sleep",
        "nodes": [{"id": "nap", "uses": "sleep", "params": {"duration": "5 parsecs"}}],
        "edges": [],
    }))

    proc = flowcraft("lint", str(path))

    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("bad-params: invalid duration '5 parsecs'"), lines
    assert lines[0].endswith("(node 'nap')"), lines


def test_lint_good_blueprint_file_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD_BLUEPRINT))

    proc = flowcraft("lint", str(path))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_lint_good_flow_module_exits_0() -> None:
    proc = flowcraft("lint", "cli_flows:hitl")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lint_unparseable_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{ this is not json")
    proc = flowcraft("lint", str(path))
    assert proc.returncode == 2
    assert error_line(proc) == ("flowcraft: invalid blueprint: JSON is malformed: object keys "
                                "must be strings (byte 2)")


def test_mermaid_flow_module() -> None:
    proc = flowcraft("mermaid", "cli_flows:hitl")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("flowchart TD")
    for node_id in ("draft", "approval", "ship", "cancel"):
        assert node_id in proc.stdout
    assert "approve" in proc.stdout


def test_mermaid_blueprint_file(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD_BLUEPRINT))

    proc = flowcraft("mermaid", str(path))

    assert proc.returncode == 0, proc.stderr
    assert "flowchart TD" in proc.stdout
    assert "a" in proc.stdout
    assert "b" in proc.stdout


def test_console_script_is_the_same_command() -> None:
    script = Path(sys.executable).with_name("flowcraft")
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)])
    proc = subprocess.run([str(script), "mermaid", "cli_flows:ok"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == flowcraft("mermaid", "cli_flows:ok").stdout
