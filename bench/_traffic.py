"""Senders and receivers on the broker, and a record of when each message was published, answered and delivered.

A sender publishes with publisher confirms and never waits for one message's answer before the next:
``saturate`` keeps a bounded number of messages in flight, ``offer`` publishes by the clock (open loop).
Answers (the hub's acknowledgements) come back on the sender's own queue, matched by correlation_id;
deliveries reach the receivers' queues, matched by message_id, and are acknowledged without a receipt.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage

from bench._messages import Outgoing
from bench._relay import INBOUND, ONWARD, REPLIES
from bench._site import BenchError, Site
from gateway.broker.topology import INBOUND_EXCHANGE, deliver_queue
from gateway.envelope import body_document
from gateway.reading import DOCUMENT_NS, parse_xml

CONSUMER_PREFETCH = 256


@dataclass(frozen=True)
class SenderRoute:
    """Where one sender publishes, as whom, and where its answers come back."""

    code: str
    url: str
    exchange: str  # "" is the default exchange
    routing_key: str
    answers: str
    user_id: str | None


@dataclass(frozen=True)
class ReceiverRoute:
    code: str
    url: str
    queue: str


def hub_routes(site: Site) -> tuple[list[SenderRoute], list[ReceiverRoute]]:
    """Each participant on its own connection, as its own broker user, as an adapter would be."""
    senders = [
        SenderRoute(code, site.participant_url(code), INBOUND_EXCHANGE, code, deliver_queue(code), code)
        for code in site.senders
    ]
    receivers = [ReceiverRoute(code, site.participant_url(code), deliver_queue(code)) for code in site.receivers]
    return senders, receivers


def relay_routes(site: Site) -> tuple[list[SenderRoute], list[ReceiverRoute]]:
    """As many senders and receivers as for the hub, on the relay's queues (as the administrator)."""
    url = site.admin_url()
    senders = [SenderRoute(code, url, "", INBOUND, REPLIES, None) for code in site.senders]
    receivers = [ReceiverRoute(code, url, ONWARD) for code in site.receivers]
    return senders, receivers


def acknowledgement_status(body: bytes) -> str:
    """The Status of one of the hub's acknowledgements (its signature is checked after the timing)."""
    status = body_document(parse_xml(body)).find(f"{{{DOCUMENT_NS}}}Status")
    return "" if status is None or status.text is None else status.text.strip()


@dataclass
class Record:
    """When each message was published, confirmed, answered and delivered (``time.perf_counter``)."""

    read_status: Callable[[bytes], str]
    keep_answers: bool = True
    published: dict[str, float] = field(default_factory=dict)
    confirmed: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    delivered: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    answers: dict[str, bytes] = field(default_factory=dict)
    altered: list[str] = field(default_factory=list)  # delivered bytes that differ from those sent
    unexpected: Counter[str] = field(default_factory=Counter)  # answers and deliveries of no message sent
    duplicates: Counter[str] = field(default_factory=Counter)  # a second answer or delivery of one message
    failures: list[BaseException] = field(default_factory=list)
    on_answer: Callable[[], None] | None = None
    _digests: dict[str, bytes] = field(default_factory=dict, repr=False)
    _awaiting_answer: set[str] = field(default_factory=set, repr=False)
    _awaiting_delivery: set[str] = field(default_factory=set, repr=False)
    _settled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        self._settled.set()

    def expect(self, outgoing: Outgoing, at: float) -> None:
        key = outgoing.message_id
        self.published[key] = at
        self._digests[key] = hashlib.sha256(outgoing.body).digest()
        self._awaiting_answer.add(key)
        self._awaiting_delivery.add(key)
        self._settled.clear()

    def answer(self, key: str, body: bytes, at: float) -> None:
        if key in self.answered:
            self.duplicates["answer"] += 1
            return
        if key not in self._awaiting_answer:
            self.unexpected["answer"] += 1
            return
        self.answered[key] = at
        status = self.read_status(body)
        self.status[key] = status
        if self.keep_answers:
            self.answers[key] = body
        self._awaiting_answer.discard(key)
        if status != "ACCEPTED":  # a refused message is not delivered
            self._awaiting_delivery.discard(key)
        self._check_settled()
        if self.on_answer is not None:
            self.on_answer()

    def deliver(self, key: str, body: bytes, at: float) -> None:
        if key in self.delivered:
            self.duplicates["delivery"] += 1
            return
        digest = self._digests.pop(key, None)
        if digest is None:
            self.unexpected["delivery"] += 1
            return
        self.delivered[key] = at
        if hashlib.sha256(body).digest() != digest:
            self.altered.append(key)
        self._awaiting_delivery.discard(key)
        self._check_settled()

    def _check_settled(self) -> None:
        if not self._awaiting_answer and not self._awaiting_delivery:
            self._settled.set()

    def check_once(self) -> dict[str, int]:
        """Fail if any message was answered or delivered more than once; else the (zero) counts of both."""
        counts = {"answers": self.duplicates["answer"], "deliveries": self.duplicates["delivery"]}
        if any(counts.values()):
            raise BenchError(
                f"messages arrived more than once: {counts['deliveries']} duplicate deliveries, "
                f"{counts['answers']} duplicate answers"
            )
        return counts

    async def settle(self, timeout: float) -> None:
        """Wait until every message published so far is answered and, if accepted, delivered."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            raise BenchError(
                f"after {timeout:.0f} s, {len(self._awaiting_answer)} message(s) still wait for an answer "
                f"and {len(self._awaiting_delivery)} for their delivery"
            ) from None
        if self.failures:
            raise BenchError(f"{len(self.failures)} publish(es) failed: {self.failures[0]!r}")


@dataclass
class _Sender:
    route: SenderRoute
    connection: AbstractConnection
    channel: AbstractChannel
    exchange: AbstractExchange


class Traffic:
    """The senders' and receivers' connections, one per participant, named for it."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self._senders: dict[str, _Sender] = {}
        self._connections: list[AbstractConnection] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, senders: Iterable[SenderRoute], receivers: Iterable[ReceiverRoute], record: Record) -> Traffic:
        traffic = cls(record)
        try:
            for route in senders:
                await traffic._open_sender(route)
            for receiver in receivers:
                await traffic._open_receiver(receiver)
        except BaseException:
            await traffic.close()
            raise
        return traffic

    async def _connect(self, url: str, name: str) -> AbstractConnection:
        connection = await aio_pika.connect(url, client_properties={"connection_name": name})
        self._connections.append(connection)
        return connection

    async def _open_sender(self, route: SenderRoute) -> None:
        connection = await self._connect(route.url, f"i2es-bench-sender-{route.code}")
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=CONSUMER_PREFETCH)
        exchange = (
            channel.default_exchange if not route.exchange else await channel.get_exchange(route.exchange, ensure=False)
        )
        answers = await channel.get_queue(route.answers, ensure=False)
        await answers.consume(self._on_answer)
        self._senders[route.code] = _Sender(route, connection, channel, exchange)

    async def _open_receiver(self, route: ReceiverRoute) -> None:
        connection = await self._connect(route.url, f"i2es-bench-receiver-{route.code}")
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=CONSUMER_PREFETCH)
        queue = await channel.get_queue(route.queue, ensure=False)
        await queue.consume(self._on_delivery)

    async def _on_answer(self, message: AbstractIncomingMessage) -> None:
        at = time.perf_counter()
        self.record.answer(message.correlation_id or "", message.body, at)
        await message.ack()

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        at = time.perf_counter()
        self.record.deliver(message.message_id or "", message.body, at)
        await message.ack()  # stored: no receipt, only the document path is measured

    def send(self, outgoing: Outgoing) -> None:
        """Publish now, in the background: the caller does not wait for the broker's confirm."""
        sender = self._senders[outgoing.sender]
        self.record.expect(outgoing, time.perf_counter())
        task = asyncio.create_task(self._publish(sender, outgoing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, sender: _Sender, outgoing: Outgoing) -> None:
        message = aio_pika.Message(
            outgoing.body,
            message_id=outgoing.message_id,
            user_id=sender.route.user_id,
            content_type="application/xml",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=outgoing.type,
        )
        try:
            await sender.exchange.publish(message, routing_key=sender.route.routing_key)
        except Exception as error:
            self.record.failures.append(error)
            return
        self.record.confirmed[outgoing.message_id] = time.perf_counter()

    async def close(self) -> None:
        for connection in reversed(self._connections):
            await connection.close()
        self._connections.clear()


async def saturate(traffic: Traffic, messages: Sequence[Outgoing], window: int, timeout: float) -> None:
    """Publish as fast as the answers allow, with at most ``window`` messages published and not yet answered."""
    slots = asyncio.Semaphore(window)
    traffic.record.on_answer = slots.release
    try:
        for outgoing in messages:
            await slots.acquire()
            traffic.send(outgoing)
        await traffic.record.settle(timeout)
    finally:
        traffic.record.on_answer = None


async def offer(traffic: Traffic, make: Callable[[int], Outgoing], rate: float, count: int) -> list[float]:
    """Publish ``count`` messages at ``rate`` a second, each at its time whatever happened to the others.

    Returns each message's lateness: how long after its due time it was published (the sender's own delay).
    """
    start = time.perf_counter() + 0.05
    lateness = []
    for index in range(count):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        outgoing = make(index)
        lateness.append(time.perf_counter() - due)
        traffic.send(outgoing)
    return lateness
