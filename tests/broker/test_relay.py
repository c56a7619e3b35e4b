"""Sections 2-5 through the real hub on the real broker: route, acknowledge, record, refuse."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import aio_pika
import pytest
from lxml import etree

from adapters import Adapter
from gateway.envelope import body_document
from gateway.ledger.store import SqliteLedger
from gateway.opening import WorkerOpener
from tests.support.hub import RunningHub
from tests.support.pki import envelope_of, header_of, signed


def ledger_entry(hub: RunningHub, message_id: str):  # type: ignore[no-untyped-def]
    ledger = SqliteLedger(hub.settings.ledger_path)
    try:
        return ledger.find_accepted(message_id)
    finally:
        ledger.close()


def document(name: str) -> etree._Element:
    return body_document(envelope_of(name))


async def test_an_accepted_authorization_reaches_the_partner_unchanged_and_the_sender_gets_a_signed_ack(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    data = de.envelope(document("ExportAuthorization"), "CH")
    ack = await de.send_signed(data)

    assert ack.status == "ACCEPTED"
    assert ack.received_digest == hashlib.sha256(data).hexdigest()
    assert ack.ledger_sequence is not None and ack.ledger_sequence > 0
    assert ack.ref_to_message_id == header_of(data).message_id
    assert not ack.reasons

    delivery = await ch.next_delivery(timeout=10)
    assert delivery.raw == data  # byte for byte
    assert delivery.verified is not None and delivery.verified.signer_code == "DE"
    await delivery.accept()


async def test_the_acknowledgement_copies_the_conversation_and_comes_from_the_hub(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    conversation = "9d7e5c3b-1a2f-4b6c-8d9e-0f1a2b3c4d5e"
    ack = await ch.send(document("ImportAuthorization"), "DE", conversation_id=conversation)
    header = header_of(ack.raw)
    assert (header.sender, header.recipient, header.type) == ("HUB", "CH", "Acknowledgement")
    assert header.conversation_id == conversation
    await (await de.next_delivery(timeout=10)).accept()


async def test_a_receipt_is_routed_to_the_sender_and_marks_the_document_received(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    data = de.envelope(document("ExportAuthorization"), "CH")
    await de.send_signed(data, check=True)
    delivery = await ch.next_delivery(timeout=10)
    receipt_ack = await delivery.accept()
    assert receipt_ack is not None and receipt_ack.accepted and not receipt_ack.warnings

    receipt = await de.next_delivery(timeout=10)
    assert receipt.header is not None and receipt.header.type == "Receipt"
    assert receipt.header.ref_to_message_id == header_of(data).message_id
    await receipt.accept()  # a receipt is not answered with another receipt
    entry = ledger_entry(hub, header_of(data).message_id)
    assert entry is not None and entry.delivery_status == "RECEIVED"


async def test_a_refused_document_is_recorded_as_refused(hub: RunningHub, ch: Adapter, de: Adapter) -> None:
    data = de.envelope(document("ExportAuthorization"), "CH")
    await de.send_signed(data, check=True)
    delivery = await ch.next_delivery(timeout=10)
    await delivery.refuse("AUTHORIZATION_MISMATCH", "the importer is not the one we authorized")
    entry = ledger_entry(hub, header_of(data).message_id)
    assert entry is not None and entry.delivery_status == "REFUSED"


async def test_a_safe_resend_gets_the_original_acknowledgement_byte_for_byte_and_is_not_routed_again(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    data = de.envelope(document("ExportAuthorization"), "CH")
    first = await de.send_signed(data)
    await (await ch.next_delivery(timeout=10)).accept()
    second = await de.send_signed(data)
    assert second.raw == first.raw
    with pytest.raises(TimeoutError):
        await ch.next_delivery(timeout=1.0)


async def test_the_same_message_id_with_other_bytes_is_a_duplicate(hub: RunningHub, ch: Adapter, de: Adapter) -> None:
    data = de.envelope(document("ExportAuthorization"), "CH")
    await de.send_signed(data, check=True)
    await (await ch.next_delivery(timeout=10)).accept()
    header = header_of(data)
    other = signed("ExportAuthorization", hub.home.participant_signer("DE"), message_id=header.message_id)
    ack = await de.send_signed(other)
    assert ack.status == "REJECTED"
    assert [code for code, _ in ack.reasons] == ["DUPLICATE_MESSAGE_ID"]


async def test_a_receipt_for_a_message_never_delivered_is_an_unknown_reference(hub: RunningHub, ch: Adapter) -> None:
    receipt = document("Receipt")
    ack = await ch.send(receipt, "DE", ref_to_message_id="00000000-0000-4000-8000-000000000000")
    assert [code for code, _ in ack.reasons] == ["UNKNOWN_REFERENCE"]


async def test_a_receipt_whose_digest_differs_is_routed_with_a_warning(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    data = de.envelope(document("ExportAuthorization"), "CH")
    await de.send_signed(data, check=True)
    delivery = await ch.next_delivery(timeout=10)
    receipt = document("Receipt")  # its digest is the example's, not the delivered bytes'
    ack = await ch.send(receipt, "DE", ref_to_message_id=header_of(data).message_id)
    assert ack.status == "ACCEPTED"
    assert [code for code, _ in ack.warnings] == ["RECEIPT_DIGEST_DIFFERS"]
    await delivery.ack()
    routed = await de.next_delivery(timeout=10)
    assert routed.header is not None and routed.header.type == "Receipt"
    await routed.accept()


async def test_many_messages_are_all_acknowledged_and_delivered(hub: RunningHub, ch: Adapter, de: Adapter) -> None:
    messages = [de.envelope(document("ExportAuthorization"), "CH") for _ in range(40)]
    acks = await asyncio.gather(*(de.send_signed(m) for m in messages))
    assert all(a.accepted for a in acks)
    sequences = [a.ledger_sequence for a in acks]
    assert len(set(sequences)) == len(sequences)
    received = set()
    for _ in messages:
        delivery = await ch.next_delivery(timeout=10)
        received.add(delivery.raw)
        await delivery.ack()
    assert received == set(messages)


async def test_a_burst_is_opened_by_the_worker_processes_and_each_message_is_handled_once(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    opener = hub.parts.opener
    assert isinstance(opener, WorkerOpener)
    for _ in range(200):  # the hub starts its workers before it consumes
        if len(opener.pids) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(opener.pids) == 2
    before = opener.opened_ahead
    messages = [de.envelope(document("ExportAuthorization"), "CH") for _ in range(60)]
    tampered = de.envelope(document("ExportAuthorization"), "CH")
    messages.append(tampered.replace(b"<Name>Alpina Pharma AG</Name>", b"<Name>Alpine Pharma AG</Name>"))
    assert messages[-1] != tampered
    acks = await asyncio.gather(*(de.send_signed(m) for m in messages))
    assert [a.status for a in acks] == ["ACCEPTED"] * 60 + ["REJECTED"]
    assert [code for code, _ in acks[-1].reasons] == ["SIGNATURE_INVALID"]
    assert opener.opened_ahead > before  # behind the backlog, workers opened them as they arrived
    received = []
    for _ in range(60):
        delivery = await ch.next_delivery(timeout=10)
        received.append(delivery.raw)
        await delivery.ack()
    assert sorted(received) == sorted(messages[:60])


async def test_a_message_with_no_user_id_goes_to_the_dead_letter_queue_with_its_reason(hub: RunningHub) -> None:
    from tests.support.hub import participant_channel

    marker = f"dead-{datetime.now(UTC).timestamp()}".encode()
    connection = await participant_channel(hub.settings, "IN")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("i2es.inbound", ensure=False)
        await exchange.publish(aio_pika.Message(marker, content_type="application/xml"), routing_key="IN")

    admin = await aio_pika.connect(
        f"{hub.settings.broker_url.rstrip('/')}/{hub.settings.vhost}",
        client_properties={"connection_name": "test-admin"},
    )
    async with admin:
        channel = await admin.channel()
        queue = await channel.get_queue("i2es.dead")
        found = None
        for _ in range(50):
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            await message.ack()
            if message.body == marker:
                found = message
                break
        assert found is not None, "the message did not reach i2es.dead"
        assert "user_id" in str(found.headers["x-i2es-reason"])
