"""The broker topology of section 2, declared by the hub itself: exchanges, quorum queues, users, limits.

Participants publish to the exchange ``i2es.inbound`` with their own code as routing key, as the contract says.
Behind it each participant has an inbound queue of its own, ``i2es.inbound.<CODE>``, so that one country's flood
waits in its own queue and the hub, which takes from every queue in turn, serves the others meanwhile; and so that
each sender's messages are taken in the order sent, by one hub at a time (single active consumer). A message no
participant's binding takes (a user whose queue an operator removed) lands in ``i2es.inbound`` through the
exchange's alternate exchange, and the hub takes it from there too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel
from pamqp.common import FieldTable

from gateway.broker.management import Management
from gateway.settings import Settings

INBOUND_EXCHANGE = "i2es.inbound"
INBOUND_QUEUE = "i2es.inbound"  # what no participant's binding took
UNROUTED_EXCHANGE = "i2es.unrouted"
REPLAY_QUEUE = "i2es.replay"  # an operator's replays from the dead-letter queue; only administrators write here
DELIVER_EXCHANGE = "i2es.deliver"
DEAD_EXCHANGE = "i2es.dead"
DEAD_QUEUE = "i2es.dead"


def deliver_queue(code: str) -> str:
    return f"i2es.deliver.{code}"


def inbound_queue(code: str) -> str:
    return f"i2es.inbound.{code}"


@dataclass(frozen=True)
class Topology:
    vhost: str
    delivery_limit: int = 5
    # Messages a participant's queue holds at most; a publish beyond it is refused (nack), never dropped.
    max_length: int = 10_000
    max_connections: int = 10
    max_channels: int = 64

    @classmethod
    def of(cls, settings: Settings) -> Topology:
        return cls(
            settings.vhost,
            settings.delivery_limit,
            settings.queue_max_length,
            settings.participant_max_connections,
            settings.participant_max_channels,
        )

    def queue_arguments(self) -> FieldTable:
        return {
            "x-queue-type": "quorum",
            # A message that keeps failing goes to the dead-letter queue instead of looping for ever.
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": DEAD_EXCHANGE,
        }

    def participant_queue_arguments(self) -> FieldTable:
        return {
            **self.queue_arguments(),
            "x-max-length": self.max_length,
            "x-overflow": "reject-publish",
        }

    async def declare_hub(self, channel: AbstractChannel) -> None:
        """Exchanges and the hub's own queues (what no binding took, replays, dead letters)."""
        dead = await channel.declare_exchange(DEAD_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_queue = await channel.declare_queue(DEAD_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await dead_queue.bind(dead)
        unrouted = await channel.declare_exchange(UNROUTED_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
        # Topic, because RabbitMQ's topic permissions are what bind a participant to its own routing key.
        await channel.declare_exchange(
            INBOUND_EXCHANGE,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": UNROUTED_EXCHANGE},
        )
        catch_all = await channel.declare_queue(INBOUND_QUEUE, durable=True, arguments=self.queue_arguments())
        await catch_all.bind(unrouted)
        await channel.declare_queue(REPLAY_QUEUE, durable=True, arguments=self.queue_arguments())
        await channel.declare_exchange(DELIVER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)

    async def declare_participant(self, channel: AbstractChannel, code: str) -> None:
        """The participant's deliver queue and its inbound queue, each with a length limit."""
        deliver = await channel.get_exchange(DELIVER_EXCHANGE)
        queue = await channel.declare_queue(
            deliver_queue(code), durable=True, arguments=self.participant_queue_arguments()
        )
        await queue.bind(deliver, routing_key=code)
        inbound = await channel.get_exchange(INBOUND_EXCHANGE)
        arguments = {**self.participant_queue_arguments(), "x-single-active-consumer": True}
        own = await channel.declare_queue(inbound_queue(code), durable=True, arguments=arguments)
        await own.bind(inbound, routing_key=code)

    def grant_participant(self, management: Management, code: str, password: str | None) -> None:
        """The participant's broker user: write to inbound with its own key, read its own queue, configure nothing;
        at most ``max_connections`` connections and ``max_channels`` channels, so no one starves the others."""
        management.put_user(code, password)
        management.put_permissions(
            self.vhost,
            code,
            configure="^$",
            write=f"^{re.escape(INBOUND_EXCHANGE)}$",
            read=f"^{re.escape(deliver_queue(code))}$",
        )
        management.put_topic_permissions(self.vhost, code, INBOUND_EXCHANGE, write=f"^{re.escape(code)}$", read="^$")
        management.put_user_limits(code, max_connections=self.max_connections, max_channels=self.max_channels)
