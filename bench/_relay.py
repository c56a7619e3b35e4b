"""The bare relay that gives the broker ceiling: the hub's broker work and nothing else.

    echo AMQP_URL | python -m bench._relay [--batch N | --concurrency N]

It takes messages from queue A, publishes each unchanged to queue B and a small reply to queue C (each
confirmed by the broker), then acks the deliveries. No parsing, no signature, no ledger. It runs until SIGTERM.

With ``--batch N`` it works as the hub does: it takes what is waiting (at least one delivery, at most N),
publishes every onward message and every reply at once, and once the broker has confirmed them all, acks the
run with one ``basic.ack`` (multiple) for its last delivery; then it takes the next batch. With
``--concurrency N`` (the default, 1) it handles each message on its own: publish, confirm, publish, confirm,
ack, with at most N messages in hand at once.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

INBOUND = "bench.relay.a"
ONWARD = "bench.relay.b"
REPLIES = "bench.relay.c"
PREFETCH = 64  # the hub's default (I2ES_PREFETCH)


async def declare_queues(url: str) -> None:
    """The relay's three quorum queues, durable like the hub's."""
    connection = await aio_pika.connect(url, client_properties={"connection_name": "i2es-bench-setup"})
    async with connection:
        channel = await connection.channel()
        for name in (INBOUND, ONWARD, REPLIES):
            await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})


def _onward(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The delivery, unchanged, as a persistent message for queue B."""
    return aio_pika.Message(
        message.body,
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _reply(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The small persistent reply for queue C, matched to the delivery by correlation_id."""
    return aio_pika.Message(
        b"ACCEPTED",
        correlation_id=message.message_id,
        content_type="text/plain",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def _relay_one(channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
    """One delivery on its own: onward message, then reply, each awaited until confirmed, then its ack."""
    exchange = channel.default_exchange
    await exchange.publish(_onward(message), routing_key=ONWARD, mandatory=True)
    await exchange.publish(_reply(message), routing_key=REPLIES, mandatory=True)
    await message.ack()


async def _relay_batch(channel: AbstractChannel, batch: Sequence[AbstractIncomingMessage]) -> None:
    """A run of deliveries: all publishes in flight together, then one multiple ack once all are confirmed."""
    exchange = channel.default_exchange
    publishes = [exchange.publish(_onward(m), routing_key=ONWARD, mandatory=True) for m in batch]
    publishes += [exchange.publish(_reply(m), routing_key=REPLIES, mandatory=True) for m in batch]
    await asyncio.gather(*publishes)
    # One consumer on one channel, one batch at a time: every earlier delivery is acked already, so the
    # batch is the run of outstanding deliveries and its last tag settles all of them.
    await batch[-1].ack(multiple=True)


class _Waiting:
    """The deliveries the broker has pushed and the relay has not taken yet, in the order they came."""

    def __init__(self) -> None:
        self._items: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def put(self, message: AbstractIncomingMessage) -> None:
        self._items.put_nowait(message)

    async def take(self, limit: int) -> list[AbstractIncomingMessage]:
        """Wait for one delivery, then take what else is already here: at most ``limit``."""
        taken = [await self._items.get()]
        while len(taken) < limit and not self._items.empty():
            taken.append(self._items.get_nowait())
        return taken


async def _until_stopped(stopping: asyncio.Event, step: asyncio.Task[int]) -> int | None:
    """The step's result, or None (the step cancelled) if ``stopping`` is set first."""
    stop = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if step not in done:
        step.cancel()
        return None
    return step.result()


async def _run_batches(
    channel: AbstractChannel, queue: AbstractQueue, batch: int, stopping: asyncio.Event
) -> tuple[int, int]:
    """Relay a batch at a time until stopped; returns how many messages were relayed, in how many batches."""
    waiting = _Waiting()
    await queue.consume(waiting.put)
    relayed = batches = 0

    async def step() -> int:
        taken = await waiting.take(batch)
        await _relay_batch(channel, taken)
        return len(taken)

    while not stopping.is_set():
        done = await _until_stopped(stopping, asyncio.create_task(step()))
        if done is None:
            break
        relayed += done
        batches += 1
    return relayed, batches


async def _run_singles(
    channel: AbstractChannel, queue: AbstractQueue, concurrency: int, stopping: asyncio.Event
) -> int:
    """Relay each message on its own, at most ``concurrency`` at once, until stopped; returns how many."""
    relayed = 0
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            print(f"relay_failed {task.exception()!r}", flush=True)
            stopping.set()

    async with queue.iterator() as messages:

        async def following() -> int:
            message = await messages.__anext__()
            await slots.acquire()
            task = asyncio.create_task(_relay_one(channel, message))
            running.add(task)
            task.add_done_callback(finished)
            return 1

        while not stopping.is_set():
            done = await _until_stopped(stopping, asyncio.create_task(following()))
            if done is None:
                break
            relayed += done
        await asyncio.gather(*running, return_exceptions=True)
    return relayed


async def relay(url: str, concurrency: int, batch: int | None) -> int:
    """Relay until SIGTERM or SIGINT, in batches of up to ``batch`` if given, else one message at a time."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    connection = await aio_pika.connect(url, client_properties={"connection_name": "i2es-bench-relay"})
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=max(PREFETCH, batch or 0))
        queue = await channel.get_queue(INBOUND, ensure=True)
        print("relay_started", flush=True)
        if batch is not None:
            relayed, batches = await _run_batches(channel, queue, batch, stopping)
        else:
            relayed = batches = await _run_singles(channel, queue, concurrency, stopping)
    print(f"relay_stopped relayed={relayed} batches={batches}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Reads the AMQP URL (with the relay's vhost) from its input.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--batch", type=int, help="take up to N waiting messages and relay them as one batch")
    mode.add_argument("--concurrency", type=int, default=1, help="messages handled at once, each alone (default 1)")
    args = parser.parse_args()
    if (args.batch is not None and args.batch < 1) or args.concurrency < 1:
        parser.error("--batch and --concurrency take a number of 1 or more")
    return asyncio.run(relay(sys.stdin.readline().strip(), args.concurrency, args.batch))


if __name__ == "__main__":
    sys.exit(main())
