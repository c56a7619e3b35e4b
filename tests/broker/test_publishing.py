"""A batch's documents leave the hub before the next batch is checked, on the real broker: a document does not
wait for the checks of the messages that came after it.

The hub runs in this test's event loop, so the time a document reaches the broker is taken by another process, a
consumer of its own on the recipient's routing key."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from adapters import Adapter
from gateway import hub as hub_module
from gateway.admin import vhost_url
from gateway.broker.topology import DELIVER_EXCHANGE
from gateway.envelope import body_document
from gateway.ledger import db
from gateway.pipeline import Checks, Inbound, Opened, Verdict
from tests.support.hub import RunningHub
from tests.support.pki import envelope_of, header_of

# Prints "ready", then "<MessageId> <time.time()>" for each document routed to CH, as it reaches the broker's queue.
OBSERVER = """
import asyncio, sys, time
import aio_pika

async def main(url, exchange):
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="CH")
    async def seen(message):
        print(message.message_id, time.time(), flush=True)
        await message.ack()
    await queue.consume(seen)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

CHECKS_SECONDS = 0.5  # how long the second message's checks hold the hub's event loop
SYNC_SECONDS = 0.3  # the ledger's sync, slowed: the second message arrives while the first is being synced


@pytest.fixture
def observer(hub: RunningHub) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", OBSERVER, vhost_url(hub.settings), DELIVER_EXCHANGE],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    yield process
    process.kill()
    process.wait()


async def test_a_document_reaches_the_broker_while_the_next_message_is_still_being_checked(
    hub: RunningHub,
    ch: Adapter,
    de: Adapter,
    observer: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = de.envelope(body_document(envelope_of("ExportAuthorization")), "CH")
    second = de.envelope(body_document(envelope_of("ExportAuthorization")), "CH")
    checked: dict[str, float] = {}
    judge, fdatasync = hub_module.judge, db.os.fdatasync

    def slow_judge(inbound: Inbound, found: Opened, checks: Checks, now: datetime) -> Verdict:
        if inbound.message_id == header_of(first).message_id:
            checked["first"] = time.time()
        if inbound.message_id == header_of(second).message_id:
            checked["from"] = time.time()
            time.sleep(CHECKS_SECONDS)  # the event loop is held, as by a heavy check
            checked["until"] = time.time()
        return judge(inbound, found, checks, now)

    def slow_sync(descriptor: int) -> None:
        time.sleep(SYNC_SECONDS)
        fdatasync(descriptor)

    assert (await de.send(body_document(envelope_of("ExportAuthorization")), "CH")).status == "ACCEPTED"  # running
    monkeypatch.setattr(hub_module, "judge", slow_judge)
    monkeypatch.setattr(db.os, "fdatasync", slow_sync)
    sending = [asyncio.create_task(de.send_signed(first))]
    while "first" not in checked:  # taken alone; the second comes while the first is being synced
        await asyncio.sleep(0.001)
    sending.append(asyncio.create_task(de.send_signed(second)))
    wanted = {header_of(first).message_id, header_of(second).message_id}
    arrivals = await asyncio.wait_for(asyncio.to_thread(_arrivals, observer, wanted), timeout=30)
    await asyncio.gather(*sending)

    assert checked["from"] - checked["first"] >= SYNC_SECONDS, "the two were checked in one batch"
    # The first document was at the broker before the hub had finished checking the second message.
    assert arrivals[header_of(first).message_id] < checked["until"]
    for _ in range(3):
        await (await ch.next_delivery(timeout=10)).accept()


def _arrivals(observer: subprocess.Popen[str], wanted: set[str]) -> dict[str, float]:
    """When the broker handed each of the ``wanted`` documents to the observer (by MessageId)."""
    assert observer.stdout is not None
    seen: dict[str, float] = {}
    while not wanted <= seen.keys():
        line = observer.stdout.readline()
        assert line, "the observer stopped"
        message_id, at = line.split()
        seen[message_id] = float(at)
    return seen
