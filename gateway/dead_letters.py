"""The dead-letter queue for operators: replay one message to the hub, taking it out only once the broker has it."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from gateway.admin import AdminError, vhost_url
from gateway.broker.service import REPLAY_USER_HEADER, header_text
from gateway.broker.topology import DEAD_QUEUE, REPLAY_QUEUE
from gateway.settings import Settings

# Messages looked at, at most, to find the one to replay; the others go back to the queue.
SEARCH_LIMIT = 10_000


@dataclass(frozen=True)
class Replayed:
    message_id: str
    user_id: str
    looked_at: int


def sender_of(message: AbstractIncomingMessage) -> str | None:
    """The broker user who sent a dead letter: its ``user_id``, or, where the hub dead-lettered it, its header."""
    return message.user_id or header_text(message, "x-i2es-user-id")


async def replay(settings: Settings, message_id: str) -> Replayed:
    """Move the dead letter with AMQP ``message_id`` to ``i2es.replay``, where the hub takes it as sent by its
    original broker user. Published with a confirm before it is removed from the dead-letter queue."""
    connection = await aio_pika.connect(vhost_url(settings), client_properties={"connection_name": "i2es-dlq"})
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        dead = await channel.get_queue(DEAD_QUEUE, ensure=True)
        passed_over: list[AbstractIncomingMessage] = []
        try:
            found = None
            while found is None and len(passed_over) < SEARCH_LIMIT:
                message = await dead.get(no_ack=False, fail=False)
                if message is None:
                    break
                if message.message_id == message_id:
                    found = message
                else:
                    passed_over.append(message)
            if found is None:
                raise AdminError(f"no message with message_id {message_id} in {DEAD_QUEUE} (see `i2es dlq list`)")
            user = sender_of(found)
            if not user:
                raise AdminError(f"message {message_id} names no broker user: it cannot be replayed as anyone's")
            headers = {k: v for k, v in (found.headers or {}).items() if k != "x-death"}
            headers[REPLAY_USER_HEADER] = user
            await channel.default_exchange.publish(
                aio_pika.Message(
                    found.body,
                    message_id=found.message_id,
                    type=found.type,
                    content_type=found.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers=headers,
                ),
                routing_key=REPLAY_QUEUE,
                mandatory=True,
            )
            await found.ack()
            return Replayed(message_id, user, len(passed_over) + 1)
        finally:
            for message in passed_over:
                await message.nack(requeue=True)
