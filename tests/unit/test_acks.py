"""Acknowledging in runs: one ``multiple`` ack settles every delivery up to it, so it covers only handled ones, and
it reaches the broker after every ack decided before it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from unittest.mock import Mock

from gateway.broker.acks import Outstanding
from gateway.broker.service import HubService


def outstanding(*tags: int) -> Outstanding:
    held = Outstanding()
    for tag in tags:
        held.received(tag)
    return held


def test_a_handled_run_from_the_oldest_delivery_takes_one_multiple_ack() -> None:
    held = outstanding(1, 2, 3, 4)
    assert held.settle([1, 2, 3]) == (3, [])
    assert len(held) == 1


def test_a_single_handled_delivery_is_acknowledged_alone() -> None:
    held = outstanding(1, 2)
    assert held.settle([1]) == (None, [1])
    assert held.settle([2]) == (None, [2])
    assert len(held) == 0


def test_deliveries_behind_an_unhandled_one_are_acknowledged_one_by_one() -> None:
    # 2 came from another queue and is still waiting: a multiple ack for 4 would settle it unhandled.
    held = outstanding(1, 2, 3, 4)
    assert held.settle([3, 4]) == (None, [3, 4])
    assert held.settle([1]) == (None, [1])
    assert held.settle([2]) == (None, [2])


def test_a_run_then_stragglers() -> None:
    held = outstanding(1, 2, 3, 4, 5)
    assert held.settle([1, 2, 5]) == (2, [5])
    assert held.settle([3, 4]) == (4, [])
    assert len(held) == 0


def test_deliveries_registered_out_of_order_are_kept_in_the_brokers_order() -> None:
    held = outstanding(2, 1, 3)
    assert held.settle([1, 2]) == (2, [])


def test_requeued_deliveries_are_forgotten() -> None:
    held = outstanding(1, 2, 3)
    held.forget([1])
    assert held.settle([2, 3]) == (3, [])


class Channel:
    """What reaches the broker on one channel, in order: (delivery tag, multiple)."""

    def __init__(self) -> None:
        self.written: list[tuple[int, bool]] = []


@dataclass
class Delivery:
    """A delivery in hand; its acks reach the socket once ``room`` is set (the client's write queue is full until
    then)."""

    channel: Channel
    delivery_tag: int
    room: asyncio.Event

    async def ack(self, multiple: bool = False) -> None:
        await self.room.wait()
        self.channel.written.append((self.delivery_tag, multiple))

    async def nack(self, requeue: bool = True) -> None:
        raise AssertionError("nothing is requeued here")


def refused_by_the_broker(written: list[tuple[int, bool]], delivered: set[int]) -> list[int]:
    """The broker's rule: an ack names an unsettled delivery (``multiple`` settles every one up to it too)."""
    unsettled, unknown = set(delivered), []
    for tag, multiple in written:
        if tag not in unsettled:
            unknown.append(tag)
        unsettled -= {t for t in unsettled if t <= tag} if multiple else {tag}
    return unknown


async def test_a_multiple_ack_never_overtakes_an_earlier_batchs_single_acks_on_their_way_to_the_broker() -> None:
    service = HubService(make_hub=Mock(), connection=Mock(), prefetch=64)
    channel = Channel()
    full, free = asyncio.Event(), asyncio.Event()
    free.set()
    held = service._outstanding.setdefault(channel, Outstanding())  # type: ignore[call-overload]
    for tag in range(1, 6):
        held.received(tag)
    later_batch = [Delivery(channel, tag, full) for tag in (3, 4)]  # sent first, acked one by one: 1 still in hand
    earlier_batch = [Delivery(channel, tag, free) for tag in (1, 2, 5)]  # then a run 1-5: one multiple ack

    first = asyncio.create_task(service._settle(later_batch))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    second = asyncio.create_task(service._settle(earlier_batch))  # type: ignore[arg-type]
    for _ in range(5):
        await asyncio.sleep(0)
    full.set()
    await asyncio.gather(first, second)

    assert refused_by_the_broker(channel.written, {1, 2, 3, 4, 5}) == []
    assert channel.written == [(3, False), (4, False), (5, True)]
