"""The blueprints the workers serve, published in Redis so clients can start flows by name.

Every worker publishes its flows' blueprints (id, version, JSON) when it starts. A client
without `flows=` finds a blueprint here when it starts, resumes or reconciles a run of it: it
needs the blueprint (to route and to build job payloads), never the node code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis

from flowcraft.blueprint import WorkflowBlueprint, load_blueprint
from flowcraft.errors import BlueprintError
from flowcraft_arq.keys import catalog_key


class Published(msgspec.Struct, frozen=True):
    """One served blueprint version and when a worker last published it (epoch ms)."""

    blueprint: msgspec.Raw
    published_ms: int


def _field(blueprint_id: str, version: str | None) -> bytes:
    """The hash field of one served version: `[id, version]` as JSON (any id is safe)."""
    return msgspec.json.encode((blueprint_id, version))


async def publish(redis: Redis, prefix: str, blueprints: Iterable[WorkflowBlueprint]) -> None:
    """Announce `blueprints` as served (a worker calls this at start-up)."""
    now = int(time.time() * 1000)
    mapping = {_field(b.id, b.version): msgspec.json.encode(
        Published(msgspec.Raw(b.to_json()), now)) for b in blueprints}
    if mapping:
        await redis.hset(catalog_key(prefix), mapping=mapping)  # type: ignore[misc]


async def find(redis: Redis, prefix: str, blueprint_id: str,
               version: str | None = None) -> WorkflowBlueprint:
    """The served blueprint `blueprint_id` at `version` (None: the one most recently
    published); BlueprintError naming the flow and what is served when there is none."""
    raw = await redis.hgetall(catalog_key(prefix))  # type: ignore[misc]
    served: dict[str, list[tuple[str | None, Published]]] = {}
    for field, value in raw.items():
        name, served_version = msgspec.json.decode(field, type=tuple[str, str | None])
        published = msgspec.json.decode(value, type=Published)
        served.setdefault(name, []).append((served_version, published))
    versions = served.get(blueprint_id, [])
    if version is not None:
        versions = [(v, p) for v, p in versions if v == version]
    if not versions:
        offered = {name: sorted(v or "(none)" for v, _ in entries)
                   for name, entries in sorted(served.items())}
        wanted = blueprint_id if version is None else f"{blueprint_id} version {version!r}"
        raise BlueprintError(f"no worker serves flow {wanted} (served: {offered or 'nothing'})")
    newest = max(versions, key=lambda entry: entry[1].published_ms)[1]
    return load_blueprint(bytes(newest.blueprint))


__all__ = ["Published", "find", "publish"]
