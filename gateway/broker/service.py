"""The hub as a broker consumer: take from every inbound queue in turn, handle in batches, then acknowledge; drain
on SIGTERM.

The hub consumes each participant's inbound queue (``i2es.inbound.<CODE>``), the queue of what no binding took
(``i2es.inbound``) and the operators' replays (``i2es.replay``), each with its own prefetch, and serves them round
robin. It holds at most ``prefetch`` messages of each queue in memory, each at most the broker's largest message.
What is waiting when the hub is free is handled as one batch of at most ``batch_max``: one ledger commit, documents
and acknowledgements published together, then one acknowledgement to the broker for the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import aio_pika
import aiormq.abc
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from gateway.broker.acks import Outstanding
from gateway.broker.inbox import FairInbox
from gateway.broker.outbox import BrokerOutbox
from gateway.broker.topology import INBOUND_QUEUE, REPLAY_QUEUE, inbound_queue
from gateway.hub import Hub, Outbox, Recorded
from gateway.ledger.model import LedgerUnavailable
from gateway.memory import give_back_free_memory
from gateway.pipeline import Inbound
from gateway.shards import Shard, is_leader, to_hand_back

log = structlog.get_logger("i2es.hub")

RETRY_PAUSE = 1.0
# Batches recorded and being sent at once: the next is checked and committed while the broker confirms these.
SENDS_IN_FLIGHT = 4
# Turns of the event loop given to a batch's publishes once it is sent, before the next batch is checked: enough
# for its documents and acknowledgements to be written, up to a bound (the rest go on between the next batch's
# messages).
PUBLISH_TURNS_PER_MESSAGE = 4
PUBLISH_TURNS_MAX = 64
ONE_HUB = Shard()
# With more than this waiting in hand, a message is opened by a worker process as it arrives: the queue is long
# enough for the workers to run beside the hub. With less, the hub opens it in its batch, sooner than another
# process could be woken for it.
OPEN_AHEAD_BACKLOG = 8
# On a replayed message, the broker user who sent it first: only administrators can write to the replay queue.
REPLAY_USER_HEADER = "x-i2es-replay-user-id"


def header_text(message: AbstractIncomingMessage, name: str) -> str | None:
    value = (message.headers or {}).get(name)
    return value.decode() if isinstance(value, bytes) else (str(value) if value else None)


def inbound_from(message: AbstractIncomingMessage, replayed: bool = False) -> Inbound:
    user_id = header_text(message, REPLAY_USER_HEADER) if replayed else message.user_id
    return Inbound(
        body=message.body,
        user_id=user_id,
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        delivery_mode=int(message.delivery_mode) if message.delivery_mode is not None else None,
    )


class HubService:
    """Consumes the inbound queues, a batch at a time, until stopped."""

    def __init__(
        self,
        make_hub: Callable[[Outbox], Hub],
        connection: AbstractRobustConnection,
        prefetch: int,
        schedule_seconds: float = 30.0,
        participants: Callable[[], Iterable[str]] = tuple,
        ledger_retry_seconds: float = 2.0,
        batch_max: int = 64,
        shard: Shard = ONE_HUB,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.make_hub = make_hub
        self.schedule_seconds = schedule_seconds
        self.connection = connection
        self.prefetch = prefetch
        self.participants = participants
        self.ledger_retry_seconds = ledger_retry_seconds
        self.batch_max = batch_max
        self.shard = shard
        self.heartbeat_seconds = heartbeat_seconds
        self.processed = 0
        self._stopping = asyncio.Event()
        self._inbox: FairInbox[AbstractIncomingMessage] = FairInbox()
        self._consuming: set[str] = set()
        self._channel: AbstractChannel | None = None
        self._hub: Hub | None = None  # once running: what arrives behind a backlog is opened ahead
        # The deliveries in hand, by the channel they came on, for acknowledging runs of them at once.
        self._outstanding: weakref.WeakKeyDictionary[object, Outstanding] = weakref.WeakKeyDictionary()
        # Sharing the queues with other hubs: each queue's consumer, the others' queues this hub is serving (since
        # when), the live hubs' shards with when each was last seen, and whether this hub is the leader.
        self._consumers: dict[str, tuple[AbstractQueue, str]] = {}
        self._serving: dict[str, datetime] = {}
        self._seen: dict[str, datetime] = {}
        self._leader = True
        self._started_at = datetime.now(UTC)
        # Batches recorded and being sent: at most SENDS_IN_FLIGHT at once.
        self._sends: set[asyncio.Task[None]] = set()
        self._sending = asyncio.Semaphore(SENDS_IN_FLIGHT)
        # One settling at a time, its acks written before the next is decided (see ``_settle``).
        self._settling = asyncio.Lock()

    async def run(self) -> None:
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.prefetch)  # per consumer: per inbound queue
        self._channel = channel
        hub = self.make_hub(await BrokerOutbox.open(channel))
        await hub.start_opening()
        self._hub = hub
        await self.consume_registered(standby=False)  # the others' queues on the scheduler's next pass
        log.info(
            "hub_started", queues=sorted(self._consuming), prefetch=self.prefetch, shard=str(self.shard),
            hub=hub.ledger.owner,
        )  # fmt: skip
        self._beat(hub)  # alive once consuming its own shard: the others may hand it back now
        scheduler = asyncio.create_task(self._schedule(hub))
        heartbeat = asyncio.create_task(self._heartbeat(hub))
        backlog = asyncio.create_task(self._route_held_back(hub))
        stop = asyncio.create_task(self._stopping.wait())
        while not self._stopping.is_set():
            await self._hand_back()
            following = asyncio.create_task(self._inbox.get_many(self.batch_max))
            done, _ = await asyncio.wait({following, stop}, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                break
            await self._process(hub, following.result())
        stop.cancel()
        await self._drain_sends()
        for task in (scheduler, heartbeat, backlog):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await hub.stop_opening()
        with contextlib.suppress(Exception):  # the others adopt what this hub leaves unsent at once
            hub.ledger.peers.leave(hub.ledger.owner)
        # What is still in hand goes back to its queue, for this hub's next start or another hub.
        with contextlib.suppress(Exception):
            await channel.close()
        log.info("hub_stopped", processed=self.processed)

    async def consume_registered(self, standby: bool = True) -> None:
        """Start consuming the hub's queues and every registered participant's that is not consumed yet: first
        this hub's shard of them, then (with ``standby``) the others', where the broker makes it a standby
        consumer behind their owner."""
        codes = list(self.participants())
        names = [REPLAY_QUEUE, INBOUND_QUEUE, *(inbound_queue(c) for c in codes if self.shard.owns(c, codes))]
        if standby:
            names += [inbound_queue(c) for c in codes if not self.shard.owns(c, codes)]
        for name in names:
            if name not in self._consuming:
                await self._consume(name)

    async def _consume(self, name: str) -> None:
        assert self._channel is not None
        # A passive declare of a missing queue closes its channel: ask on a channel of its own first.
        try:
            async with self.connection.channel() as probe:
                await probe.get_queue(name, ensure=True)
        except aio_pika.exceptions.ChannelClosed:
            log.warning("queue_missing", queue=name, action="run `i2es init` to declare the participants' queues")
            return
        queue = await self._channel.get_queue(name, ensure=True)
        inbox = self._inbox

        outstanding = self._outstanding
        code = name.removeprefix(inbound_queue(""))
        foreign = name.startswith(inbound_queue("")) and not self.shard.owns(code, self.participants())

        async def take(message: AbstractIncomingMessage) -> None:
            if name not in self._consuming:  # handed back a moment ago: its owner takes it, in order
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
            if message.delivery_tag is not None:
                outstanding.setdefault(message.channel, Outstanding()).received(message.delivery_tag)
            if foreign:
                self._serving.setdefault(code, datetime.now(UTC))
            inbox.put(name, message)
            if self._hub is not None and len(inbox) > OPEN_AHEAD_BACKLOG:
                self._hub.open_ahead(message.body)

        self._consuming.add(name)
        self._consumers[name] = (queue, await queue.consume(take))

    async def _route_held_back(self, hub: Hub) -> None:
        """Documents held back behind a recipient's backlog go out as soon as the batch that held them is sent,
        not at the scheduler's next pass."""
        while True:
            await hub.held_back.wait()
            hub.held_back.clear()
            try:
                await self._route_deferred(hub)
            except Exception as error:  # the scheduler tries again at its next pass
                log.warning("schedule_failed", error=f"{type(error).__name__}: {error}")
                await asyncio.sleep(self.ledger_retry_seconds)

    @staticmethod
    async def _route_deferred(hub: Hub) -> None:
        routed = await hub.route_deferred()
        if routed:
            log.info("deferred_delivered", count=routed)

    async def _schedule(self, hub: Hub) -> None:
        """New participants' queues (and, from the second pass, the other hubs' as a standby), deadlines, deferred
        deliveries and unsent notices, and the memory a burst left free: at start, then every few seconds."""
        first = True
        while True:
            try:
                await self.consume_registered(standby=not first)  # hubs starting together: their own queues first
                first = False
                await self._route_deferred(hub)
                sent = await hub.check_deadlines(expiries=self._leader)
                if sent:
                    log.info("notices_sent", count=sent)
            except Exception as error:
                log.warning("schedule_failed", error=f"{type(error).__name__}: {error}")
            give_back_free_memory()
            await asyncio.sleep(self.schedule_seconds)

    def _beat(self, hub: Hub) -> None:
        """Say this hub is alive, learn which others are, and adopt what stopped ones left unsent."""
        now = datetime.now(UTC)
        peers = hub.ledger.peers
        peers.beat(hub.ledger.owner, str(self.shard), now, self._started_at)
        alive = peers.alive(now, timedelta(seconds=3 * self.heartbeat_seconds))
        me = alive.get(hub.ledger.owner)
        if me is not None and me.started_at != self._started_at:
            log.error(
                "hub_name_taken", hub=hub.ledger.owner, other_started_at=me.started_at.isoformat(),
                action="give each hub process its own I2ES_HUB_SHARD (and I2ES_HUB_NAME)",
            )  # fmt: skip
        self._seen = {peer.shard: peer.seen_at for peer in alive.values()}
        self._leader = is_leader(self.shard, self._seen)
        hub.adopt(set(alive))

    async def _heartbeat(self, hub: Hub) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                self._beat(hub)
            except Exception as error:
                log.warning("heartbeat_failed", error=f"{type(error).__name__}: {error}")

    async def _hand_back(self) -> None:
        """Between batches: give back the queues of hubs that are alive again (see ``gateway.shards``). What is
        in hand from such a queue goes back to it, in order, for its owner."""
        if not self._serving:
            return
        giving = to_hand_back(self._serving, self.shard, self.participants(), self._seen)
        if giving:
            await self._drain_sends()  # what was taken from those queues is published before their owner goes on
        for code in giving:
            name = inbound_queue(code)
            del self._serving[code]
            self._consuming.discard(name)
            queue, tag = self._consumers.pop(name)
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
            returned = self._inbox.take_all(name)
            await self._settle(sorted(returned, key=lambda m: m.delivery_tag or 0), requeue=True)
            log.info("queue_handed_back", queue=name, returned=len(returned), to_shard=self.shard.owner_of(
                code, self.participants()))  # fmt: skip

    def stop(self) -> None:
        """Finish the message in hand, then stop consuming; unacknowledged ones return to their queue."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)

    async def _process(self, hub: Hub, batch: Sequence[tuple[str, AbstractIncomingMessage]]) -> None:
        """Handle what was taken as one batch (one ledger commit), then acknowledge it: never before the commit."""
        started = time.perf_counter()
        inbounds = [inbound_from(message, replayed=queue == REPLAY_QUEUE) for queue, message in batch]
        unavailable_since: float | None = None
        while True:
            try:
                recorded = await hub.record(inbounds)
                break
            except LedgerUnavailable as error:
                # Not the messages' fault: keep them in hand, take nothing else, and try again until the ledger
                # can be written (or the hub is stopped, and they go back to their queues).
                if unavailable_since is None:
                    unavailable_since = time.monotonic()
                    log.error("ledger_unavailable", reason=str(error), action="the hub takes no message until then")
                if self._stopping.is_set():
                    return
                await asyncio.sleep(self.ledger_retry_seconds)
            except Exception:
                # A fault outside the checks (the broker): the deliveries go back; the delivery limit sends one to
                # the dead-letter queue if it keeps failing.
                log.exception("message_failed", count=len(batch), elapsed_ms=_elapsed_ms(started))
                await asyncio.sleep(RETRY_PAUSE)
                await self._settle([message for _, message in batch], requeue=True)
                return
        if unavailable_since is not None:
            log.info("ledger_available", after_seconds=round(time.monotonic() - unavailable_since, 1))
        # Committed: while it is being sent (the broker's confirms take a while), the next batch is recorded.
        await self._sending.acquire()
        recorded.steps.done("wait")  # for one of the SENDS_IN_FLIGHT slots
        task = asyncio.create_task(self._send(hub, batch, recorded, started))
        self._sends.add(task)
        task.add_done_callback(self._sent)
        # Let the batch's publishes reach the socket before the next batch's checks take the event loop for
        # milliseconds: each publish is a few tasks deep, and is written, then drained, before the next one on the
        # channel. Without these turns a document could wait for the whole of the next batch's checks.
        for _ in range(min(PUBLISH_TURNS_MAX, PUBLISH_TURNS_PER_MESSAGE * (len(batch) + 1))):
            await asyncio.sleep(0)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._sending.release()

    async def _drain_sends(self) -> None:
        """Until every batch recorded has been sent and acknowledged (or returned)."""
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)

    async def _send(
        self, hub: Hub, batch: Sequence[tuple[str, AbstractIncomingMessage]], recorded: Recorded, started: float
    ) -> None:
        """Publish what a batch decided, then acknowledge its deliveries; send them back on a broker fault."""
        try:
            outcomes = await hub.send(recorded)
        except Exception:
            # A fault outside the checks (the broker): the deliveries go back, and come again as resends of what
            # the ledger holds; the delivery limit sends one to the dead-letter queue if it keeps failing.
            log.exception("message_failed", count=len(batch), elapsed_ms=_elapsed_ms(started))
            await asyncio.sleep(RETRY_PAUSE)
            await self._settle([message for _, message in batch], requeue=True)
            return
        await self._settle([message for _, message in batch])
        recorded.steps.done("settle")
        self.processed += len(batch)
        elapsed = _elapsed_ms(started)
        for (queue, message), outcome in zip(batch, outcomes, strict=True):
            entry = outcome.entry
            log.info(
                "message",
                queue=queue,
                outcome=outcome.status,
                message_id=entry.message_id if entry else message.message_id,
                amqp_message_id=message.message_id,
                broker_user=message.user_id,
                sender=entry.sender if entry else message.user_id,
                recipient=entry.recipient if entry else None,
                type=entry.type if entry else message.type,
                ledger_sequence=entry.sequence if entry else None,
                reasons=[r.code for r in outcome.reasons] or None,
                elapsed_ms=elapsed,
                steps_ms=recorded.steps.ms,
                batch=len(batch),
                hub=hub.ledger.owner,
            )

    async def _settle(self, messages: Sequence[AbstractIncomingMessage], requeue: bool = False) -> None:
        """Acknowledge handled deliveries (one ``multiple`` ack for each run of them) or, with ``requeue``, return
        them to their queues. On a lost channel the broker has requeued them already: nothing to do.

        Batches being sent settle one at a time, each once its acks are written: the client's write queue is
        bounded, and an ack waiting for room there can be overtaken. A ``multiple`` ack that overtook a single ack
        of an earlier batch for a lower tag would settle that delivery first, and the broker would close the
        channel on the single one (an unknown delivery tag), sending back every delivery in hand to be taken again.
        """
        async with self._settling:
            await self._settle_now(messages, requeue)

    async def _settle_now(self, messages: Sequence[AbstractIncomingMessage], requeue: bool) -> None:
        by_channel: dict[int, tuple[aiormq.abc.AbstractChannel, list[AbstractIncomingMessage]]] = {}
        for message in messages:
            try:
                channel = message.channel
            except aio_pika.exceptions.ChannelInvalidStateError:
                continue  # closed: the broker has put it back in its queue
            by_channel.setdefault(id(channel), (channel, []))[1].append(message)
        for channel, handled in by_channel.values():
            outstanding = self._outstanding.get(channel)
            tags = {m.delivery_tag: m for m in handled if m.delivery_tag is not None}
            with contextlib.suppress(Exception):
                if requeue or outstanding is None:
                    if outstanding is not None:
                        outstanding.forget(tags)
                    await asyncio.gather(*(m.nack(requeue=True) if requeue else m.ack() for m in handled))
                    continue
                multiple, singles = outstanding.settle(tags)
                acks = [tags[tag].ack() for tag in singles]
                if multiple is not None:
                    acks.append(tags[multiple].ack(multiple=True))
                await asyncio.gather(*acks)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A named, reconnecting connection, so operators see who is connected."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name})
