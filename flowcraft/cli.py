"""The `flowcraft` command: run, lint and draw flows. Exit codes: 0 ok, 1 failed, 2 usage/input."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TextIO

import msgspec

from flowcraft.analysis import lint
from flowcraft.blueprint import WorkflowBlueprint, load_blueprint
from flowcraft.builder import Flow, blueprint_to_mermaid
from flowcraft.errors import FlowcraftError
from flowcraft.eventlog import JsonlEventStore, summarize
from flowcraft.events import Event, NodeErrorEvent, NodeFinish, NodeSkipped, NodeStart

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or an unloadable target: exit code 2."""


def load_target(target: str) -> Flow | WorkflowBlueprint:
    """`FILE.json`, `module:attr` or `path/to/file.py:attr` -> a Flow or a blueprint."""
    if target.endswith(".json"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"no such file: {target}")
        try:
            return load_blueprint(path.read_bytes())
        except FlowcraftError as exc:
            raise UsageError(f"{target}: {exc}") from None
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected FILE.json or module:flow, got {target!r}")
    module = _import(module_name)
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, Flow | WorkflowBlueprint):
        obj = obj()
    if not isinstance(obj, Flow | WorkflowBlueprint):
        raise UsageError(f"{target} is not a Flow or WorkflowBlueprint")
    return obj


def _import(name: str) -> Any:
    if name.endswith(".py") or "/" in name:
        path = Path(name if name.endswith(".py") else name + ".py").resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None or not path.is_file():
            raise UsageError(f"cannot import {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(f"cannot import {name}: {exc}") from None


class _Fanout:
    def __init__(self, buses: list[Any]) -> None:
        self.buses = buses

    async def emit(self, event: Event) -> None:
        for bus in self.buses:
            await bus.emit(event)


class _Progress:
    """Prints one line per node event: the live view of a run (coloured on a TTY)."""

    def __init__(self, out: TextIO, tty: bool = False) -> None:
        self.out = out
        self.tty = tty
        self.started: dict[str, float] = {}

    async def emit(self, event: Event) -> None:
        if isinstance(event, NodeStart):
            self.started[event.node_id] = time.perf_counter()
            self._line("…", event.node_id, "started", "33")
        elif isinstance(event, NodeFinish):
            ms = (time.perf_counter() - self.started.get(event.node_id, time.perf_counter())) * 1e3
            action = f" action={event.action}" if event.action else ""
            self._line("✓", event.node_id, f"finished in {ms:.1f} ms{action}", "32")
        elif isinstance(event, NodeErrorEvent):
            self._line("✗", event.node_id, f"failed: {event.error.message}", "31")
        elif isinstance(event, NodeSkipped):
            self._line("-", event.node_id, "skipped", "90")

    def _line(self, mark: str, node_id: str, text: str, colour: str) -> None:
        if self.tty:
            mark = f"\x1b[{colour}m{mark}\x1b[0m"
        self.out.write(f"  {mark} {node_id} {text}\n")
        self.out.flush()


def _cmd_run(args: argparse.Namespace) -> int:
    from flowcraft.runtime.runtime import FlowRuntime

    flow = load_target(args.target)
    try:
        context = msgspec.json.decode(args.context) if args.context else {}
    except msgspec.DecodeError as exc:
        raise UsageError(f"--context is not valid JSON: {exc}") from None
    if not isinstance(context, dict):
        raise UsageError("--context must be a JSON object")
    buses: list[Any] = [] if args.json else [_Progress(sys.stdout, sys.stdout.isatty())]
    store = JsonlEventStore(args.events) if args.events else None
    if store is not None:
        buses.append(store)
    runtime = FlowRuntime(event_bus=_Fanout(buses) if buses else None)
    try:
        result = asyncio.run(runtime.run(flow, context=context))
    finally:
        if store is not None:
            store.close()
    if args.json:
        sys.stdout.write(result.to_json().decode() + "\n")
    else:
        sys.stdout.write(f"run {result.run_id}: {result.status}\n")
        for error in result.errors:
            sys.stdout.write(f"  error in {error.node_id} ({error.type}): {error.message}\n")
        public = {k: v for k, v in result.context.items() if not k.startswith("_")}
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(public)).decode() + "\n")
    return EXIT_OK if result.status in ("completed", "awaiting") else EXIT_FAILED


def _blueprint_and_registry(target: str) -> tuple[Any, Any]:
    if target.endswith(".json"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"no such file: {target}")
        return path.read_bytes(), None
    flow = load_target(target)
    if isinstance(flow, Flow):
        return flow.to_blueprint(), flow.registry
    return flow, None


def _cmd_lint(args: argparse.Namespace) -> int:
    data, registry = _blueprint_and_registry(args.target)
    try:
        issues = lint(data, registry)
    except FlowcraftError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        sys.stdout.write(msgspec.json.encode(issues).decode() + "\n")
    else:
        for issue in issues:
            sys.stdout.write(f"{issue}\n")
    return EXIT_FAILED if issues else EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.log)
    if not path.is_file():
        raise UsageError(f"no such file: {args.log}")
    rows = summarize(JsonlEventStore.read(path))
    if args.json:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
        return EXIT_OK
    header = ("node", "status", "runs", "attempts", "ms")
    table = [header] + [(r.node_id, r.status, str(r.runs), str(r.attempts), f"{r.ms:.1f}")
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        sys.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                         .rstrip() + "\n")
    return EXIT_OK


def _cmd_mermaid(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    blueprint = target.to_blueprint() if isinstance(target, Flow) else target
    sys.stdout.write(blueprint_to_mermaid(blueprint))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowcraft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a flow in memory with live progress")
    run.add_argument("target", help="module:flow, path/file.py:flow or FILE.json")
    run.add_argument("--context", help="initial context as a JSON object")
    run.add_argument("--json", action="store_true", help="print the result as one JSON document")
    run.set_defaults(handler=_cmd_run)
    run.add_argument("--events", help="append the run's events to this JSON-lines file")
    inspect = sub.add_parser("inspect", help="per-node status table of an event log (JSONL)")
    inspect.add_argument("log")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=_cmd_inspect)
    lint_p = sub.add_parser("lint", help="report problems, one line each (exit 1 if any)")
    lint_p.add_argument("target")
    lint_p.add_argument("--json", action="store_true")
    lint_p.set_defaults(handler=_cmd_lint)
    mermaid = sub.add_parser("mermaid", help="print a Mermaid flowchart")
    mermaid.add_argument("target")
    mermaid.set_defaults(handler=_cmd_mermaid)
    _add_plugin_subcommands(sub)
    return parser


def _add_plugin_subcommands(sub: Any) -> None:
    """Adapters add their subcommands (e.g. flowcraft-arq's `status`, `resume`, `watch`)
    through the `flowcraft.cli` entry point group, so the core never imports them."""
    for entry in entry_points(group="flowcraft.cli"):
        try:
            register = entry.load()
        except Exception as exc:  # a broken plugin must not break the core commands
            logging.getLogger("flowcraft.cli").warning(
                "CLI plugin %s could not be loaded: %s", entry.name, exc)
            continue
        register(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        code: int = args.handler(args)
    except (UsageError, FlowcraftError) as exc:
        sys.stderr.write(f"flowcraft: {exc}\n")
        return EXIT_USAGE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
