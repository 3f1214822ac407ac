"""`flowcraft status|resume|cancel|reconcile|watch --redis URL ...` (CONTRACT §10).

`add_subcommands(subparsers)` registers the subcommands on the `flowcraft` command's parser (the
core CLI finds it through the `flowcraft.cli` entry point group, so the core never imports arq);
`python -m flowcraft_arq.cli ...` runs them standalone. Exit codes: 0 ok, 1 the run failed or
was cancelled, 2 usage or input error (message on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from redis.exceptions import RedisError

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft.errors import FlowcraftError
from flowcraft_arq.client import FlowcraftClient
from flowcraft_arq.keys import DEFAULT_PREFIX, queue_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def _flows(targets: list[str] | None) -> list[Flow | WorkflowBlueprint]:
    if not targets:
        return []
    from flowcraft.cli import UsageError as CoreUsageError
    from flowcraft.cli import load_target

    try:
        return [load_target(t) for t in targets]
    except CoreUsageError as exc:
        raise UsageError(str(exc)) from None


def _client(args: argparse.Namespace) -> FlowcraftClient:
    return FlowcraftClient.from_url(args.redis, flows=_flows(getattr(args, "flow", None)),
                                    queue_name=args.queue, prefix=args.prefix)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        status = await client.status(args.run_id)
        if args.json:
            result = await client.result(args.run_id)
            _print(msgspec.json.encode({"run_id": args.run_id, "status": status,
                                        "result": result}).decode())
        else:
            _print(status)
    return EXIT_FAILED if status in ("failed", "cancelled") else EXIT_OK


async def _resume(args: argparse.Namespace) -> int:
    if not args.flow:
        raise UsageError("resume needs --flow module:flow (the run's flow, for routing)")
    try:
        output = msgspec.json.decode(args.output) if args.output is not None else None
    except msgspec.DecodeError as exc:
        raise UsageError(f"--output is not JSON: {exc}") from None
    async with _client(args) as client:
        await client.resume(args.run_id, node_id=args.node, output=output, action=args.action)
        _print(f"resumed {args.node or 'the awaiting node'} of run {args.run_id}")
    return EXIT_OK


async def _cancel(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        cancelled = await client.cancel(args.run_id)
        _print("cancelled" if cancelled else await client.status(args.run_id))
    return EXIT_OK if cancelled else EXIT_FAILED


async def _reconcile(args: argparse.Namespace) -> int:
    if not args.flow:
        raise UsageError("reconcile needs --flow module:flow for every flow it may re-drive")
    async with _client(args) as client:
        counts = await client.reconcile(stalled_after=args.stalled_after)
        _print(msgspec.json.encode(counts).decode())
    return EXIT_FAILED if counts["failed"] else EXIT_OK


async def _watch(args: argparse.Namespace) -> int:
    status = "running"
    async with _client(args) as client:
        await client.status(args.run_id)
        async for event in client.events(args.run_id):
            if args.json:
                _print(msgspec.json.encode(event).decode())
            else:
                node = getattr(event, "node_id", None)
                _print(f"{event.timestamp.isoformat()} {event.type}"
                       + (f" {node}" if node else ""))
            if event.type == "workflow:finish":
                status = str(getattr(event, "status", "completed"))
        if status == "running":
            status = await client.status(args.run_id)
    return EXIT_FAILED if status in ("failed", "cancelled") else EXIT_OK


def _dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from flowcraft_arq.dashboard import create_app
    except ImportError as exc:
        raise UsageError(f"the dashboard needs its extra: pip install 'flowcraft-arq[dashboard]' "
                         f"({exc})") from None
    app = create_app(args.redis, prefix=args.prefix, queue_name=queue_of(args.prefix, args.queue),
                     read_only=args.read_only, auth=args.token, flows=_flows(args.flow))
    sys.stderr.write(f"flowcraft dashboard on http://{args.host}:{args.port}/"
                     + ("?token=..." if args.token else "") + "\n")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=2)
    return EXIT_OK


Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input and an unreachable or malformed Redis end in one line on stderr and exit 2,
    whichever `main` (the `flowcraft` script's or this module's) runs the subcommand."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (UsageError, FlowcraftError, OSError, RedisError, ValueError) as exc:
            sys.stderr.write(f"flowcraft: {exc}\n")
            return EXIT_USAGE

    return guarded


def _sync(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return asyncio.run(handler(args))

    return _guarded(run)


def _common(parser: argparse.ArgumentParser, *, run_id: bool = True) -> None:
    if run_id:
        parser.add_argument("run_id")
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--queue", default=None,
                        help="arq queue name (default: the key prefix)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="flowcraft key prefix")


def add_subcommands(sub: Any) -> None:
    """Register status, resume, cancel, reconcile and watch on an argparse subparsers object."""
    status = sub.add_parser("status", help="status of a distributed run")
    _common(status)
    status.add_argument("--json", action="store_true", help="status and stored result")
    status.set_defaults(handler=_sync(_status))
    resume = sub.add_parser("resume", help="resume an awaiting node of a distributed run")
    _common(resume)
    resume.add_argument("--flow", action="append", required=True, help="module:flow")
    resume.add_argument("--node", help="the awaiting node (optional if only one awaits)")
    resume.add_argument("--output", help="the node's output, as JSON")
    resume.add_argument("--action", help="the action to route on")
    resume.set_defaults(handler=_sync(_resume))
    cancel = sub.add_parser("cancel", help="cancel a distributed run")
    _common(cancel)
    cancel.set_defaults(handler=_sync(_cancel))
    reconcile = sub.add_parser("reconcile", help="re-drive stalled distributed runs")
    _common(reconcile, run_id=False)
    reconcile.add_argument("--flow", action="append", required=True, help="module:flow")
    reconcile.add_argument("--stalled-after", type=float, default=60.0, help="seconds")
    reconcile.set_defaults(handler=_sync(_reconcile))
    watch = sub.add_parser("watch", help="follow a distributed run's events until it ends")
    _common(watch)
    watch.add_argument("--json", action="store_true", help="one JSON event per line")
    watch.set_defaults(handler=_sync(_watch))
    dash = sub.add_parser("dashboard", help="web dashboard of distributed runs")
    _common(dash, run_id=False)
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default local only)")
    dash.add_argument("--port", type=int, default=8484)
    dash.add_argument("--read-only", action="store_true", help="no actions: POSTs get 403")
    dash.add_argument("--token", help="require this token (open the page once with ?token=T)")
    dash.add_argument("--flow", action="append", help="module:flow served by the workers "
                      "(draws its graph, enables resume and re-drive)")
    dash.set_defaults(handler=_guarded(_dashboard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowcraft", description=__doc__)
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
