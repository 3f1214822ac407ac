"""`FlowcraftClient.wait` listens to one pattern subscription per client (announcements.py):
many waits share it, a prefix with glob characters only hears its own runs, and closing the
client stops it. Real redis-server and arq worker."""

from __future__ import annotations

import asyncio
from typing import Any

from dist_scenarios import diamond
from flowcraft_arq.keys import channel_pattern


def test_channel_pattern_escapes_glob_characters() -> None:
    assert channel_pattern("app") == "app:{*}:done-ch"
    assert channel_pattern("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\:{*}:done-ch"


async def test_many_waits_on_one_subscription(arq_worker: Any, flowcraft_client: Any) -> None:
    flow = diamond()
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        run_ids = [await client.start("diamond", context={"x": i}) for i in range(20)]
        # two waits per run, all at once, on the client's one subscription
        results = await asyncio.gather(*(client.wait(r, timeout=30) for r in run_ids * 2))
        pubsub_connections = [c for c in await client.redis.client_list()
                              if c.get("cmd") == "psubscribe" or int(c.get("psub", 0)) > 0]
    assert [r.status for r in results] == ["completed"] * 40
    assert [r.run_id for r in results] == run_ids * 2
    assert len(pubsub_connections) == 1


async def test_prefix_with_glob_characters_hears_only_its_runs(
        arq_worker: Any, flowcraft_client: Any) -> None:
    flow = diamond()
    async with arq_worker([flow], prefix="app*"), \
            arq_worker([flow], prefix="appX", queue_name="other-q"), \
            flowcraft_client([flow], prefix="app*") as star, \
            flowcraft_client([flow], prefix="appX", queue_name="other-q") as plain:
        mine = await star.start("diamond", context={"x": 1})
        theirs = await plain.start("diamond", context={"x": 2})
        assert (await star.wait(mine, timeout=30)).status == "completed"
        assert (await plain.wait(theirs, timeout=30)).status == "completed"
        # a waiter of "app*" registered for the other app's channel gets nothing from it
        announced = star._announcements.expect(plain.store.keys(theirs).channel)
        await plain.start("diamond", context={"x": 3}, run_id=theirs + "-2")
        await plain.wait(theirs + "-2", timeout=30)
        await asyncio.sleep(0.2)
        assert not announced.done()


async def test_closing_the_client_stops_listening(arq_worker: Any,
                                                  flowcraft_client: Any) -> None:
    flow = diamond()
    async with arq_worker([flow]):
        async with flowcraft_client([flow]) as client:
            await client.wait(await client.start("diamond", context={"x": 1}), timeout=30)
            listener = client._announcements._task
            assert listener is not None and not listener.done()
        assert listener.done() and client._announcements._task is None
