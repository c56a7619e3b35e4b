"""The bare relay that gives the broker ceiling: the hub's broker work and nothing else.

    echo AMQP_URL | python -m bench._relay [--concurrency N]

Like the hub's consumer, it takes a message from queue A (prefetch 64), publishes it unchanged to
queue B and a small reply to queue C (each confirmed by the broker before the next step), then acks
the delivery. No parsing, no signature, no ledger. With ``--concurrency 1`` (the default) it handles
one message at a time, as the hub does; with more, that many at once. It runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

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


async def _relay_one(channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
    exchange = channel.default_exchange
    onward = aio_pika.Message(
        message.body,
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await exchange.publish(onward, routing_key=ONWARD, mandatory=True)
    reply = aio_pika.Message(
        b"ACCEPTED",
        correlation_id=message.message_id,
        content_type="text/plain",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await exchange.publish(reply, routing_key=REPLIES, mandatory=True)
    await message.ack()


async def relay(url: str, concurrency: int) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    connection = await aio_pika.connect(url, client_properties={"connection_name": "i2es-bench-relay"})
    relayed = 0
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            print(f"relay_failed {task.exception()!r}", flush=True)
            stopping.set()

    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(INBOUND, ensure=True)
        print("relay_started", flush=True)
        async with queue.iterator() as messages:
            stop = asyncio.create_task(stopping.wait())
            while not stopping.is_set():
                following = asyncio.create_task(messages.__anext__())
                done, _ = await asyncio.wait({following, stop}, return_when=asyncio.FIRST_COMPLETED)
                if following not in done:
                    following.cancel()
                    break
                await slots.acquire()
                task = asyncio.create_task(_relay_one(channel, following.result()))
                running.add(task)
                task.add_done_callback(finished)
                relayed += 1
            stop.cancel()
            await asyncio.gather(*running, return_exceptions=True)
    print(f"relay_stopped relayed={relayed}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Reads the AMQP URL (with the relay's vhost) from its input.")
    parser.add_argument("--concurrency", type=int, default=1, help="messages handled at once (default 1)")
    concurrency = parser.parse_args().concurrency
    return asyncio.run(relay(sys.stdin.readline().strip(), concurrency))


if __name__ == "__main__":
    sys.exit(main())
