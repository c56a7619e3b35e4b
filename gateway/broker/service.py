"""The hub as a broker consumer: take from ``i2es.inbound``, handle, then acknowledge; drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from gateway.broker.outbox import BrokerOutbox
from gateway.broker.topology import INBOUND_QUEUE
from gateway.hub import Hub, Outbox
from gateway.pipeline import Inbound

log = structlog.get_logger("i2es.hub")

RETRY_PAUSE = 1.0


def inbound_from(message: AbstractIncomingMessage) -> Inbound:
    return Inbound(
        body=message.body,
        user_id=message.user_id,
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        delivery_mode=int(message.delivery_mode) if message.delivery_mode is not None else None,
    )


class HubService:
    """Consumes the inbound queue one message at a time, in order, until stopped."""

    def __init__(
        self,
        make_hub: Callable[[Outbox], Hub],
        connection: AbstractRobustConnection,
        prefetch: int,
        schedule_seconds: float = 30.0,
    ) -> None:
        self.make_hub = make_hub
        self.schedule_seconds = schedule_seconds
        self.connection = connection
        self.prefetch = prefetch
        self.processed = 0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.prefetch)
        hub = self.make_hub(await BrokerOutbox.open(channel))
        queue = await channel.get_queue(INBOUND_QUEUE, ensure=True)
        log.info("hub_started", queue=INBOUND_QUEUE, prefetch=self.prefetch)
        scheduler = asyncio.create_task(self._schedule(hub))
        async with queue.iterator() as messages:
            stop = asyncio.create_task(self._stopping.wait())
            while not self._stopping.is_set():
                following = asyncio.create_task(messages.__anext__())
                done, _ = await asyncio.wait({following, stop}, return_when=asyncio.FIRST_COMPLETED)
                if following not in done:
                    following.cancel()
                    break
                await self._process(hub, following.result())
            stop.cancel()
        scheduler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scheduler
        log.info("hub_stopped", processed=self.processed)

    async def _schedule(self, hub: Hub) -> None:
        """Deadlines, and notices left unsent by a stop: checked at start, then every few seconds."""
        while True:
            try:
                sent = await hub.check_deadlines()
                if sent:
                    log.info("notices_sent", count=sent)
            except Exception:
                log.exception("schedule_failed")
            await asyncio.sleep(self.schedule_seconds)

    def stop(self) -> None:
        """Finish the message in hand, then stop consuming; unacknowledged ones return to the queue."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)

    async def _process(self, hub: Hub, message: AbstractIncomingMessage) -> None:
        structlog.contextvars.bind_contextvars(amqp_message_id=message.message_id, broker_user=message.user_id)
        try:
            await self._handle(hub, message)
        finally:
            structlog.contextvars.clear_contextvars()

    async def _handle(self, hub: Hub, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        try:
            outcome = await hub.handle(inbound_from(message))
            await message.ack()
        except Exception:
            # A fault outside the checks (broker, disk): the delivery goes back; the delivery limit
            # sends it to the dead-letter queue if it keeps failing.
            log.exception("message_failed", elapsed_ms=_elapsed_ms(started))
            await asyncio.sleep(RETRY_PAUSE)
            with contextlib.suppress(Exception):  # on a lost channel the broker requeues it anyway
                await message.nack(requeue=True)
            return
        self.processed += 1
        entry = outcome.entry
        log.info(
            "message",
            outcome=outcome.status,
            message_id=entry.message_id if entry else message.message_id,
            sender=entry.sender if entry else message.user_id,
            recipient=entry.recipient if entry else None,
            type=entry.type if entry else message.type,
            ledger_sequence=entry.sequence if entry else None,
            reasons=[r.code for r in outcome.reasons] or None,
            elapsed_ms=_elapsed_ms(started),
        )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A named, reconnecting connection, so operators see who is connected."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name})
