"""The sender's acknowledgement goes out beside its document, not after the document's confirm: ``ACCEPTED`` means
committed and synced, and the ledger delivers what the broker did not confirm. Real SQLite, no broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from gateway.hub import DeliveryRefused, Hub
from gateway.ledger.model import LedgerEntry
from gateway.pipeline import Checks
from tests.support.kept import NOW, KeptOutbox, from_de, kept_hub
from tests.support.pki import Pki, signed


@dataclass
class SlowBroker(KeptOutbox):
    """Confirms a document only once it has seen an acknowledgement published; can fail or refuse documents."""

    acknowledged_one: asyncio.Event = field(default_factory=asyncio.Event)
    failing: Exception | None = None
    notices: list[str] = field(default_factory=list)

    async def deliver(self, recipient: str, entry: LedgerEntry) -> None:
        self.events.append("deliver published")
        await self.acknowledged_one.wait()
        if self.failing is not None:
            raise self.failing
        await super().deliver(recipient, entry)

    async def acknowledge(self, participant: str, entry: LedgerEntry, correlation_id: str | None) -> None:
        await super().acknowledge(participant, entry, correlation_id)
        self.acknowledged_one.set()

    async def notify(self, participant: str, message_id: str, body: bytes) -> None:
        self.notices.append(participant)
        self.events.append("notice")


@pytest.fixture
def broker() -> SlowBroker:
    return SlowBroker()


@pytest.fixture
def hub(pki: Pki, kept_checks: Checks, broker: SlowBroker) -> Hub:
    return kept_hub(pki, kept_checks, NOW, broker)


async def test_the_acknowledgement_is_published_while_the_document_waits_for_its_confirm(
    pki: Pki, hub: Hub, broker: SlowBroker
) -> None:
    message = from_de(signed("ExportAuthorization", pki.signers["DE"]))

    (outcome,) = await asyncio.wait_for(hub.handle_batch([message]), timeout=5)

    assert outcome.status == "ACCEPTED"
    assert broker.events == ["deliver published", "acknowledge", "deliver"]  # confirmed after the ack went out


async def test_a_document_the_broker_fails_after_its_acknowledgement_stays_in_the_ledger_and_goes_on_the_resend(
    pki: Pki, hub: Hub, broker: SlowBroker
) -> None:
    message = from_de(signed("ExportAuthorization", pki.signers["DE"]))
    broker.failing = ConnectionError("the channel closed")

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(hub.handle_batch([message]), timeout=5)
    (entry,) = hub.ledger.entries()
    assert entry.routed_at is None and broker.delivered == [] and len(broker.acknowledged) == 1

    broker.failing = None
    (outcome,) = await asyncio.wait_for(hub.handle_batch([message]), timeout=5)  # the broker gives it back

    assert outcome.status == "RESENT"
    assert broker.delivered == [message.message_id]
    assert broker.acknowledged == [entry.ack, entry.ack]  # the same acknowledgement again, byte for byte
    assert hub.ledger.entries()[0].routed_at is not None


async def test_a_document_a_full_queue_refuses_is_accepted_and_its_sender_is_told_after_the_acknowledgement(
    pki: Pki, hub: Hub, broker: SlowBroker
) -> None:
    message = from_de(signed("ExportAuthorization", pki.signers["DE"]))
    broker.failing = DeliveryRefused("CH", "i2es.deliver.CH is full")

    (outcome,) = await asyncio.wait_for(hub.handle_batch([message]), timeout=5)

    assert outcome.status == "DEFERRED"
    assert broker.events == ["deliver published", "acknowledge", "notice"]
    assert broker.notices == ["DE"]
    assert hub.ledger.entries()[0].routed_at is None  # kept: sent in ledger order once there is room
