"""Two hub processes sharing one PostgreSQL ledger and the same queues: the work is shared, nothing is done twice,
and what one leaves when it dies the other takes, and gives back when it returns."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench._site import Site
from gateway.ledger.model import LedgerEntry
from gateway.ledger.store import open_ledger
from tests.support.faults import Exchange, HubProcess

pytestmark = pytest.mark.reliability
# A batch's steps, in the order they run: what each message's log line times.
STEPS = ["open", "record", "sync", "wait", "deliver", "acknowledge", "settle"]


def hubs(site: Site, folder: Path, ledger_url: str) -> tuple[HubProcess, HubProcess]:
    def hub(k: int) -> HubProcess:
        return HubProcess(
            site,
            folder / f"hub-{k}.log",
            I2ES_LEDGER_URL=ledger_url,
            I2ES_HUB_SHARD=f"{k}/2",
            I2ES_HUB_NAME=f"hub-{k}",
            I2ES_HEARTBEAT_SECONDS="0.5",
            I2ES_SCHEDULE_SECONDS="1",
        )

    return hub(1), hub(2)


def accepted_by(hub: HubProcess) -> list[str]:
    """The MessageIds this hub accepted (its log's ``message`` lines)."""
    events = (json.loads(line) for line in hub.said("message"))
    return [e["message_id"] for e in events if e.get("outcome") == "ACCEPTED"]


def ledger_entries(url: str, site: Site) -> list[LedgerEntry]:
    ledger = open_ledger(url, site.settings.ledger_path)
    try:
        assert ledger.verify().intact
        return list(ledger.entries(limit=100_000))
    finally:
        ledger.close()


def assert_in_ledger_order_per_sender_and_recipient(arrivals: list[str], entries: list[LedgerEntry]) -> None:
    """Each recipient received each sender's documents in the order the ledger recorded them."""
    by_id = {e.message_id: e for e in entries if e.status == "ACCEPTED"}
    seen: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
    for message_id in arrivals:
        entry = by_id[message_id]
        seen[(entry.sender, entry.recipient)].append(entry.sequence)
    for pair, sequences in seen.items():
        assert sequences == sorted(sequences), f"{pair} arrived out of ledger order"


@asynccontextmanager
async def exchanging(exchange: Exchange, *running: HubProcess) -> AsyncIterator[None]:
    """The hubs started and the adapters connected for the block; all closed and stopped after it."""
    for hub in running:
        hub.start()
    try:
        await exchange.connect()
        yield
    finally:
        await exchange.close()
        for hub in running:
            hub.stop()


async def test_two_hubs_on_postgres_share_the_work_and_do_nothing_twice(
    site: Site, tmp_path: Path, postgres_ledger_url: str
) -> None:
    first, second = hubs(site, tmp_path, postgres_ledger_url)
    exchange = Exchange.of(site)
    async with exchanging(exchange, first, second):
        await exchange.send_all()
        await exchange.wait_delivered()

    figures = exchange.figures()
    print(figures.line("two hubs"), f"hub-1 {len(accepted_by(first))}, hub-2 {len(accepted_by(second))}")
    assert figures.lost == 0 and figures.duplicated == 0 and figures.rejected == 0
    assert figures.acknowledged == figures.sent
    one, two = accepted_by(first), accepted_by(second)
    assert one and two, "each hub handled a share"
    assert not set(one) & set(two), "no message was accepted by both hubs"
    assert sorted(one + two) == sorted(m.message_id for m in exchange.outgoing)

    entries = ledger_entries(postgres_ledger_url, site)
    assert [e.sequence for e in entries] == list(range(1, len(entries) + 1)), "sequences unique and contiguous"
    assert len(entries) == figures.sent and all(e.routed_at is not None for e in entries)
    assert_in_ledger_order_per_sender_and_recipient(exchange.arrivals, entries)
    steps = [json.loads(line)["steps_ms"] for hub in (first, second) for line in hub.said("message")]
    assert steps and all(list(s) == STEPS for s in steps), "each message line says how long each step took"


async def test_a_hub_that_dies_is_covered_by_the_other_until_it_returns(
    site: Site, tmp_path: Path, postgres_ledger_url: str
) -> None:
    first, second = hubs(site, tmp_path, postgres_ledger_url)
    exchange = Exchange.of(site)
    async with exchanging(exchange, first, second):
        sending = asyncio.create_task(exchange.send_all())
        while len(exchange.acknowledgements) < len(exchange.outgoing) // 3:
            await asyncio.sleep(0.02)
        second.kill()
        while len(exchange.acknowledgements) < 2 * len(exchange.outgoing) // 3:
            await asyncio.sleep(0.02)
        handled_alone = len(accepted_by(first))
        second.start()
        await sending
        await exchange.wait_delivered()

    figures = exchange.figures()
    print(figures.line("hub-2 killed and restarted"), f"handed back: {len(first.said('queue_handed_back'))}")
    assert figures.lost == 0 and figures.rejected == 0 and figures.acknowledged == figures.sent
    assert handled_alone > 0
    assert first.said("queue_handed_back"), "the queues went back to their hub when it returned"
    entries = ledger_entries(postgres_ledger_url, site)
    accepted = [e.message_id for e in entries if e.status == "ACCEPTED"]
    assert sorted(accepted) == sorted(m.message_id for m in exchange.outgoing), "each accepted once"
    assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
    assert all(e.routed_at is not None for e in entries if e.status == "ACCEPTED")
