"""Write our builder's blueprints for the interchange cases, with our runtime's results.

    python tests/interop/export_ours.py [OUT_DIR]      (default: tests/interop/exported)

Each file exported/<case>.json = {blueprint, children, functions, context, resume, py_result,
expect}; run_exported.mjs runs the blueprint in the TypeScript runtime and compares. `expect`
is null when both must agree, else the deliberate difference and its contract clause.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from interop_cases import CASES, EXPECTED  # noqa: E402
from interop_functions import registry  # noqa: E402
from interop_run import run_case  # noqa: E402


async def export_case(name: str) -> dict[str, Any]:
    case = CASES[name]()
    blueprint = case.flow.to_blueprint()
    children = [c.to_blueprint() for c in case.children]
    functions = {key: key for key in registry()}
    # ours continues through an in-memory sleep; TS pauses there and is resumed once
    durable = not any(n.uses == "sleep" for n in blueprint.nodes)
    result = await run_case(blueprint, functions, case.context,
                            case.resume if durable else [], children, durable_timers=durable)
    expected = EXPECTED[name]
    return {
        "case": name,
        "about": case.about,
        "blueprint": json.loads(blueprint.to_json()),
        "children": [json.loads(c.to_json()) for c in children],
        "functions": functions,
        "context": case.context,
        "resume": case.resume,
        "py_result": json.loads(json.dumps(result, default=str)),
        "expect": expected.to_dict() if expected is not None else None,
    }


async def export_all(out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name in CASES:
        data = await export_case(name)
        (out / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        names.append(name)
    return names


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "exported"
    names = asyncio.run(export_all(out))
    sys.stdout.write(f"our builder -> {out}: {len(names)} blueprints with our results\n")


if __name__ == "__main__":
    main()
