"""The sender's acknowledgement goes out beside its document, not after the document's confirm: ``ACCEPTED`` means
committed and synced, and the ledger delivers what the broker did not confirm. Real SQLite, no broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from gateway.hub import DeliveryRefused, Hub
from gateway.ledger.model import LedgerEntry
from gateway.ledger.store import SqliteLedger
from gateway.pipeline import Checks
from tests.support.kept import NOW, KeptOutbox, from_de, inbound_from, kept_hub
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


@dataclass
class StatusWatch(SlowBroker):
    """Notes, as each acknowledgement is published, what the ledger says of one document's delivery."""

    ledger: SqliteLedger | None = None
    document: int | None = None
    seen: list[str | None] = field(default_factory=list)

    async def acknowledge(self, participant: str, entry: LedgerEntry, correlation_id: str | None) -> None:
        if self.ledger is not None and self.document is not None:
            document = self.ledger.get(self.document)
            self.seen.append(document.delivery_status if document else None)
        await super().acknowledge(participant, entry, correlation_id)


async def test_a_receipts_status_is_on_the_document_when_the_receipt_is_acknowledged(
    pki: Pki, kept_checks: Checks
) -> None:
    broker = StatusWatch()
    hub = kept_hub(pki, kept_checks, NOW, broker)
    await asyncio.wait_for(hub.handle_batch([from_de(signed("ExportAuthorization", pki.signers["DE"]))]), timeout=5)
    (document,) = hub.ledger.entries()
    assert document.routed_at is not None and document.delivery_status is None
    data = signed("Receipt", pki.signers["CH"], ref_to_message_id=document.message_id)
    receipt = inbound_from("CH", data)
    assert isinstance(kept_checks.history, SqliteLedger)
    broker.ledger, broker.document = kept_checks.history, document.sequence
    broker.acknowledged_one.clear()  # the receipt's routing to DE now waits for its acknowledgement

    (outcome,) = await asyncio.wait_for(hub.handle_batch([receipt]), timeout=5)

    assert outcome.status == "ACCEPTED"
    assert broker.events[-3:] == ["deliver published", "acknowledge", "deliver"]
    assert broker.seen == ["RECEIVED"]  # recorded with the receipt, not once the receipt reached DE
