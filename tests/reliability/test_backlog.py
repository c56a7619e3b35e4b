"""A recipient's backlog (documents recorded and not yet routed, from a full queue or a stop) ends only once
nothing for it is left unrouted: a batch being sent beside the scheduler cannot leave a document behind.

The hub is built as ``i2es gateway run`` builds it, with an outbox that holds a publish until the test lets it
go, so the interleaving that a busy hub meets by chance happens here every time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from bench._messages import ExportAuthorizations
from bench._site import Site
from bench.profile import inbound
from gateway.ledger.model import LedgerEntry
from gateway.pipeline import Inbound
from gateway.runtime import HubParts

pytestmark = pytest.mark.reliability


@dataclass
class HeldOutbox:
    """Publishes at once, except to ``held``: those wait for ``release``."""

    held: str
    release: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    delivered: list[tuple[str, str]] = field(default_factory=list)  # (recipient, MessageId), in publish order

    async def deliver(self, recipient: str, entry: LedgerEntry) -> None:
        if recipient == self.held:
            self.waiting.set()
            await self.release.wait()
        self.delivered.append((recipient, entry.message_id))

    async def acknowledge(self, participant: str, entry: LedgerEntry, correlation_id: str | None) -> None:
        pass

    async def dead_letter(self, inbound: Inbound, reason: str) -> None:
        raise AssertionError(reason)

    async def notify(self, participant: str, message_id: str, body: bytes) -> None:
        pass


async def test_a_document_deferred_while_the_backlog_drains_is_still_routed(site: Site) -> None:
    factory = ExportAuthorizations(site.signers())
    left, behind, other = (factory.sign("DE", to) for to in ("CH", "CH", "AT"))

    parts = HubParts(site.settings)
    try:
        stopped = parts.make_hub(HeldOutbox(held="AT"))
        await stopped.record([inbound(left)])  # committed; the hub stops before publishing it

        outbox = HeldOutbox(held="AT")
        hub = parts.make_hub(outbox)  # started again: CH has a backlog
        batch = await hub.record([inbound(behind), inbound(other)])
        sending = asyncio.create_task(hub.send(batch))  # CH's document waits behind the backlog; AT's publishes
        await outbox.waiting.wait()
        assert await hub.route_deferred() == 1  # the document left by the stop goes out
        outbox.release.set()
        outcomes = await sending
        assert [o.status for o in outcomes] == ["DEFERRED", "ACCEPTED"]
        assert hub.held_back.is_set()  # the service sends it now, not at the scheduler's next pass

        assert await hub.route_deferred() == 1  # and then the one that waited behind it
        assert outbox.delivered == [("CH", left.message_id), ("AT", other.message_id), ("CH", behind.message_id)]
        assert parts.ledger.unrouted() == []
    finally:
        parts.close()
