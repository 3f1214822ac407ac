"""A corpus of broken blueprints: each is rejected with a BlueprintError that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowcraft import BlueprintError, ExpressionError, load_blueprint


def bp(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None,
       **extra: Any) -> dict[str, Any]:
    return {"id": "bad", "nodes": nodes, "edges": edges or [], **extra}


A = {"id": "a", "uses": "fn"}
B = {"id": "b", "uses": "fn"}

CORPUS: dict[str, tuple[Any, str]] = {
    "id is a number": ({"id": 5, "nodes": []}, "id"),
    "nodes is a string": ({"id": "x", "nodes": "a,b"}, "nodes"),
    "node without uses": (bp([{"id": "a"}]), "uses"),
    "params is a list": (bp([{**A, "params": [1]}]), "params"),
    "maxRetries is a string": (bp([{**A, "config": {"maxRetries": "3"}}]), "maxRetries"),
    "maxRetries zero": (bp([{**A, "config": {"maxRetries": 0}}]), "maxRetries"),
    "negative retryDelay": (bp([{**A, "config": {"retryDelay": -1}}]), "retryDelay"),
    "zero timeout": (bp([{**A, "config": {"timeout": 0}}]), "timeout"),
    "unknown join strategy": (bp([{**A, "config": {"joinStrategy": "some"}}]), "joinStrategy"),
    "duplicate ids": (bp([A, dict(A)]), "duplicate"),
    "edge to unknown node": (bp([A], [{"source": "a", "target": "ghost"}]), "ghost"),
    "edge from unknown node": (bp([A], [{"source": "ghost", "target": "a"}]), "ghost"),
    "fallback to unknown node": (bp([{**A, "config": {"fallback": "ghost"}}]), "ghost"),
    "fallback to itself": (bp([{**A, "config": {"fallback": "a"}}]), "fallback"),
    "cycle without loop": (bp([A, B], [{"source": "a", "target": "b"},
                                       {"source": "b", "target": "a"}]), "cycle"),
    "self loop": (bp([A], [{"source": "a", "target": "a"}]), "cycle"),
    "bad condition": (bp([A, B], [{"source": "a", "target": "b", "condition": "x >"}]),
                      "edges[0].condition"),
    "dunder condition call": (bp([A, B], [{"source": "a", "target": "b",
                                          "condition": "__import__('os')"}]), "condition"),
    "bad transform": (bp([A, B], [{"source": "a", "target": "b", "transform": "(("}]),
                      "transform"),
    "huge expression": (bp([A, B], [{"source": "a", "target": "b",
                                     "condition": "1 + " * 5000 + "1"}]), "condition"),
    "deep expression": (bp([A, B], [{"source": "a", "target": "b",
                                     "condition": "(" * 500 + "1" + ")" * 500}]), "condition"),
    "loop without condition": (bp([{"id": "l", "uses": "loop-controller"}]), "condition"),
    "loop with bad condition": (bp([{"id": "l", "uses": "loop-controller",
                                     "params": {"condition": "&&"}}]), "condition"),
    "sleep with bad duration": (bp([{"id": "s", "uses": "sleep",
                                     "params": {"duration": "5 parsecs"}}]), "duration"),
    "sleep without duration": (bp([{"id": "s", "uses": "sleep"}]), "duration"),
    "subflow without blueprint": (bp([{"id": "s", "uses": "subflow"}]), "blueprintId"),
    "batch without worker": (bp([{"id": "b", "uses": "batch",
                                  "params": {"inputKey": "x"}}]), "worker"),
    "batch with zero concurrency": (bp([{"id": "b", "uses": "batch",
                                         "params": {"worker": "w", "inputKey": "x",
                                                    "concurrency": 0}}]), "concurrency"),
    "top level is a list": ([A], "object"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_blueprint_is_rejected_with_a_clear_message(name: str) -> None:
    data, fragment = CORPUS[name]
    for form in (data, json.dumps(data), json.dumps(data).encode()):
        with pytest.raises(BlueprintError) as info:
            load_blueprint(form)
        assert fragment in str(info.value), (name, str(info.value))


def test_bad_expressions_raise_expression_error_which_is_a_blueprint_error() -> None:
    data, _ = CORPUS["bad condition"]
    with pytest.raises(ExpressionError):
        load_blueprint(data)


@pytest.mark.parametrize("raw", [
    b"\xff\xfe\x00garbage",
    b'{"id": "\xc3\x28", "nodes": []}',
    b"",
    b"null",
    b"[" * 100_000,
    b'{"id": "x", "nodes": [], "metadata": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
])
def test_garbage_bytes_are_rejected(raw: bytes) -> None:
    with pytest.raises(BlueprintError):
        load_blueprint(raw)


def test_huge_ids_load_but_stay_intact() -> None:
    big = "n" * 1_000_000
    loaded = load_blueprint(bp([{"id": big, "uses": "fn"}]))
    assert loaded.nodes[0].id == big


def test_unknown_fields_are_ignored_by_default_and_rejected_in_strict_mode() -> None:
    data = bp([{**A, "_sourceLocation": {"line": 3}}], extra_field=1)
    assert load_blueprint(data).nodes[0].id == "a"
    with pytest.raises(BlueprintError, match="extra_field"):
        load_blueprint(data, strict=True)


@pytest.mark.parametrize("where", ["params", "metadata", "config"])
def test_non_finite_numbers_are_rejected_because_json_cannot_hold_them(where: str) -> None:
    node: dict[str, Any] = {"id": "a", "uses": "fn"}
    data = bp([node])
    if where == "params":
        node["params"] = {"condition": [1.0, float("inf")]}
    elif where == "metadata":
        data["metadata"] = {"score": float("nan")}
    else:
        node["config"] = {"timeout": float("inf")}
    with pytest.raises(BlueprintError, match="non-finite"):
        load_blueprint(data)
