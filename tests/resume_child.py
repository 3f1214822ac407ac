"""Resume a paused run in a fresh process: used by test_sleep_wait.py.

Usage: python tests/resume_child.py RESULT.json NODE_ID ACTION OUTPUT_JSON

Reads the JSON-serialised WorkflowResult from RESULT.json, rebuilds the flow by importing
``cli_flows`` (nothing else is shared with the parent process), resumes the run and prints the
resumed result as one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import cli_flows

from flowcraft import FlowRuntime


def main() -> None:
    result_path, node_id, action, output_json = sys.argv[1:5]
    serialised = Path(result_path).read_bytes()
    resumed = asyncio.run(
        FlowRuntime().resume(
            cli_flows.build_hitl(),
            serialised,
            node_id=node_id,
            output=json.loads(output_json),
            action=action,
        )
    )
    sys.stdout.write(resumed.to_json().decode() + "\n")


if __name__ == "__main__":
    main()
