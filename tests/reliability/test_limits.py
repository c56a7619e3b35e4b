"""Limits and faults that must stop nothing else and lose nothing: a recipient that never reads its queue, a ledger
whose disk is full, a message that keeps failing, one country's flood."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from bench._messages import ExportAuthorizations
from bench._site import Site, api, bench_site
from gateway.admin import management
from gateway.ledger.store import SqliteLedger
from gateway.settings import PROJECT_ROOT
from tests.support.faults import Exchange, HubProcess

pytestmark = pytest.mark.reliability


def i2es(site: Site, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=PROJECT_ROOT,
        env=site.hub_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.fixture
def small_queues(tmp_path: Path) -> Iterator[Site]:
    with bench_site(senders=2, receivers=2, parent=tmp_path, queue_max_length=5, schedule_seconds=0.5) as made:
        yield made


async def test_a_recipient_that_never_reads_gets_nothing_dropped_and_the_sender_is_told(
    small_queues: Site, tmp_path: Path
) -> None:
    site = small_queues
    hub = HubProcess(site, tmp_path / "hub.log")
    factory = ExportAuthorizations(site.signers())
    exchange = Exchange(site, [factory.sign("DE", "CH") for _ in range(12)])
    hub.start()
    try:
        await exchange.connect(only=("DE",))  # CH is not reading
        await exchange.send_all(concurrency=1)
        assert all(a.accepted for a in exchange.acknowledgements.values())
        await asyncio.sleep(1.0)  # each notice follows its acknowledgement
        held = 12 - len(exchange.notices)
        # A quorum queue applies its limit once the messages it holds reach it: 5, or one more in flight.
        assert held in (5, 6)
        deadline = time.monotonic() + 15
        queue: dict[str, object] = {}
        while "messages" not in queue and time.monotonic() < deadline:  # the broker's statistics lag a little
            queue = management(site.settings).queue(site.vhost, "i2es.deliver.CH")
            await asyncio.sleep(0.5)
        assert queue["messages"] == held
        assert all(b"<Kind>DELIVERY_DEFERRED</Kind>" in n for n in exchange.notices)
        assert b"i2es.deliver.CH is full" in exchange.notices[0]
        await exchange.connect(only=("CH",))  # CH reads: the rest follows, in order
        await exchange.wait_delivered(timeout=30)
    finally:
        await exchange.close()
        hub.stop()
    figures = exchange.figures()
    print(figures.line("recipient's queue limited to 5"))
    assert figures.lost == 0 and figures.duplicated == 0
    assert exchange.arrivals == [m.message_id for m in exchange.outgoing]
    assert len(hub.said("delivery_deferred")) == 12 - held and hub.said("deferred_delivered")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    mount = tmp_path / "ledger-disk"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a small file system here (needs root): {exc}")
    try:
        with bench_site(senders=2, receivers=2, parent=tmp_path, ledger_url=f"sqlite:///{mount}/hub.sqlite") as site:
            yield site, mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_ledger_disk_stops_the_hub_which_says_why_and_resumes(
    full_disk: tuple[Site, Path], tmp_path: Path
) -> None:
    site, mount = full_disk
    if True:
        hub = HubProcess(site, tmp_path / "hub.log", I2ES_LEDGER_RETRY_SECONDS="0.5")
        hub.start()
        filler = mount / "filler"
        with filler.open("wb") as handle, pytest.raises(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
                os.fsync(handle.fileno())
        exchange = Exchange.of(site, 40)
        await exchange.connect()
        try:
            sending = asyncio.create_task(exchange.send_all(concurrency=8))
            deadline = time.monotonic() + 30
            while not hub.said("ledger_unavailable") and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            taken_while_full = len(exchange.acknowledgements)
            await asyncio.sleep(2)
            assert len(exchange.acknowledgements) == taken_while_full  # nothing is answered while it cannot record
            filler.unlink()
            await sending
            await exchange.wait_delivered(timeout=30)
        finally:
            await exchange.close()
            hub.stop()
        figures = exchange.figures()
        print(figures.line(f"ledger disk full after {taken_while_full} acknowledgements"))
        said = hub.said("ledger_unavailable")
        assert said and "full" in json.loads(said[0])["reason"]
        assert hub.said("ledger_available")
        assert figures.lost == 0 and figures.rejected == 0 and figures.acknowledged == figures.sent


async def test_a_message_that_keeps_failing_goes_to_the_dead_letter_queue_and_an_operator_replays_it(
    site: Site, tmp_path: Path
) -> None:
    hub = HubProcess(site, tmp_path / "hub.log")
    hub.start()
    admin = management(site.settings)
    # DE's queue is gone (an operator's mistake): the hub cannot answer DE, so the message fails every time.
    api(admin, "DELETE", f"queues/{urllib.parse.quote(site.vhost, safe='')}/i2es.deliver.DE")
    outgoing = ExportAuthorizations(site.signers()).sign("DE", "CH")
    try:
        connection = await aio_pika.connect(site.participant_url("DE"))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("i2es.inbound", ensure=False)
            await exchange.publish(
                aio_pika.Message(
                    outgoing.body, message_id=outgoing.message_id, type=outgoing.type, user_id="DE",
                    content_type="application/xml", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key="DE",
            )  # fmt: skip
        deadline = time.monotonic() + 60
        listed: list[dict[str, object]] = []
        while time.monotonic() < deadline and not listed:
            listed = [
                r for r in json.loads(i2es(site, "dlq", "list", "--json")) if r["message_id"] == outgoing.message_id
            ]
            await asyncio.sleep(0.5)
        assert listed and listed[0]["user_id"] == "DE" and "delivery_limit" in str(listed[0]["reason"])
        assert len(hub.said("message_failed")) == site.settings.delivery_limit + 1  # the first try and each retry
        i2es(site, "init")  # declares the missing queue again
        exchange_of = Exchange(site, [outgoing])
        await exchange_of.connect(only=("DE", "CH"))
        print(i2es(site, "dlq", "replay", outgoing.message_id).strip())
        await exchange_of.wait_delivered(timeout=20)
        de = exchange_of.adapters["DE"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not hub.said("message"):
            await asyncio.sleep(0.2)
        await exchange_of.close()
    finally:
        hub.stop()
    assert exchange_of.delivered[outgoing.message_id] == 1  # routed once, before the acknowledgement failed
    replayed = [json.loads(line) for line in hub.said("message")]
    assert replayed and replayed[-1]["queue"] == "i2es.replay" and replayed[-1]["outcome"] == "RESENT"
    assert not [r for r in json.loads(i2es(site, "dlq", "list", "--json")) if r["message_id"] == outgoing.message_id]
    ledger = SqliteLedger(site.settings.ledger_path)
    try:
        assert [e.message_id for e in ledger.entries()] == [outgoing.message_id]
    finally:
        ledger.close()
    del de


async def test_one_countrys_flood_does_not_hold_back_another_countrys_message(site: Site, tmp_path: Path) -> None:
    hub = HubProcess(site, tmp_path / "hub.log")
    factory = ExportAuthorizations(site.signers())
    flood = [factory.sign("DE", "CH") for _ in range(600)]
    other = factory.sign("FR", "AT")
    hub.start()
    exchange = Exchange(site, [*flood, other])
    await exchange.connect()
    try:
        de = exchange.adapters["DE"]
        flooding = asyncio.gather(*(de.send_signed(m.body, timeout=300) for m in flood))
        await asyncio.sleep(1.0)  # the flood is queued
        started = time.perf_counter()
        ack = await exchange.adapters["FR"].send_signed(other.body, timeout=60)
        waited_ms = (time.perf_counter() - started) * 1000
        behind = len(flood) - sum(1 for m in flood if exchange.delivered[m.message_id])
        acks = await flooding
    finally:
        await exchange.close()
        hub.stop()
    print(f"FR's message acknowledged in {waited_ms:.0f} ms while {behind} of DE's {len(flood)} were still queued")
    assert ack.accepted and all(a.accepted for a in acks)
    assert behind > len(flood) // 2
