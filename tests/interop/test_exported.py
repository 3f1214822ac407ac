"""Our builder's blueprints for the interchange cases (issue 13), as `make interop` runs them in
the TypeScript runtime: the committed exported/*.json must be what our builder and runtime give
today (regenerate with `python tests/interop/export_ours.py`; `make interop` also runs them in
the TS runtime), and each must load strictly in the shape the TS builder writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from export_ours import export_case
from interop_cases import CASES

from flowcraft import load_blueprint
from flowcraft.builtins.kinds import LOOP_CONTROLLER

EXPORTED = Path(__file__).parent / "exported"


def test_every_case_is_exported() -> None:
    assert sorted(p.stem for p in EXPORTED.glob("*.json")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_exported_blueprint_and_result_are_current(name: str) -> None:
    committed: dict[str, Any] = json.loads((EXPORTED / f"{name}.json").read_text())
    assert await export_case(name) == committed, (
        f"exported/{name}.json is stale: run `python tests/interop/export_ours.py`")


@pytest.mark.parametrize("name", sorted(CASES))
def test_exported_blueprint_is_in_the_ts_shape(name: str) -> None:
    data = json.loads((EXPORTED / f"{name}.json").read_text())
    blueprint = load_blueprint(data["blueprint"], strict=True)
    uses = {n.uses for n in blueprint.nodes}
    assert "batch" not in uses  # a batch is a batch-scatter/batch-gather pair
    for node in blueprint.nodes:
        if node.uses == LOOP_CONTROLLER:
            assert node.config.join_strategy == "any"
            leaving = [e for e in blueprint.edges if e.source == node.id]
            assert {e.action for e in leaving} == {"continue", "break"}
            assert all(e.transform is not None and e.transform.startswith('context["')
                       for e in leaving)
