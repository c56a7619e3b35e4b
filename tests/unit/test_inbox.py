"""The hub serves its inbound queues in turn: a long queue never waits in front of a short one."""

from __future__ import annotations

import asyncio

from gateway.broker.inbox import FairInbox


async def take(inbox: FairInbox[str], count: int) -> list[tuple[str, str]]:
    return [await inbox.get() for _ in range(count)]


async def test_each_queue_with_something_gets_a_turn_before_any_gets_a_second() -> None:
    inbox: FairInbox[str] = FairInbox()
    for n in range(4):
        inbox.put("i2es.inbound.DE", f"de{n}")
    inbox.put("i2es.inbound.FR", "fr0")
    inbox.put("i2es.inbound.IT", "it0")
    taken = await take(inbox, 6)
    assert [item for _, item in taken] == ["de0", "fr0", "it0", "de1", "de2", "de3"]


async def test_within_one_queue_the_order_is_kept() -> None:
    inbox: FairInbox[str] = FairInbox()
    for n in range(5):
        inbox.put("q", str(n))
    assert [item for _, item in await take(inbox, 5)] == ["0", "1", "2", "3", "4"]
    assert len(inbox) == 0


async def test_get_waits_for_the_next_put() -> None:
    inbox: FairInbox[str] = FairInbox()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    inbox.put("q", "x")
    assert await asyncio.wait_for(waiting, 1) == ("q", "x")


async def test_a_batch_takes_what_is_waiting_in_turn_up_to_its_limit() -> None:
    inbox: FairInbox[str] = FairInbox()
    for n in range(3):
        inbox.put("i2es.inbound.DE", f"de{n}")
    inbox.put("i2es.inbound.FR", "fr0")
    batch = await inbox.get_many(3)
    assert [item for _, item in batch] == ["de0", "fr0", "de1"]
    assert [item for _, item in await inbox.get_many(10)] == ["de2"]


async def test_a_batch_waits_for_the_first_delivery_only() -> None:
    inbox: FairInbox[str] = FairInbox()
    waiting = asyncio.create_task(inbox.get_many(10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    inbox.put("q", "x")
    assert await asyncio.wait_for(waiting, 1) == [("q", "x")]
