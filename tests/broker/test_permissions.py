"""Section 2: what the broker itself lets a participant do. Nothing here is checked by the hub's code."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import pytest

from gateway.admin import vhost_url
from tests.support.hub import RunningHub, participant_password


async def connect_as(hub: RunningHub, code: str) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(
        vhost_url(hub.settings, code, participant_password(code)),
        client_properties={"connection_name": f"test-permissions-{code}"},
    )


def message(user_id: str) -> aio_pika.Message:
    return aio_pika.Message(b"<x/>", user_id=user_id, content_type="application/xml", delivery_mode=2)


async def test_a_participant_cannot_read_another_participants_queue(hub: RunningHub) -> None:
    async with await connect_as(hub, "CH") as connection:
        channel = await connection.channel()
        queue = await channel.get_queue("i2es.deliver.DE", ensure=False)

        async def steal(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            raise AssertionError("read another participant's message")

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.consume(steal)


async def test_a_participant_cannot_read_the_inbound_or_dead_letter_queues(hub: RunningHub) -> None:
    for name in ("i2es.inbound", "i2es.dead"):
        async with await connect_as(hub, "CH") as connection:
            channel = await connection.channel()
            queue = await channel.get_queue(name, ensure=False)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await queue.get()


async def test_a_participant_cannot_publish_with_another_routing_key(hub: RunningHub) -> None:
    async with await connect_as(hub, "CH") as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("i2es.inbound", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await exchange.publish(message("CH"), routing_key="DE")


async def test_a_participant_cannot_publish_straight_to_a_deliver_queue(hub: RunningHub) -> None:
    async with await connect_as(hub, "CH") as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("i2es.deliver", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await exchange.publish(message("CH"), routing_key="DE")


async def test_the_broker_refuses_a_spoofed_user_id(hub: RunningHub) -> None:
    async with await connect_as(hub, "CH") as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("i2es.inbound", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await exchange.publish(message("DE"), routing_key="CH")


async def test_a_participant_can_configure_nothing(hub: RunningHub) -> None:
    async with await connect_as(hub, "CH") as connection:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue("i2es.deliver.CH.copy", durable=True)
    async with await connect_as(hub, "CH") as connection:
        channel = await connection.channel()
        queue = await channel.get_queue("i2es.deliver.CH", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.bind("i2es.inbound", routing_key="#")


async def test_a_wrong_password_is_refused(hub: RunningHub) -> None:
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(vhost_url(hub.settings, "CH", "not-the-password"))


async def test_a_participant_opens_at_most_its_share_of_connections_and_channels(hub: RunningHub) -> None:
    from datetime import UTC, datetime

    from gateway.admin import add_participant, management

    limited = hub.settings.model_copy(update={"participant_max_connections": 2, "participant_max_channels": 3})
    await asyncio.to_thread(
        add_participant, limited, "PT", "INFARMED", datetime.now(UTC), password=participant_password("PT")
    )
    assert management(hub.settings).user_limits("PT")[0]["value"] == {"max-connections": 2, "max-channels": 3}
    first, second = await connect_as(hub, "PT"), await connect_as(hub, "PT")
    try:
        with pytest.raises(aiormq.exceptions.AMQPError):
            await connect_as(hub, "PT")  # a third connection is refused (the broker closes it at once)
        channels = [await first.channel() for _ in range(3)]
        with pytest.raises(aio_pika.exceptions.AMQPError):
            await second.channel()  # and a fourth channel across its connections
        assert len(channels) == 3
    finally:
        await first.close()
        await second.close()
