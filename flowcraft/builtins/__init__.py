"""Built-in node kinds: loop controller, batch, sleep, wait, subflow.

They are plain data in a blueprint (`uses` is one of the names below); this package holds their
pure logic, and each runtime (in memory, distributed) drives them through it.
"""

from flowcraft.builtins.kinds import (
    BATCH,
    BUILTIN_KINDS,
    LOOP_CONTROLLER,
    SLEEP,
    SUBFLOW,
    WAIT,
    Suspended,
    parse_duration,
)

__all__ = [
    "BATCH",
    "BUILTIN_KINDS",
    "LOOP_CONTROLLER",
    "SLEEP",
    "SUBFLOW",
    "WAIT",
    "Suspended",
    "parse_duration",
]
