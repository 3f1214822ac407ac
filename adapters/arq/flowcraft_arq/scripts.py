"""The Lua scripts of the store, composed once per process.

Every per-run script is the shared prelude (`lua/lib.lua`: keys, buffered writes, instance
records), the graph accessors (`lua/graph.lua`) and the routing (`lua/routing.lua`: fire,
enqueue, route, settle), followed by its own body. `commit_many` wraps commit.lua's body into a
function its driver calls once per commit. Scripts on a global key get no prelude.
"""

from __future__ import annotations

import hashlib
from importlib import resources

SCRIPT_NAMES = ("start_run", "claim", "renew", "commit", "fail", "release", "cancel",
                "reconcile", "loop_count", "resume", "scatter", "park", "adopt")
GLOBAL_SCRIPT_NAMES = ("rescore",)
"""Scripts on a global key, without the per-run prelude."""
PRELUDE = ("lib", "graph", "routing")


def read_script(name: str) -> str:
    return resources.files("flowcraft_arq").joinpath("lua", f"{name}.lua").read_text("utf-8")


class Script:
    """A script's composed source and its SHA1 (for EVALSHA)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()


_SCRIPTS: dict[str, Script] | None = None


def scripts() -> dict[str, Script]:
    """The composed scripts, read from the package once per process."""
    global _SCRIPTS
    if _SCRIPTS is None:
        prelude = "\n".join(read_script(part) for part in PRELUDE)
        _SCRIPTS = {name: Script(name, f"{prelude}\n{read_script(name)}")
                    for name in SCRIPT_NAMES}
        _SCRIPTS.update((name, Script(name, read_script(name))) for name in GLOBAL_SCRIPT_NAMES)
        _SCRIPTS["commit_many"] = Script("commit_many", "\n".join([
            prelude, "local function commit_one()", read_script("commit"), "end",
            read_script("commit_many")]))
    return _SCRIPTS


__all__ = ["GLOBAL_SCRIPT_NAMES", "PRELUDE", "SCRIPT_NAMES", "Script", "read_script", "scripts"]
