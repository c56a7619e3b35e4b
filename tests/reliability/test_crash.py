"""The hub killed with SIGKILL in the middle of a stream of documents, then started again: nothing is lost,
nothing is routed twice from the ledger's point of view, and the ledger's chain is whole."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench._site import Site
from gateway.ledger.store import SqliteLedger
from tests.support.faults import MESSAGES, Exchange, HubProcess

pytestmark = pytest.mark.reliability


async def test_a_hub_killed_mid_stream_and_restarted_loses_nothing(site: Site, tmp_path: Path) -> None:
    hub = HubProcess(site, tmp_path / "hub.log")
    exchange = Exchange.of(site)

    async def kill_and_restart() -> None:
        hub.kill()
        await asyncio.sleep(1.0)
        hub.start()

    killed_at = await exchange.through_fault(hub, kill_and_restart)
    figures = exchange.figures()
    print(figures.line(f"SIGKILL after {killed_at} acknowledgements"))
    assert figures.lost == 0
    assert figures.acknowledged == figures.sent and figures.rejected == 0
    ledger = SqliteLedger(site.settings.ledger_path)
    try:
        accepted = [e for e in ledger.entries(limit=10 * MESSAGES) if e.status == "ACCEPTED"]
        assert sorted(e.message_id for e in accepted) == sorted(m.message_id for m in exchange.outgoing)
        assert all(e.routed_at is not None for e in accepted)
        assert ledger.verify().intact
    finally:
        ledger.close()
