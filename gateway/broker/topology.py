"""The broker topology of section 2, declared by the hub itself: exchanges, quorum queues, users."""

from __future__ import annotations

import re
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel
from pamqp.common import FieldTable

from gateway.broker.management import Management

INBOUND_EXCHANGE = "i2es.inbound"
INBOUND_QUEUE = "i2es.inbound"
DELIVER_EXCHANGE = "i2es.deliver"
DEAD_EXCHANGE = "i2es.dead"
DEAD_QUEUE = "i2es.dead"


def deliver_queue(code: str) -> str:
    return f"i2es.deliver.{code}"


@dataclass(frozen=True)
class Topology:
    vhost: str
    delivery_limit: int = 5

    def queue_arguments(self) -> FieldTable:
        return {
            "x-queue-type": "quorum",
            # A message that keeps failing goes to the dead-letter queue instead of looping for ever.
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": DEAD_EXCHANGE,
        }

    async def declare_hub(self, channel: AbstractChannel) -> None:
        """Exchanges and the hub's own queues (inbound, dead letters)."""
        dead = await channel.declare_exchange(DEAD_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_queue = await channel.declare_queue(DEAD_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await dead_queue.bind(dead)
        # Topic, because RabbitMQ's topic permissions are what bind a participant to its own routing key.
        inbound = await channel.declare_exchange(INBOUND_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        inbound_queue = await channel.declare_queue(INBOUND_QUEUE, durable=True, arguments=self.queue_arguments())
        await inbound_queue.bind(inbound, routing_key="#")
        await channel.declare_exchange(DELIVER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)

    async def declare_participant(self, channel: AbstractChannel, code: str) -> None:
        deliver = await channel.get_exchange(DELIVER_EXCHANGE)
        queue = await channel.declare_queue(deliver_queue(code), durable=True, arguments=self.queue_arguments())
        await queue.bind(deliver, routing_key=code)

    def grant_participant(self, management: Management, code: str, password: str | None) -> None:
        """The participant's broker user: write to inbound with its own key, read its own queue, configure nothing."""
        management.put_user(code, password)
        management.put_permissions(
            self.vhost,
            code,
            configure="^$",
            write=f"^{re.escape(INBOUND_EXCHANGE)}$",
            read=f"^{re.escape(deliver_queue(code))}$",
        )
        management.put_topic_permissions(self.vhost, code, INBOUND_EXCHANGE, write=f"^{re.escape(code)}$", read="^$")
