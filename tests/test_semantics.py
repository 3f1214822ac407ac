"""Execution semantics: contract §4 (nodes), §5 (context), §6 (running in memory), §12."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import itertools
import random
import threading
import time
import uuid
from decimal import Decimal
from typing import Any, ClassVar

import anyio
import msgspec
import pytest

from flowcraft import (
    ContextError,
    EventRecorder,
    FatalError,
    Flow,
    FlowcraftError,
    FlowRuntime,
    Node,
    NodeContext,
    NodeResult,
    WorkflowError,
    WorkflowResult,
    load_blueprint,
)

# --------------------------------------------------------------------------- helpers


class Bus:
    """A minimal event bus: any object with ``async emit(event)`` (§6 Events)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def emit(self, event: Any) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, type_: str) -> list[Any]:
        return [e for e in self.events if e.type == type_]


async def run(
    flow: Any, context: dict[str, Any] | None = None, **runtime_kw: Any
) -> WorkflowResult:
    run_kw = {"run_id": runtime_kw.pop("run_id")} if "run_id" in runtime_kw else {}
    return await FlowRuntime(**runtime_kw).run(flow, context=dict(context or {}), **run_kw)


def const(value: Any, calls: list[Any] | None = None, name: str = "") -> Any:
    """A node returning ``value`` and recording its input in ``calls``."""

    async def node(ctx: NodeContext) -> Any:
        if calls is not None:
            calls.append((name or ctx.node_id, ctx.input))
        return value

    return node


def sleeper(seconds: float, value: Any, log: list[str] | None = None) -> Any:
    async def node(ctx: NodeContext) -> Any:
        if log is not None:
            log.append(f"start:{ctx.node_id}")
        await asyncio.sleep(seconds)
        if log is not None:
            log.append(f"end:{ctx.node_id}")
        return value

    return node


def failing(message: str = "boom", attempts: list[int] | None = None) -> Any:
    async def node(ctx: NodeContext) -> Any:
        if attempts is not None:
            attempts.append(ctx.attempt)
        raise ValueError(message)

    return node


def user_keys(context: dict[str, Any]) -> dict[str, Any]:
    """Context without built-in keys, except the documented ``_outputs.*`` (§5)."""
    return {k: v for k, v in context.items() if not k.startswith("_") or k.startswith("_outputs.")}


def errors_of(result: WorkflowResult, node_id: str) -> list[WorkflowError]:
    return [e for e in result.errors if e.node_id == node_id]


# =========================================================================== §4 nodes


async def test_s4_function_node_plain_return_value_is_output() -> None:
    calls: list[Any] = []
    flow = Flow("plain").node("a", const({"x": 1})).node("b", const("done", calls)).edge("a", "b")
    result = await run(flow)
    assert result.status == "completed"
    assert result.errors == []
    assert calls == [("b", {"x": 1})]
    assert result.context["a"] == {"x": 1}
    assert result.context["b"] == "done"


async def test_s4_node_returning_none_works() -> None:
    calls: list[Any] = []
    flow = Flow("none").node("a", const(None)).node("b", const(1, calls)).edge("a", "b")
    result = await run(flow)
    assert result.status == "completed"
    assert calls == [("b", None)]
    assert "a" in result.context
    assert result.context["a"] is None
    assert "_outputs.a" in result.context
    assert result.context["_outputs.a"] is None


async def test_s4_node_result_output_and_action() -> None:
    calls: list[Any] = []

    async def a(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=[1, 2], action="go")

    flow = Flow("nr").node("a", a).node("b", const("b", calls)).edge("a", "b", action="go")
    result = await run(flow)
    assert result.status == "completed"
    assert calls == [("b", [1, 2])]
    assert result.context["a"] == [1, 2]


def test_s4_node_result_defaults() -> None:
    r = NodeResult()
    assert r.output is None
    assert r.action is None
    r2 = NodeResult(output=3, action="x")
    assert (r2.output, r2.action) == (3, "x")


async def test_s4_plain_def_node_runs_in_worker_thread() -> None:
    main_thread = threading.get_ident()
    seen: list[int] = []

    def double(ctx: NodeContext) -> Any:
        seen.append(threading.get_ident())
        time.sleep(0.01)
        return ctx.params["v"] * 2

    calls: list[Any] = []
    flow = (
        Flow("sync")
        .node("double", double, params={"v": 21})
        .node("after", const("ok", calls))
        .edge("double", "after")
    )
    result = await run(flow)
    assert result.status == "completed"
    assert result.context["double"] == 42
    assert calls == [("after", 42)]
    assert len(seen) == 1
    assert seen[0] != main_thread


async def test_s4_sync_node_returning_node_result_routes() -> None:
    calls: list[Any] = []

    def decide(ctx: NodeContext) -> NodeResult:
        return NodeResult(output="s", action="right")

    flow = (
        Flow("sync-route")
        .node("decide", decide)
        .node("left", const("l", calls))
        .node("right", const("r", calls))
        .edge("decide", "left", action="left")
        .edge("decide", "right", action="right")
    )
    result = await run(flow)
    assert result.status == "completed"
    assert calls == [("right", "s")]


async def test_s4_node_context_attributes() -> None:
    sentinel = object()
    seen: dict[str, Any] = {}

    async def probe(ctx: NodeContext) -> Any:
        seen["params"] = ctx.params
        seen["db"] = ctx.dependencies["db"]
        seen["run_id"] = ctx.run_id
        seen["node_id"] = ctx.node_id
        seen["blueprint_id"] = ctx.blueprint_id
        seen["attempt"] = ctx.attempt
        seen["key"] = ctx.idempotency_key
        seen["seed"] = await ctx.context.get("seed")
        seen["input"] = ctx.input
        ctx.logger.info("hello from probe")
        return 1

    flow = Flow("attrs").node("probe", probe, params={"p": 1})
    result = await FlowRuntime(dependencies={"db": sentinel}).run(
        flow, context={"seed": "s"}, run_id="fixed-run"
    )
    assert result.status == "completed", result.errors
    assert result.run_id == "fixed-run"
    assert seen["params"] == {"p": 1}
    assert seen["db"] is sentinel
    assert seen["run_id"] == "fixed-run"
    assert seen["node_id"] == "probe"
    assert seen["blueprint_id"] == "attrs"
    assert seen["attempt"] == 1
    assert seen["seed"] == "s"
    key = seen["key"]
    assert key.startswith("fixed-run:probe:")
    assert key.rsplit(":", 1)[1].isdigit()


async def test_s4_attempt_is_one_based_and_idempotency_key_stable_across_retries() -> None:
    attempts: list[int] = []
    keys: list[str] = []

    async def flaky(ctx: NodeContext) -> Any:
        attempts.append(ctx.attempt)
        keys.append(ctx.idempotency_key)
        if ctx.attempt < 3:
            raise ValueError("not yet")
        return "ok"

    flow = Flow("idem").node("flaky", flaky, max_retries=3)
    result = await run(flow, run_id="idem-run")
    assert result.status == "completed", result.errors
    assert attempts == [1, 2, 3]
    assert len(set(keys)) == 1
    assert keys[0].startswith("idem-run:flaky:")


async def test_s6_explicit_and_generated_run_ids() -> None:
    flow = Flow("ids").node("a", const(1))
    r1 = await run(flow, run_id="given-id")
    r2 = await run(flow)
    r3 = await run(flow)
    assert r1.run_id == "given-id"
    assert isinstance(r2.run_id, str) and r2.run_id
    assert r2.run_id != r3.run_id


# -------------------------------------------------------------------- class nodes (§4, §12.6)


class Lifecycle(Node):
    log: ClassVar[list[str]] = []
    instances: ClassVar[list[Any]] = []
    fail_attempts: ClassVar[int] = 0  # exec fails on attempts <= this
    fallback_value: ClassVar[Any] = "fb-value"
    fallback_fails: ClassVar[bool] = False
    recover_raises: ClassVar[bool] = False

    async def prep(self, ctx: NodeContext) -> Any:
        type(self).instances.append(self)
        self.log.append("prep")
        return self.params.get("base", 0)

    async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
        self.log.append(f"exec{ctx.attempt}")
        if ctx.attempt <= self.fail_attempts:
            raise ValueError(f"exec failed on attempt {ctx.attempt}")
        return NodeResult(output=prepared * 10, action="done")

    async def fallback(self, error: Exception, ctx: NodeContext) -> Any:
        self.log.append("fallback")
        if self.fallback_fails:
            raise RuntimeError("fallback failed too")
        return self.fallback_value

    async def post(self, result: Any, ctx: NodeContext) -> Any:
        self.log.append("post")
        return result

    async def recover(self, error: Exception, ctx: NodeContext) -> None:
        self.log.append("recover")
        if self.recover_raises:
            raise RuntimeError("recover itself failed")


def lifecycle_class(**overrides: Any) -> type[Lifecycle]:
    attrs: dict[str, Any] = {"log": [], "instances": []}
    attrs.update(overrides)
    return type("LifecycleVariant", (Lifecycle,), attrs)


async def test_s4_class_node_success_lifecycle() -> None:
    cls = lifecycle_class()
    calls: list[Any] = []
    flow = (
        Flow("cls-ok")
        .node("cls", cls, params={"base": 7})
        .node("next", const("n", calls))
        .edge("cls", "next", action="done")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert cls.log == ["prep", "exec1", "post"]
    assert calls == [("next", 70)]
    assert result.context["cls"] == 70
    (instance,) = cls.instances
    assert instance.node_id == "cls"
    assert instance.params == {"base": 7}


async def test_s12_6_class_node_order_with_fallback() -> None:
    cls = lifecycle_class(fail_attempts=99)
    calls: list[Any] = []
    flow = (
        Flow("cls-fb")
        .node("cls", cls, max_retries=2)
        .node("next", const("n", calls))
        .edge("cls", "next")
    )
    result = await run(flow)
    assert cls.log == ["prep", "exec1", "exec2", "fallback", "post", "recover"]
    assert result.status == "completed", result.errors
    assert calls == [("next", "fb-value")]


async def test_s12_6_recover_runs_once_after_a_retried_error() -> None:
    cls = lifecycle_class(fail_attempts=1)
    flow = Flow("cls-retry").node("cls", cls, params={"base": 2}, max_retries=3)
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert cls.log == ["prep", "exec1", "exec2", "post", "recover"]
    assert result.context["cls"] == 20


async def test_s12_6_recover_runs_once_when_node_fails() -> None:
    cls = lifecycle_class(fail_attempts=99, fallback_fails=True)
    flow = Flow("cls-fail").node("cls", cls, max_retries=2)
    result = await run(flow)
    assert result.status == "failed"
    assert cls.log[:4] == ["prep", "exec1", "exec2", "fallback"]
    assert cls.log.count("recover") == 1
    assert cls.log[-1] == "recover"
    assert "post" not in cls.log
    assert [(e.node_id, e.type, e.message, e.attempt) for e in result.errors] == [
        ("cls", "RuntimeError", "fallback failed too", 2)]


async def test_s4_recover_errors_are_only_logged() -> None:
    cls = lifecycle_class(fail_attempts=1, recover_raises=True)
    flow = Flow("cls-recover-raises").node("cls", cls, params={"base": 1}, max_retries=2)
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert result.errors == []
    assert cls.log == ["prep", "exec1", "exec2", "post", "recover"]
    assert result.context["cls"] == 10


async def test_s12_6_fatal_error_in_exec_skips_fallback_but_runs_recover() -> None:
    class FatalExec(Lifecycle):
        log: ClassVar[list[str]] = []
        instances: ClassVar[list[Any]] = []

        async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
            self.log.append(f"exec{ctx.attempt}")
            raise FatalError("fatal in exec")

    result = await run(Flow("cls-fatal").node("cls", FatalExec, max_retries=3))
    assert result.status == "failed"
    assert FatalExec.log == ["prep", "exec1", "recover"]
    (err,) = errors_of(result, "cls")
    assert err.type == "FatalError"


async def test_s4_prep_is_not_retried() -> None:
    class BadPrep(Lifecycle):
        log: ClassVar[list[str]] = []
        instances: ClassVar[list[Any]] = []

        async def prep(self, ctx: NodeContext) -> Any:
            self.log.append("prep")
            raise ValueError("prep broke")

    result = await run(Flow("cls-prep").node("cls", BadPrep, max_retries=3))
    assert result.status == "failed"
    assert BadPrep.log.count("prep") == 1
    assert not any(entry.startswith("exec") for entry in BadPrep.log)
    assert BadPrep.log.count("recover") == 1
    assert [(e.node_id, e.type, e.message, e.attempt) for e in result.errors] == [
        ("cls", "ValueError", "prep broke", 1)]


async def test_s4_fresh_class_instance_per_execution() -> None:
    cls = lifecycle_class()
    flow = (
        Flow("cls-fresh")
        .node("one", cls, params={"base": 1})
        .node("two", cls, params={"base": 2})
        .edge("one", "two", action="done")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert len(cls.instances) == 2
    assert cls.instances[0] is not cls.instances[1]
    assert [(i.node_id, i.params) for i in cls.instances] == [
        ("one", {"base": 1}),
        ("two", {"base": 2}),
    ]
    assert result.context["one"] == 10
    assert result.context["two"] == 20


async def test_s4_class_node_default_prep_passes_input() -> None:
    seen: list[Any] = []

    class Echo(Node):
        async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
            seen.append(prepared)
            return prepared

    flow = Flow("echo").node("a", const({"v": 5})).node("echo", Echo).edge("a", "echo")
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert seen == [{"v": 5}]
    assert result.context["echo"] == {"v": 5}


# --------------------------------------------------------------------------- inputs (§4, §12.3)


async def test_s12_3_inputs_string_names_node_output() -> None:
    calls: list[Any] = []
    flow = (
        Flow("in-node")
        .node("x", const({"k": {"deep": 7}}))
        .node("mid", const("mid-out"))
        .node("y", const(None, calls), inputs="x")
        .edge("x", "mid")
        .edge("mid", "y")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("y", {"k": {"deep": 7}})]


async def test_s12_3_inputs_string_context_key_when_no_such_node() -> None:
    calls: list[Any] = []
    flow = Flow("in-ctx").node("y", const(None, calls), inputs="order_id")
    result = await run(flow, context={"order_id": 42})
    assert result.status == "completed", result.errors
    assert calls == [("y", 42)]


async def test_s12_3_inputs_dotted_path_into_node_output() -> None:
    calls: list[Any] = []
    flow = (
        Flow("in-dotted")
        .node("x", const({"k": {"deep": 7}}))
        .node("y", const(None, calls), inputs="x.k.deep")
        .edge("x", "y")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("y", 7)]


async def test_s12_3_inputs_dotted_path_into_context_key() -> None:
    calls: list[Any] = []
    flow = Flow("in-dotted-ctx").node("y", const(None, calls), inputs="cfg.a.b")
    result = await run(flow, context={"cfg": {"a": {"b": 3}}})
    assert result.status == "completed", result.errors
    assert calls == [("y", 3)]


async def test_s12_3_inputs_dict_builds_dict() -> None:
    calls: list[Any] = []
    flow = (
        Flow("in-dict")
        .node("x", const({"k": "kv", "other": 2}))
        .node("y", const(None, calls), inputs={"a": "x.k", "b": "x", "c": "plain"})
        .edge("x", "y")
    )
    result = await run(flow, context={"plain": "p"})
    assert result.status == "completed", result.errors
    assert calls == [("y", {"a": "kv", "b": {"k": "kv", "other": 2}, "c": "p"})]


async def test_s12_3_inputs_underscore_key_is_read_verbatim() -> None:
    calls: list[Any] = []

    async def writer(ctx: NodeContext) -> Any:
        await ctx.context.set("_cfg.v", "verbatim")
        await ctx.context.set("_cfg", {"v": "split"})
        return {"w": 1}

    flow = (
        Flow("in-underscore")
        .node("writer", writer)
        .node("y", const(None, calls), inputs={"a": "_cfg.v", "b": "_outputs.writer"})
        .edge("writer", "y")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("y", {"a": "verbatim", "b": {"w": 1}})]


async def test_s4_inputs_take_precedence_over_edge_input() -> None:
    calls: list[Any] = []
    flow = (
        Flow("in-precedence")
        .node("a", const("from-edge"))
        .node("b", const(None, calls), inputs="k")
        .edge("a", "b")
    )
    result = await run(flow, context={"k": "from-ctx"})
    assert result.status == "completed", result.errors
    assert calls == [("b", "from-ctx")]


# =========================================================================== §5 context


async def test_s12_2_output_stored_under_outputs_key_and_node_id() -> None:
    flow = (
        Flow("outkeys")
        .node("alpha", const({"n": 1}))
        .node("beta", const([1]))
        .edge("alpha", "beta")
    )
    result = await run(flow, context={"seed": 1})
    assert result.status == "completed", result.errors
    assert result.context["_outputs.alpha"] == {"n": 1}
    assert result.context["alpha"] == {"n": 1}
    assert result.context["_outputs.beta"] == [1]
    assert result.context["beta"] == [1]
    assert result.context["seed"] == 1


async def test_s5_context_api() -> None:
    seen: dict[str, Any] = {}

    async def node(ctx: NodeContext) -> Any:
        c = ctx.context
        seen["initial"] = await c.get("initial")
        seen["missing"] = await c.get("missing")
        seen["missing_default"] = await c.get("missing", "dflt")
        await c.set("k1", {"a": [1, 2]})
        await c.set("gone", 1)
        seen["has_k1"] = await c.has("k1")
        seen["has_missing"] = await c.has("missing")
        seen["get_k1"] = await c.get("k1")
        seen["del1"] = await c.delete("gone")
        seen["del2"] = await c.delete("gone")
        seen["has_gone"] = await c.has("gone")
        seen["dict"] = await c.to_dict()
        return None

    flow = Flow("ctxapi").node("n", node)
    result = await run(flow, context={"initial": "v"})
    assert result.status == "completed", result.errors
    assert seen["initial"] == "v"
    assert seen["missing"] is None
    assert seen["missing_default"] == "dflt"
    assert seen["has_k1"] is True
    assert seen["has_missing"] is False
    assert seen["get_k1"] == {"a": [1, 2]}
    assert seen["del1"] is True
    assert seen["del2"] is False
    assert seen["has_gone"] is False
    assert isinstance(seen["dict"], dict)
    assert seen["dict"]["initial"] == "v"
    assert seen["dict"]["k1"] == {"a": [1, 2]}
    assert "gone" not in seen["dict"]
    assert result.context["k1"] == {"a": [1, 2]}
    assert "gone" not in result.context


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Money(msgspec.Struct):
    amount: int
    currency: str


async def test_s5_encodable_values_are_accepted() -> None:
    async def node(ctx: NodeContext) -> Any:
        await ctx.context.set("when", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
        await ctx.context.set("uid", uuid.UUID(int=5))
        await ctx.context.set("price", Decimal("1.25"))
        await ctx.context.set("point", Point(1, 2))
        await ctx.context.set("money", Money(3, "EUR"))
        await ctx.context.set("nested", {"l": [1, 2.5, "s", True, None]})
        return "ok"

    result = await run(Flow("encodable").node("n", node))
    assert result.status == "completed", result.errors
    for key in ("when", "uid", "price", "point", "money", "nested"):
        assert key in result.context
    assert result.context["nested"] == {"l": [1, 2.5, "s", True, None]}


class Secretive:
    def __repr__(self) -> str:
        return "TOPSECRET-4242"

    __str__ = __repr__


async def test_s5_non_encodable_value_raises_context_error_at_set() -> None:
    seen: dict[str, Any] = {}

    async def node(ctx: NodeContext) -> Any:
        try:
            await ctx.context.set("bad_value_key", Secretive())
        except ContextError as exc:
            seen["error"] = exc
        seen["has"] = await ctx.context.has("bad_value_key")
        return "survived"

    result = await run(Flow("ctxerr-caught").node("n", node))
    assert result.status == "completed", result.errors
    err = seen["error"]
    assert isinstance(err, FlowcraftError)
    assert "bad_value_key" in str(err)
    assert "TOPSECRET-4242" not in str(err)
    assert seen["has"] is False


async def test_s5_non_encodable_value_fails_run_with_context_error() -> None:
    async def writer(ctx: NodeContext) -> Any:
        await ctx.context.set("fine_key", 1)
        await ctx.context.set("bad_value_key", Secretive())
        return "unreachable"

    result = await run(Flow("ctxerr").node("writer", writer), context={"seed": 1})
    assert result.status == "failed"
    (err,) = errors_of(result, "writer")
    assert err.type == "ContextError"
    assert "bad_value_key" in err.message
    assert "TOPSECRET-4242" not in err.message
    assert result.context["seed"] == 1


async def test_s5_non_encodable_output_fails_node_with_context_error() -> None:
    result = await run(Flow("ctxerr-out").node("objnode", const(Secretive())))
    assert result.status == "failed"
    (err,) = errors_of(result, "objnode")
    assert err.type == "ContextError"
    assert "TOPSECRET-4242" not in err.message


async def test_s11_context_error_message_names_run_node_and_key() -> None:
    seen: list[Exception] = []

    async def writer(ctx: NodeContext) -> Any:
        try:
            await ctx.context.set("bad_value_key", Secretive())
        except ContextError as exc:
            seen.append(exc)
        return None

    result = await run(Flow("ctxmsg").node("writer_node", writer), run_id="run-ctxmsg-77")
    assert result.status == "completed", result.errors
    (err,) = seen
    msg = str(err)
    assert "bad_value_key" in msg
    assert "writer_node" in msg, msg
    assert "run-ctxmsg-77" in msg, msg
    assert "TOPSECRET-4242" not in msg


async def test_s6_caller_context_dict_is_not_mutated() -> None:
    async def writer(ctx: NodeContext) -> Any:
        await ctx.context.set("added", 1)
        await ctx.context.delete("initial")
        return "w"

    initial = {"initial": {"v": 1}}
    result = await FlowRuntime().run(Flow("nomutate").node("w", writer), context=initial)
    assert result.status == "completed", result.errors
    assert initial == {"initial": {"v": 1}}
    assert result.context["added"] == 1
    assert "initial" not in result.context


async def test_s6_run_without_context_argument() -> None:
    result = await FlowRuntime().run(Flow("noctx").node("a", const(5)))
    assert result.status == "completed", result.errors
    assert result.context["a"] == 5


# =========================================================================== §6 routing


@pytest.mark.parametrize("via", ["action", "condition"])
async def test_s6_if_else_merging_into_all_join_runs_join_once_with_taken_branch(via: str) -> None:
    calls: list[Any] = []

    async def decide(ctx: NodeContext) -> Any:
        return NodeResult(output=5, action="left" if via == "action" else None)

    flow = (
        Flow("ifelse")
        .node("decide", decide)
        .node("left", const("L", calls))
        .node("right", const("R", calls))
        .node("join", const("J", calls))
        .node("after", const("A", calls))
    )
    if via == "action":
        flow = flow.edge("decide", "left", action="left").edge("decide", "right", action="right")
    else:
        flow = flow.edge("decide", "left", condition="result.output > 0").edge(
            "decide", "right", condition="result.output <= 0"
        )
    flow = flow.edge("left", "join").edge("right", "join").edge("join", "after")
    bus = Bus()
    result = await run(flow, event_bus=bus)
    assert result.status == "completed", result.errors
    assert calls == [("left", 5), ("join", {"left": "L"}), ("after", "J")]
    assert "right" not in result.context
    assert [e.node_id for e in bus.of("node:skipped")] == ["right"]


async def test_s6_routing_unmatched_action_runs_no_action_successor() -> None:
    calls: list[Any] = []

    async def start(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=1, action="zzz")

    flow = (
        Flow("unmatched")
        .node("start", start)
        .node("a", const("a", calls))
        .node("b", const("b", calls))
        .edge("start", "a", action="a")
        .edge("start", "b", action="b")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == []
    assert "a" not in result.context and "b" not in result.context


async def test_s6_routing_unmatched_action_takes_actionless_edges() -> None:
    calls: list[Any] = []

    async def start(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=1, action="zzz")

    flow = (
        Flow("default-edge")
        .node("start", start)
        .node("a", const("a", calls))
        .node("d", const("d", calls))
        .edge("start", "a", action="a")
        .edge("start", "d")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("d", 1)]


async def test_s6_routing_matched_action_skips_actionless_edges() -> None:
    calls: list[Any] = []

    async def start(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=1, action="a")

    flow = (
        Flow("matched")
        .node("start", start)
        .node("a", const("a", calls))
        .node("d", const("d", calls))
        .edge("start", "a", action="a")
        .edge("start", "d")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("a", 1)]


async def test_s6_routing_no_action_takes_only_actionless_edges() -> None:
    calls: list[Any] = []
    flow = (
        Flow("noaction")
        .node("start", const(1))
        .node("a", const("a", calls))
        .node("d", const("d", calls))
        .edge("start", "a", action="a")
        .edge("start", "d")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("d", 1)]


async def test_s6_routing_action_edge_with_false_condition_falls_back_to_actionless() -> None:
    calls: list[Any] = []

    async def start(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=1, action="go")

    flow = (
        Flow("falsecond")
        .node("start", start)
        .node("x", const("x", calls))
        .node("y", const("y", calls))
        .edge("start", "x", action="go", condition="result.output > 100")
        .edge("start", "y")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("y", 1)]


async def test_s6_routing_multiple_matching_edges_all_taken() -> None:
    calls: list[Any] = []

    async def start(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=1, action="go")

    flow = (
        Flow("fanout")
        .node("start", start)
        .node("x", const("x", calls))
        .node("y", const("y", calls))
        .node("z", const("z", calls))
        .edge("start", "x", action="go")
        .edge("start", "y", action="go")
        .edge("start", "z", action="other")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert sorted(calls) == [("x", 1), ("y", 1)]


@pytest.mark.parametrize("join", ["all", "any"])
async def test_s6_join_with_all_inputs_skipped_is_skipped(join: str) -> None:
    calls: list[Any] = []

    async def start(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=1, action="nothing")

    flow = (
        Flow("allskipped")
        .node("start", start)
        .node("a", const("a", calls))
        .node("b", const("b", calls))
        .node("j", const("j", calls), join=join)
        .node("after", const("after", calls))
        .edge("start", "a", action="a")
        .edge("start", "b", action="b")
        .edge("a", "j")
        .edge("b", "j")
        .edge("j", "after")
    )
    bus = Bus()
    result = await run(flow, event_bus=bus)
    assert result.status == "completed", result.errors
    assert calls == []
    assert sorted(e.node_id for e in bus.of("node:skipped")) == ["a", "after", "b", "j"]


# =========================================================================== §6 joins


async def test_s6_any_join_runs_exactly_once_when_three_predecessors_succeed() -> None:
    calls: list[Any] = []
    flow = (
        Flow("anyjoin")
        .node("start", const(0))
        .node("p1", sleeper(0.0, "one"))
        .node("p2", sleeper(0.02, "two"))
        .node("p3", sleeper(0.04, "three"))
        .node("j", const("J", calls), join="any")
        .edge("start", "p1")
        .edge("start", "p2")
        .edge("start", "p3")
        .edge("p1", "j")
        .edge("p2", "j")
        .edge("p3", "j")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert len(calls) == 1
    assert result.context["p3"] == "three"  # the run waited for every predecessor
    assert result.context["j"] == "J"


async def test_s6_any_join_runs_once_when_first_edge_skipped_and_second_taken() -> None:
    calls: list[Any] = []

    async def decide(ctx: NodeContext) -> NodeResult:
        return NodeResult(output="d", action="second")

    flow = (
        Flow("anyskip")
        .node("decide", decide)
        .node("first", const("one"))
        .node("second", sleeper(0.02, "two"))
        .node("j", const("J", calls), join="any")
        .edge("decide", "first", action="first")
        .edge("decide", "second", action="second")
        .edge("first", "j")
        .edge("second", "j")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert len(calls) == 1
    assert "first" not in result.context


async def test_s6_all_join_input_ordered_as_edges_declared_not_finish_order() -> None:
    calls: list[Any] = []
    flow = (
        Flow("joinorder")
        .node("start", const(0))
        .node("alpha", sleeper(0.0, "fast"))
        .node("mid", sleeper(0.03, "medium"))
        .node("zeta", sleeper(0.08, "slow"))
        .node("j", const("J", calls))
        .edge("start", "alpha")
        .edge("start", "mid")
        .edge("start", "zeta")
        .edge("zeta", "j")  # declared first, finishes last
        .edge("alpha", "j")
        .edge("mid", "j")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert len(calls) == 1
    _, join_input = calls[0]
    assert join_input == {"zeta": "slow", "alpha": "fast", "mid": "medium"}
    assert list(join_input.keys()) == ["zeta", "alpha", "mid"]


async def test_s6_join_input_applies_edge_transforms() -> None:
    calls: list[Any] = []
    flow = (
        Flow("jointransform")
        .node("start", const(0))
        .node("a", const(2))
        .node("b", const(3))
        .node("j", const("J", calls))
        .edge("start", "a")
        .edge("start", "b")
        .edge("a", "j", transform="input * 10")
        .edge("b", "j")
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert calls == [("j", {"a": 20, "b": 3})]


# =========================================================================== §6 failure


async def test_s6_failure_poisons_all_join() -> None:
    calls: list[Any] = []
    flow = (
        Flow("poison")
        .node("start", const(0))
        .node("ok", const("fine"))
        .node("bad", failing("bad exploded"))
        .node("j", const("J", calls))
        .edge("start", "ok")
        .edge("start", "bad")
        .edge("ok", "j")
        .edge("bad", "j")
    )
    result = await run(flow)
    assert result.status == "failed"
    assert calls == []
    (err,) = result.errors
    assert err.node_id == "bad"
    assert err.message == "bad exploded"
    assert err.type == "ValueError"
    assert err.attempt == 1


async def test_s6_failing_predecessor_of_any_join_prevents_it_even_if_other_succeeds() -> None:
    calls: list[Any] = []
    ok_done: list[bool] = []

    async def ok(ctx: NodeContext) -> Any:
        await asyncio.sleep(0.08)
        ok_done.append(True)
        return "fine"

    flow = (
        Flow("anypoison")
        .node("start", const(0))
        .node("ok", ok)
        .node("bad", failing("bad exploded"))
        .node("j", const("J", calls), join="any")
        .edge("start", "ok")
        .edge("start", "bad")
        .edge("ok", "j")
        .edge("bad", "j")
    )
    result = await run(flow)
    assert result.status == "failed"
    assert calls == []
    assert ok_done == [True]  # the running sibling finished
    assert [e.node_id for e in result.errors] == ["bad"]


async def test_s6_status_never_flips_from_failed_to_completed() -> None:
    log: list[str] = []
    calls: list[Any] = []
    bus = Bus()

    async def bad(ctx: NodeContext) -> Any:
        await asyncio.sleep(0.03)  # fail while "slow" is already running
        raise ValueError("early failure")

    flow = (
        Flow("noflip")
        .node("start", const(0))
        .node("bad", bad)
        .node("slow", sleeper(0.15, "slow-out", log))
        .node("after_slow", const("x", calls))
        .node("after_after", const("y", calls))
        .edge("start", "bad")
        .edge("start", "slow")
        .edge("slow", "after_slow")
        .edge("after_slow", "after_after")
    )
    result = await run(flow, event_bus=bus)
    assert result.status == "failed"
    assert log == ["start:slow", "end:slow"]  # already running: finished before run returned
    assert calls == []
    started = [e.node_id for e in bus.of("node:start")]
    assert "after_slow" not in started
    assert "after_after" not in started
    assert [e.node_id for e in result.errors] == ["bad"]
    finishes = bus.of("workflow:finish")
    assert len(finishes) == 1


async def test_s6_error_reports_exception_class_for_plain_exception() -> None:
    result = await run(Flow("plainerr").node("kaboom", failing("kaboom happened")))
    assert result.status == "failed"
    (err,) = result.errors
    assert isinstance(err, WorkflowError)
    assert err.node_id == "kaboom"
    assert "kaboom happened" in err.message
    assert err.attempt == 1


# =========================================================================== §6 retries, timeouts


async def test_s6_retry_delay_and_backoff_are_honoured() -> None:
    times: list[float] = []

    async def flaky(ctx: NodeContext) -> Any:
        times.append(time.monotonic())
        if ctx.attempt < 3:
            raise ValueError("transient")
        return "finally"

    flow = Flow("backoff").node("flaky", flaky, max_retries=3, retry_delay=100, backoff=2)
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert result.context["flaky"] == "finally"
    assert len(times) == 3
    gap1 = times[1] - times[0]
    gap2 = times[2] - times[1]
    assert 0.09 <= gap1 < 1.0, gap1
    assert 0.19 <= gap2 < 1.0, gap2


async def test_s6_retry_delay_via_config_backoff() -> None:
    from flowcraft import NodeConfig

    times: list[float] = []

    async def flaky(ctx: NodeContext) -> Any:
        times.append(time.monotonic())
        if ctx.attempt < 3:
            raise ValueError("transient")
        return "ok"

    cfg = NodeConfig(max_retries=3, retry_delay=50, backoff=3.0)
    result = await run(Flow("backoff-cfg").node("flaky", flaky, config=cfg))
    assert result.status == "completed", result.errors
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert 0.045 <= gaps[0] < 1.0, gaps
    assert 0.14 <= gaps[1] < 1.0, gaps


async def test_s6_retries_exhausted_fail_with_last_attempt() -> None:
    attempts: list[int] = []
    flow = Flow("exhaust").node("always", failing("always fails", attempts), max_retries=3)
    result = await run(flow)
    assert result.status == "failed"
    assert attempts == [1, 2, 3]
    assert [(e.node_id, e.type, e.message, e.attempt) for e in result.errors] == [
        ("always", "ValueError", "always fails", 3)]


async def test_s6_timeout_fails_attempt_with_node_timeout_error() -> None:
    cancelled: list[bool] = []

    async def slow(ctx: NodeContext) -> Any:
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "too late"

    flow = Flow("timeout").node("slow", slow, timeout=50)
    t0 = time.monotonic()
    result = await run(flow)
    elapsed = time.monotonic() - t0
    assert elapsed < 0.5, elapsed
    assert result.status == "failed"
    (err,) = errors_of(result, "slow")
    assert err.type == "NodeTimeoutError"
    assert err.attempt == 1
    assert cancelled == [True]
    assert "slow" not in result.context


async def test_s6_timeout_on_sync_node() -> None:
    def blocking(ctx: NodeContext) -> Any:
        time.sleep(0.6)
        return "too late"

    t0 = time.monotonic()
    result = await run(Flow("sync-timeout").node("blocking", blocking, timeout=50))
    assert time.monotonic() - t0 < 2
    assert result.status == "failed"
    (err,) = errors_of(result, "blocking")
    assert err.type == "NodeTimeoutError"
    assert "blocking" not in result.context


async def test_s6_timeout_counts_as_failed_attempt_and_retry_succeeds() -> None:
    attempts: list[int] = []

    async def sometimes_slow(ctx: NodeContext) -> Any:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(1.0)
        return f"attempt-{ctx.attempt}"

    flow = Flow("timeout-retry").node("n", sometimes_slow, timeout=50, max_retries=2)
    t0 = time.monotonic()
    result = await run(flow)
    assert time.monotonic() - t0 < 0.5
    assert result.status == "completed", result.errors
    assert attempts == [1, 2]
    assert result.context["n"] == "attempt-2"


async def test_s6_fatal_error_stops_retries_and_skips_fallback() -> None:
    attempts: list[int] = []
    fb_calls: list[Any] = []

    async def fatal(ctx: NodeContext) -> Any:
        attempts.append(ctx.attempt)
        raise FatalError("do not retry this")

    flow = (
        Flow("fatal")
        .node("fatal", fatal, max_retries=3, retry_delay=10, fallback="fb")
        .node("fb", const("fb-out", fb_calls))
    )
    result = await run(flow)
    assert result.status == "failed"
    assert attempts == [1]
    assert fb_calls == []
    (err,) = errors_of(result, "fatal")
    assert err.type == "FatalError"
    assert "do not retry this" in err.message
    assert err.attempt == 1


async def test_s6_fallback_output_flows_along_failed_nodes_edges() -> None:
    attempts: list[int] = []
    calls: list[Any] = []
    fb_calls: list[Any] = []
    bus = Bus()
    flow = (
        Flow("fallback")
        .node("start", const("s"))
        .node("primary", failing("primary broke", attempts), max_retries=2, fallback="fb")
        .node("fb", const("fb-out", fb_calls))
        .node("after", const("after-out", calls))
        .edge("start", "primary")
        .edge("primary", "after")
    )
    result = await run(flow, event_bus=bus)
    assert result.status == "completed", result.errors
    assert attempts == [1, 2]
    assert len(fb_calls) == 1
    assert calls == [("after", "fb-out")]
    assert result.context["after"] == "after-out"
    assert [e.node_id for e in bus.of("node:fallback")] == ["primary"]


async def test_s12_7_fallback_node_is_never_a_start_node() -> None:
    fb_calls: list[Any] = []
    flow = (
        Flow("fb-unused")
        .node("primary", const("p"), fallback="fb")
        .node("fb", const("fb-out", fb_calls))
    )
    result = await run(flow)
    assert result.status == "completed", result.errors
    assert fb_calls == []
    assert "fb" not in result.context
    assert result.context["primary"] == "p"


async def test_s6_failed_fallback_fails_the_run() -> None:
    calls: list[Any] = []
    flow = (
        Flow("fb-fails")
        .node("primary", failing("primary broke"), fallback="fb")
        .node("fb", failing("fallback broke"))
        .node("after", const("a", calls))
        .edge("primary", "after")
    )
    result = await run(flow)
    assert result.status == "failed"
    assert calls == []
    # one error, for the node that failed, carrying what its fallback raised
    assert [(e.node_id, e.type, e.message, e.attempt) for e in result.errors] == [
        ("primary", "ValueError", "fallback broke", 1)]


# =========================================================================== §7 / §12.8 edges


async def test_s12_8_conditions_see_result_output_action_and_context() -> None:
    calls: list[Any] = []

    async def a(ctx: NodeContext) -> NodeResult:
        await ctx.context.set("flag", True)
        return NodeResult(output={"n": 5}, action="go")

    flow = (
        Flow("conds")
        .node("a", a)
        .node("b", const("b", calls))
        .node("c", const("c", calls))
        .node("d", const("d", calls))
        .node("e", const("e", calls))
        .edge("a", "b", condition="result.output.n > 3 && flag == true")
        .edge("a", "c", condition="result.action === 'go' and a.n == 5 and seed == 'S'")
        .edge("a", "d", condition="result.output.n > 100")
        .edge("a", "e", condition="missing_name.deeper?.deepest == null")
    )
    result = await run(flow, context={"seed": "S"})
    assert result.status == "completed", result.errors
    assert sorted(c[0] for c in calls) == ["b", "c", "e"]


async def test_s7_edge_transform_changes_what_flows() -> None:
    calls: list[Any] = []
    flow = (
        Flow("transform")
        .node("a", const(21))
        .node("b", const("b", calls))
        .node("c", const("c", calls))
        .edge("a", "b", transform="input * 2")
        .edge("a", "c", transform="input * context.factor")
    )
    result = await run(flow, context={"factor": 3})
    assert result.status == "completed", result.errors
    assert sorted(calls) == [("b", 42), ("c", 63)]
    assert result.context["a"] == 21  # the stored output is not transformed


async def test_s7_custom_evaluator_is_used() -> None:
    seen: list[str] = []

    class Evaluator:
        def evaluate(self, expression: str, scope: Any) -> Any:
            seen.append(expression)
            return expression == "pick_b"

    calls: list[Any] = []
    flow = (
        Flow("evaluator")
        .node("a", const(1))
        .node("b", const("b", calls))
        .node("c", const("c", calls))
        .edge("a", "b", condition="pick_b")  # built-in language: missing name -> None (false)
        .edge("a", "c", condition="pick_c")
    )
    result = await FlowRuntime(evaluator=Evaluator()).run(flow, context={})
    assert result.status == "completed", result.errors
    assert calls == [("b", 1)]
    assert {"pick_b", "pick_c"} <= set(seen)


# =========================================================================== §6 middleware


async def test_s6_middleware_before_and_after_called_in_order() -> None:
    log: list[Any] = []

    class Recorder:
        async def before_node(self, ctx: Any, node_id: str) -> None:
            log.append(("before", node_id))

        async def after_node(self, ctx: Any, node_id: str, result: Any, error: Any) -> None:
            log.append(("after", node_id, getattr(result, "output", result), error is None))

    flow = Flow("mw").node("a", const(1)).node("b", const(2)).edge("a", "b")
    result = await run(flow, middleware=[Recorder()])
    assert result.status == "completed", result.errors
    assert log == [
        ("before", "a"),
        ("after", "a", 1, True),
        ("before", "b"),
        ("after", "b", 2, True),
    ]


async def test_s6_middleware_after_node_receives_error() -> None:
    log: list[Any] = []

    class Recorder:
        async def after_node(self, ctx: Any, node_id: str, result: Any, error: Any) -> None:
            log.append((node_id, error is not None))

    result = await run(Flow("mw-err").node("bad", failing("x")), middleware=[Recorder()])
    assert result.status == "failed"
    assert log == [("bad", True)]


async def test_s6_middleware_around_nests_first_outermost() -> None:
    log: list[str] = []

    class Around:
        def __init__(self, name: str) -> None:
            self.name = name

        async def around_node(self, ctx: Any, node_id: str, call_next: Any) -> Any:
            log.append(f"{self.name}-enter-{node_id}")
            out = await call_next()
            log.append(f"{self.name}-exit-{node_id}")
            return out

    async def body(ctx: NodeContext) -> Any:
        log.append("body")
        return "v"

    result = await run(Flow("around").node("n", body), middleware=[Around("m1"), Around("m2")])
    assert result.status == "completed", result.errors
    assert log == ["m1-enter-n", "m2-enter-n", "body", "m2-exit-n", "m1-exit-n"]
    assert result.context["n"] == "v"


async def test_s12_9_around_middleware_rescues_failing_node() -> None:
    attempts: list[int] = []
    enters: list[str] = []
    calls: list[Any] = []

    class Rescue:
        async def around_node(self, ctx: Any, node_id: str, call_next: Any) -> Any:
            enters.append(node_id)
            try:
                return await call_next()
            except Exception:
                return NodeResult(output="rescued")

    flow = (
        Flow("rescue")
        .node("bad", failing("broken", attempts), max_retries=2)
        .node("after", const("a", calls))
        .edge("bad", "after")
    )
    result = await run(flow, middleware=[Rescue()])
    assert result.status == "completed"
    assert result.errors == []
    assert attempts == [1, 2]  # call_next ran all attempts
    assert enters == ["bad", "after"]  # around runs once per node execution
    assert calls == [("after", "rescued")]
    assert result.context["bad"] == "rescued"


# =========================================================================== §6 events


async def test_s6_events_lifecycle_and_common_fields() -> None:
    bus = Bus()
    flow = Flow("events").node("a", const({"k": 1})).node("b", const(2)).edge("a", "b")
    result = await run(flow, event_bus=bus)
    assert result.status == "completed", result.errors
    types = bus.types()
    assert types[0] == "workflow:start"
    assert types[-1] == "workflow:finish"
    assert types.count("workflow:start") == 1
    assert types.count("workflow:finish") == 1
    assert [e.node_id for e in bus.of("node:start")] == ["a", "b"]
    assert [e.node_id for e in bus.of("node:finish")] == ["a", "b"]
    assert "edge:evaluate" in types
    assert types.index("node:finish") < types.index("edge:evaluate")
    for event in bus.events:
        assert isinstance(event, msgspec.Struct)
        assert isinstance(event.type, str)
        assert event.run_id == result.run_id
        assert event.blueprint_id == "events"
        assert event.timestamp is not None
    fin_a = bus.of("node:finish")[0]
    assert fin_a.output == {"k": 1}
    assert fin_a.action is None


async def test_s6_events_retry_error_skipped_fallback() -> None:
    bus = Bus()

    async def decide(ctx: NodeContext) -> NodeResult:
        return NodeResult(output=0, action="left")

    flow = (
        Flow("events2")
        .node("decide", decide)
        .node("left", failing("left broke"), max_retries=3)
        .node("right", const("r"))
        .edge("decide", "left", action="left")
        .edge("decide", "right", action="right")
    )
    result = await run(flow, event_bus=bus)
    assert result.status == "failed"
    retries = bus.of("node:retry")
    assert [e.node_id for e in retries] == ["left", "left"]
    # a retry event carries the number of the attempt about to start (attempt 1 failed first)
    assert [e.attempt for e in retries] == [2, 3]
    assert [e.message for e in retries] == ["left broke", "left broke"]
    (error_event,) = bus.of("node:error")
    assert error_event.node_id == "left"
    assert isinstance(error_event.error, WorkflowError)
    assert error_event.error.node_id == "left"
    assert "left broke" in error_event.error.message
    assert [e.node_id for e in bus.of("node:skipped")] == ["right"]
    assert bus.types()[-1] == "workflow:finish"


async def test_s12_4_context_change_event() -> None:
    bus = Bus()

    async def writer(ctx: NodeContext) -> Any:
        await ctx.context.set("user_key", 1)
        return None

    result = await run(Flow("ctxevents").node("writer", writer), event_bus=bus)
    assert result.status == "completed", result.errors
    changes = [e for e in bus.of("context:change") if e.key == "user_key"]
    assert len(changes) == 1
    assert changes[0].node_id == "writer"
    assert isinstance(changes[0].op, str) and changes[0].op


async def test_s6_plain_callable_event_bus() -> None:
    events: list[Any] = []
    result = await run(Flow("callable-bus").node("a", const(1)), event_bus=events.append)
    assert result.status == "completed", result.errors
    types = [e.type for e in events]
    assert types[0] == "workflow:start"
    assert types[-1] == "workflow:finish"
    assert "node:finish" in types


async def test_s10_event_recorder_helpers() -> None:
    rec = EventRecorder()
    flow = (
        Flow("recorder")
        .node("first", const(1))
        .node("second", const(2))
        .node("third", const(3))
        .edge("first", "second")
        .edge("second", "third")
    )
    result = await FlowRuntime(event_bus=rec).run(flow, context={})
    assert result.status == "completed", result.errors
    types = rec.types()
    assert types[0] == "workflow:start"
    assert types[-1] == "workflow:finish"
    finishes = rec.of("node:finish")
    assert [e.node_id for e in finishes] == ["first", "second", "third"]
    assert all(e.type == "node:finish" for e in finishes)
    assert rec.node_order() == ["first", "second", "third"]


# =========================================================================== §6 cancellation


def slow_node(started: asyncio.Event, cancelled: list[bool]) -> Any:
    async def node(ctx: NodeContext) -> Any:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    return node


async def test_s6_runtime_cancel_from_another_task() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def writer(ctx: NodeContext) -> Any:
        await ctx.context.set("written", "yes")
        return "w"

    flow = (
        Flow("cancel")
        .node("writer", writer)
        .node("slow", slow_node(started, cancelled))
        .edge("writer", "slow")
    )
    runtime = FlowRuntime()

    async def canceller() -> None:
        await asyncio.wait_for(started.wait(), 2)
        maybe = runtime.cancel("cancel-run-1")
        if inspect.isawaitable(maybe):
            await maybe

    t0 = time.monotonic()
    task = asyncio.create_task(canceller())
    result = await runtime.run(flow, context={"seed": 1}, run_id="cancel-run-1")
    await task
    assert time.monotonic() - t0 < 2
    assert result.status == "cancelled"
    assert cancelled == [True]
    assert result.context["written"] == "yes"
    assert result.context["writer"] == "w"
    assert result.context["seed"] == 1
    assert "slow" not in result.context


async def test_s6_wait_for_timeout_cancels_running_node() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []
    flow = Flow("waitfor").node("slow", slow_node(started, cancelled))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(FlowRuntime().run(flow, context={}), 0.1)
    assert time.monotonic() - t0 < 1
    assert started.is_set()
    assert cancelled == [True]


async def test_s6_anyio_cancel_scope_cancels_running_node() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []
    flow = Flow("scope").node("slow", slow_node(started, cancelled))
    t0 = time.monotonic()
    with anyio.move_on_after(0.1) as scope:
        await FlowRuntime().run(flow, context={})
    assert scope.cancelled_caught
    assert time.monotonic() - t0 < 1
    assert cancelled == [True]


# =========================================================================== §6 concurrency


@pytest.mark.parametrize("kwargs", [{}, {"concurrency": None}])
async def test_s6_unbounded_concurrency_runs_four_nodes_at_once(kwargs: dict[str, Any]) -> None:
    barrier = asyncio.Barrier(4)

    async def meet(ctx: NodeContext) -> Any:
        await asyncio.wait_for(barrier.wait(), 2)
        return ctx.node_id

    flow = Flow("barrier").node("start", const(0))
    for i in range(4):
        flow = flow.node(f"p{i}", meet).edge("start", f"p{i}")
    t0 = time.monotonic()
    result = await run(flow, **kwargs)
    assert time.monotonic() - t0 < 1.5
    assert result.status == "completed", result.errors
    assert [result.context[f"p{i}"] for i in range(4)] == ["p0", "p1", "p2", "p3"]


async def test_s6_concurrency_limit_bounds_parallel_nodes() -> None:
    running = 0
    peak = 0
    done: list[str] = []

    async def work(ctx: NodeContext) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.04)
        finally:
            running -= 1
        done.append(ctx.node_id)
        return 1

    flow = Flow("bounded")
    for i in range(6):
        flow = flow.node(f"w{i}", work)
    result = await run(flow, concurrency=2)
    assert result.status == "completed", result.errors
    assert sorted(done) == [f"w{i}" for i in range(6)]
    assert peak == 2


# =========================================================================== §6 results


async def test_s6_same_flow_run_twice_gives_equal_results() -> None:
    async def jitter(ctx: NodeContext) -> Any:
        await asyncio.sleep(random.uniform(0, 0.02))
        await ctx.context.set(f"seen_{ctx.node_id}", ctx.input)
        return ctx.node_id.upper()

    flow = Flow("determinism").node("start", const({"v": 1}))
    for name in ("c", "a", "b"):
        flow = flow.node(name, jitter).edge("start", name)
    flow = flow.node("join", jitter)
    for name in ("c", "a", "b"):
        flow = flow.edge(name, "join")
    r1 = await run(flow, context={"in": 1})
    r2 = await run(flow, context={"in": 1})
    assert r1.status == r2.status == "completed"
    assert user_keys(r1.context) == user_keys(r2.context)
    assert r1.context["seen_join"] == {"c": "C", "a": "A", "b": "B"}
    assert list(r1.context["seen_join"]) == list(r2.context["seen_join"]) == ["c", "a", "b"]


async def test_s6_concurrent_runs_on_one_runtime_are_isolated() -> None:
    async def echo(ctx: NodeContext) -> Any:
        value = await ctx.context.get("value")
        await asyncio.sleep(0.02)
        await ctx.context.set("echo", value)
        return value

    flow = Flow("isolated").node("a", echo).node("b", echo).edge("a", "b")
    runtime = FlowRuntime()
    results = await asyncio.gather(
        *(runtime.run(flow, context={"value": i}, run_id=f"iso-{i}") for i in range(5))
    )
    for i, result in enumerate(results):
        assert result.status == "completed", result.errors
        assert result.run_id == f"iso-{i}"
        assert result.context["echo"] == i
        assert result.context["b"] == i


async def test_s6_runtime_runs_blueprint_with_registry() -> None:
    async def double(ctx: NodeContext) -> Any:
        return ctx.input * 2

    bp = load_blueprint(
        {
            "id": "bp-run",
            "nodes": [
                {"id": "src", "uses": "source", "inputs": "n"},
                {"id": "dbl", "uses": "double"},
            ],
            "edges": [{"source": "src", "target": "dbl"}],
        }
    )

    async def source(ctx: NodeContext) -> Any:
        return ctx.input

    before = bp.to_json()
    result = await FlowRuntime(registry={"source": source, "double": double}).run(
        bp, context={"n": 4}
    )
    assert result.status == "completed", result.errors
    assert result.context["dbl"] == 8
    assert bp.to_json() == before  # §2: the runtime never mutates a blueprint


async def test_s6_runtime_runs_flow_blueprint_with_flow_registry() -> None:
    flow = Flow("via-bp").node("a", const(1)).node("b", const(2)).edge("a", "b")
    bp = flow.to_blueprint()
    result = await FlowRuntime(registry=flow.registry).run(bp, context={})
    assert result.status == "completed", result.errors
    assert result.context["b"] == 2


async def test_s6_result_context_present_for_failed_run() -> None:
    async def writer(ctx: NodeContext) -> Any:
        await ctx.context.set("progress", 50)
        return "written"

    flow = Flow("failctx").node("writer", writer).node("bad", failing()).edge("writer", "bad")
    result = await run(flow, context={"seed": "s"})
    assert result.status == "failed"
    assert isinstance(result.context, dict)
    assert result.context["seed"] == "s"
    assert result.context["progress"] == 50
    assert result.context["writer"] == "written"
    assert result.awaiting == []


async def test_s12_5_error_timestamp_is_aware_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    result = await run(Flow("ts").node("bad", failing()))
    after = dt.datetime.now(dt.UTC)
    (err,) = result.errors
    ts = err.timestamp
    assert isinstance(ts, dt.datetime)
    assert ts.tzinfo is not None
    assert ts.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=5) <= ts <= after + dt.timedelta(seconds=5)


async def test_s6_workflow_result_json_round_trip() -> None:
    async def writer(ctx: NodeContext) -> Any:
        await ctx.context.set("items", [1, "two", {"three": 3.0}])
        return {"ok": True}

    flow = Flow("roundtrip").node("writer", writer).node("bad", failing("rt")).edge("writer", "bad")
    result = await run(flow, context={"seed": "s"})
    assert result.status == "failed"
    raw = result.to_json()
    assert isinstance(raw, bytes)
    again = WorkflowResult.from_json(raw)
    assert isinstance(again, WorkflowResult)
    assert again.status == result.status
    assert again.run_id == result.run_id
    assert again.context == result.context
    assert again.awaiting == result.awaiting
    assert len(again.errors) == len(result.errors) == 1
    a, b = again.errors[0], result.errors[0]
    assert isinstance(a, WorkflowError)
    assert (a.node_id, a.message, a.type, a.attempt) == (b.node_id, b.message, b.type, b.attempt)
    assert a.timestamp == b.timestamp
    assert isinstance(a.timestamp, dt.datetime) and a.timestamp.tzinfo is not None


async def test_s6_completed_result_round_trip() -> None:
    result = await run(Flow("rt-ok").node("a", const([1, 2])), context={"x": {"y": None}})
    assert result.status == "completed"
    again = WorkflowResult.from_json(result.to_json())
    assert again.status == "completed"
    assert again.context == result.context
    assert again.errors == []
