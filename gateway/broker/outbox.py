"""The hub's publisher: deliveries, acknowledgements and dead letters, each confirmed by the broker."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq.exceptions import DeliveryError, PublishError

from gateway.broker.topology import DEAD_EXCHANGE, DELIVER_EXCHANGE, deliver_queue
from gateway.hub import DeliveryRefused
from gateway.ledger.model import LedgerEntry
from gateway.pipeline import CONTENT_TYPE, Inbound


class BrokerOutbox:
    """Publishes with ``mandatory`` on a confirming channel: a message no queue takes is an error, not a loss.

    A participant's queue that is full (its length limit, ``reject-publish``) makes the broker refuse the
    publish with a nack: that is ``DeliveryRefused``, and the hub keeps the message to send it later.
    """

    def __init__(self, deliver: AbstractExchange, dead: AbstractExchange) -> None:
        self._deliver = deliver
        self._dead = dead

    @classmethod
    async def open(cls, channel: AbstractChannel) -> BrokerOutbox:
        return cls(await channel.get_exchange(DELIVER_EXCHANGE), await channel.get_exchange(DEAD_EXCHANGE))

    async def deliver(self, recipient: str, entry: LedgerEntry) -> None:
        message = aio_pika.Message(
            entry.body,  # unchanged, byte for byte
            message_id=entry.message_id,
            type=entry.type,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={"x-i2es-from": entry.sender or "", "x-i2es-ledger-sequence": entry.sequence},
        )
        await self._publish(message, recipient)

    async def _publish(self, message: aio_pika.Message, participant: str) -> None:
        try:
            await self._deliver.publish(message, routing_key=participant, mandatory=True)
        except PublishError:
            raise
        except DeliveryError:
            raise DeliveryRefused(
                participant, f"the broker refused the message: {deliver_queue(participant)} is full"
            ) from None

    async def acknowledge(self, participant: str, entry: LedgerEntry, correlation_id: str | None) -> None:
        message = aio_pika.Message(
            entry.ack,
            message_id=entry.ack_id,
            type="Acknowledgement",
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            # The AMQP message_id the sender used: correlates even when the envelope could not be read.
            correlation_id=correlation_id,
        )
        await self._publish(message, participant)

    async def notify(self, participant: str, message_id: str, body: bytes) -> None:
        message = aio_pika.Message(
            body,
            message_id=message_id,
            type="Notice",
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._publish(message, participant)

    async def dead_letter(self, inbound: Inbound, reason: str) -> None:
        headers: dict[str, object] = {"x-i2es-reason": reason}
        if inbound.user_id:
            headers["x-i2es-user-id"] = inbound.user_id
        message = aio_pika.Message(
            inbound.body,
            message_id=inbound.message_id,
            type=inbound.type,
            content_type=inbound.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,  # type: ignore[arg-type]
        )
        await self._dead.publish(message, routing_key="", mandatory=True)
