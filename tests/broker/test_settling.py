"""Batches being sent settle their deliveries one at a time, each once its acks are written, on the real broker: a
``multiple`` ack never overtakes an earlier batch's single ack for a lower tag, which the broker would refuse by
closing the channel (an unknown delivery tag)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from gateway.admin import vhost_url
from gateway.broker.acks import Outstanding
from gateway.broker.service import HubService
from gateway.hub import Hub, Outbox
from gateway.settings import Settings


@dataclass
class Held:
    """A real delivery whose acks wait for ``room`` before they go out (the client's write queue is full until
    then); what went out is written down in order, as (delivery tag, multiple)."""

    delivery: AbstractIncomingMessage
    room: asyncio.Event
    written: list[tuple[int, bool]]

    @property
    def channel(self) -> object:
        return self.delivery.channel

    @property
    def delivery_tag(self) -> int | None:
        return self.delivery.delivery_tag

    async def ack(self, multiple: bool = False) -> None:
        await self.room.wait()
        await self.delivery.ack(multiple=multiple)
        self.written.append((self.delivery_tag or 0, multiple))


def no_hub(outbox: Outbox) -> Hub:
    raise AssertionError("only the settling of deliveries is exercised here")


async def five_deliveries(connection: AbstractConnection) -> tuple[aio_pika.abc.AbstractChannel, str, list]:
    channel = await connection.channel()
    queue = await channel.declare_queue(f"settling-{uuid.uuid4().hex[:8]}", exclusive=True)
    for n in range(5):
        await channel.default_exchange.publish(aio_pika.Message(str(n).encode()), routing_key=queue.name)
    taken: list[AbstractIncomingMessage] = []

    async def take(delivery: AbstractIncomingMessage) -> None:
        taken.append(delivery)

    await queue.consume(take)
    while len(taken) < 5:
        await asyncio.sleep(0.01)
    return channel, queue.name, sorted(taken, key=lambda d: d.delivery_tag or 0)


async def test_a_multiple_ack_never_overtakes_an_earlier_batchs_single_acks_on_their_way_to_the_broker(
    hub_settings: Settings,
) -> None:
    # Not the reconnecting kind: a channel the broker closes stays closed, and the check below sees it.
    connection = await aio_pika.connect(vhost_url(hub_settings))
    try:
        channel, queue, taken = await five_deliveries(connection)
        service = HubService(make_hub=no_hub, connection=connection, prefetch=64)  # type: ignore[arg-type]
        held = service._outstanding.setdefault(taken[0].channel, Outstanding())
        for delivery in taken:
            held.received(delivery.delivery_tag or 0)
        full, free = asyncio.Event(), asyncio.Event()
        free.set()
        written: list[tuple[int, bool]] = []
        # Sent first, acked one by one (the oldest delivery is still in hand), and stuck in the write queue:
        later_batch = [Held(taken[i], full, written) for i in (2, 3)]
        # then the run from the oldest: one multiple ack, with room to go out at once.
        earlier_batch = [Held(taken[i], free, written) for i in (0, 1, 4)]

        first = asyncio.create_task(service._settle(later_batch))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        second = asyncio.create_task(service._settle(earlier_batch))  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)
        full.set()
        await asyncio.gather(first, second)

        tags = [d.delivery_tag for d in taken]
        assert written == [(tags[2], False), (tags[3], False), (tags[4], True)]
        # The broker's word: the channel is still open (a refused ack closes it) and nothing went back to the queue.
        left = await channel.declare_queue(queue, passive=True)
        assert left.declaration_result.message_count == 0
        await channel.close()
    finally:
        await connection.close()
