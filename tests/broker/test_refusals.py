"""Every reason code of sections 3-5, as a client written elsewhere would meet it through the real hub.

Each refused message is answered with one signed REJECTED acknowledgement naming the code, is
recorded in the ledger, and is never routed; the hub goes on serving.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from adapters import Acknowledgement, Adapter
from certs.authority import Profile
from certs.keys import generate_key
from certs.signer import FileSigner
from gateway.admin import add_participant, revoke_participant
from gateway.envelope import body_document
from gateway.ledger.store import SqliteLedger
from gateway.signature import sign_envelope
from tests.support.hub import RunningHub, adapter_config, participant_password
from tests.support.pki import envelope_of, header_of, make_pki, sign_with, signed


def codes(ack: Acknowledgement) -> list[str]:
    return [code for code, _ in ack.reasons]


async def send_raw(adapter: Adapter, data: bytes, **properties: object) -> Acknowledgement:
    message_id = str(properties.pop("message_id", None) or uuid.uuid4())
    return await adapter.publish(data, message_id=message_id, type="ExportAuthorization", properties=properties)


async def send_as_is(adapter: Adapter, data: bytes) -> Acknowledgement:
    """Publish bytes the adapter itself would not read, with the properties taken from the text."""
    message_id = re.search(rb"<MessageId>([^<]*)</MessageId>", data)
    type_ = re.search(rb"<Type>([^<]*)</Type>", data)
    assert message_id and type_
    return await adapter.publish(data, message_id=message_id[1].decode(), type=type_[1].decode())


async def assert_not_routed(recipient: Adapter) -> None:
    with pytest.raises(TimeoutError):
        await recipient.next_delivery(timeout=0.5)


def de_signer(hub: RunningHub) -> FileSigner:
    return hub.home.participant_signer("DE")


async def test_a_message_over_one_mebibyte_is_message_too_large(hub: RunningHub, de: Adapter, ch: Adapter) -> None:
    data = b"<" + b"x" * (hub.settings.max_message_bytes + 10)
    message_id = str(uuid.uuid4())
    ack = await send_raw(de, data, message_id=message_id)
    assert codes(ack) == ["MESSAGE_TOO_LARGE"]
    assert ack.ref_to_message_id == message_id  # unreadable: the AMQP message_id is answered
    await assert_not_routed(ch)


async def test_broken_xml_is_malformed_xml(hub: RunningHub, de: Adapter) -> None:
    ack = await send_raw(de, b"<Message xmlns='urn:i2es:envelope:1'><Header>")
    assert codes(ack) == ["MALFORMED_XML"]


async def test_a_comment_in_signed_text_is_a_forbidden_construct(hub: RunningHub, de: Adapter, ch: Adapter) -> None:
    data = signed("ExportAuthorization", de_signer(hub)).replace(b"<From>DE</From>", b"<From>D<!---->E</From>")
    ack = await send_as_is(de, data)
    assert codes(ack) == ["FORBIDDEN_XML_CONSTRUCT"]
    await assert_not_routed(ch)


async def test_a_doctype_is_a_forbidden_construct(hub: RunningHub, de: Adapter) -> None:
    data = b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY e SYSTEM "file:///etc/passwd">]><m>&e;</m>'
    ack = await send_raw(de, data)
    assert codes(ack) == ["FORBIDDEN_XML_CONSTRUCT"]


async def test_a_float_quantity_is_schema_invalid_with_line_and_path(hub: RunningHub, de: Adapter) -> None:
    data = signed("ExportAuthorization", de_signer(hub)).replace(b">500</Quantity>", b">5E2</Quantity>")
    ack = await de.send_signed(data)
    assert codes(ack) == ["SCHEMA_INVALID"]
    assert "Quantity" in ack.reasons[0][1] and "line" in ack.reasons[0][1]


async def test_an_unsigned_envelope_is_signature_missing(hub: RunningHub, de: Adapter) -> None:
    data = etree.tostring(envelope_of("ExportAuthorization"), xml_declaration=True, encoding="UTF-8")
    ack = await de.send_signed(data)
    assert codes(ack) == ["SIGNATURE_MISSING"]
    assert ack.ref_to_message_id == header_of(data).message_id


async def test_a_tampered_quantity_is_signature_invalid(hub: RunningHub, de: Adapter, ch: Adapter) -> None:
    data = signed("ExportAuthorization", de_signer(hub)).replace(b">500</Quantity>", b">5000</Quantity>")
    ack = await de.send_signed(data)
    assert codes(ack) == ["SIGNATURE_INVALID"]
    await assert_not_routed(ch)


async def test_a_sha1_digest_is_unsupported_algorithm(hub: RunningHub, de: Adapter) -> None:
    data = sign_with(
        envelope_of("ExportAuthorization"),
        de_signer(hub),
        method="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        digest="http://www.w3.org/2000/09/xmldsig#sha1",
    )
    ack = await de.send_signed(data)
    assert codes(ack) == ["UNSUPPORTED_ALGORITHM"]


async def test_a_certificate_from_another_ca_is_certificate_untrusted(hub: RunningHub, de: Adapter) -> None:
    data = signed("ExportAuthorization", make_pki(("DE",)).signers["DE"])
    ack = await de.send_signed(data)
    assert codes(ack) == ["CERTIFICATE_UNTRUSTED"]


async def test_an_expired_certificate_is_certificate_expired(hub: RunningHub, de: Adapter) -> None:
    authority = hub.home.authority()
    key = generate_key()
    long_ago = datetime.now(UTC) - timedelta(days=30)
    cert = authority.issue(key.public_key(), "DE", "BfArM", Profile.SIGNING, long_ago, timedelta(days=1))
    ack = await de.send_signed(signed("ExportAuthorization", FileSigner(key, (cert, authority.issuing))))
    assert codes(ack) == ["CERTIFICATE_EXPIRED"]


async def test_after_revocation_a_participants_messages_are_certificate_revoked(hub: RunningHub, ch: Adapter) -> None:
    await asyncio.to_thread(
        add_participant, hub.settings, "FR", "ANSM", datetime.now(UTC), password=participant_password("FR")
    )
    async with Adapter(adapter_config(hub.settings, "FR")) as fr:
        before = await fr.send(body_document(envelope_of("Clarification")), "CH")
        assert before.accepted
        await (await ch.next_delivery(timeout=10)).accept()

        assert revoke_participant(hub.settings, "FR", datetime.now(UTC)) == 1
        after = await fr.send(body_document(envelope_of("Clarification")), "CH")
        assert codes(after) == ["CERTIFICATE_REVOKED"]
        await assert_not_routed(ch)


async def test_a_message_signed_by_one_participant_and_sent_by_another_is_sender_mismatch(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    data = signed("ExportAuthorization", de_signer(hub))  # From DE, signed by DE
    ack = await ch.send_signed(data)  # but published by CH's broker user
    assert codes(ack) == ["SENDER_MISMATCH"]


async def test_from_that_differs_from_the_certificate_is_sender_mismatch(hub: RunningHub, de: Adapter) -> None:
    data = signed("ExportAuthorization", de_signer(hub), sender="CH")
    ack = await de.send_signed(data)
    assert codes(ack) == ["SENDER_MISMATCH"]


async def test_an_unregistered_recipient_is_unknown_recipient(hub: RunningHub, de: Adapter) -> None:
    ack = await de.send_signed(signed("ExportAuthorization", de_signer(hub), recipient="ZZ"))
    assert codes(ack) == ["UNKNOWN_RECIPIENT"]


@pytest.mark.parametrize("offset", [timedelta(hours=25), timedelta(minutes=-10)], ids=["old", "future"])
async def test_created_at_outside_the_window_is_stale_message(hub: RunningHub, de: Adapter, offset: timedelta) -> None:
    data = signed("ExportAuthorization", de_signer(hub), created_at=datetime.now(UTC) - offset)
    ack = await de.send_signed(data)
    assert codes(ack) == ["STALE_MESSAGE"]


@pytest.mark.parametrize(
    "properties",
    [
        {"message_id": "11111111-2222-4333-8444-555555555555"},
        {"type": "ImportAuthorization"},
        {"content_type": "text/plain"},
        {"delivery_mode": 1},
    ],
    ids=["message_id", "type", "content_type", "delivery_mode"],
)
async def test_amqp_properties_that_disagree_with_the_envelope_are_property_mismatch(
    hub: RunningHub, de: Adapter, properties: dict[str, object]
) -> None:
    data = signed("ExportAuthorization", de_signer(hub))
    header = header_of(data)
    fields = {"type": header.type, **properties}
    message_id = str(fields.pop("message_id", header.message_id))
    ack = await de.publish(data, message_id=message_id, type=str(fields.pop("type")), properties=fields)
    assert codes(ack) == ["PROPERTY_MISMATCH"]


async def test_a_participant_cannot_send_an_acknowledgement(hub: RunningHub, de: Adapter) -> None:
    data = signed("Acknowledgement", de_signer(hub), sender="DE", recipient="CH")
    ack = await de.send_signed(data)
    assert codes(ack) == ["SENDER_MISMATCH"]


async def test_every_refusal_is_in_the_ledger_and_the_hub_keeps_serving(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    rejected = await send_raw(de, b"not xml")
    assert rejected.status == "REJECTED"
    ledger = SqliteLedger(hub.settings.ledger_path)
    try:
        last = ledger.entries(limit=100_000)[-1]
        assert last.status == "REJECTED" and last.body == b"not xml" and last.reasons[0].code == "MALFORMED_XML"
    finally:
        ledger.close()
    accepted = await de.send_signed(signed("ExportAuthorization", de_signer(hub)))
    assert accepted.accepted
    await (await ch.next_delivery(timeout=10)).accept()


async def test_a_fault_of_the_hub_itself_is_internal_error_and_the_hub_keeps_serving(
    hub: RunningHub, ch: Adapter, de: Adapter
) -> None:
    # A trade record damaged on disk: the hub cannot read the import authorization an export names.
    ledger = SqliteLedger(hub.settings.ledger_path)
    try:
        ledger._db.execute(
            "INSERT INTO authorizations (type, issuing_country, number, issue_date, importer_country, "
            "exporter_country, counts_against_estimate, sender, recipient, message_id, sequence, document) "
            "VALUES ('ImportAuthorization', 'CH', 'CH-IMP-DAMAGED', '2026-11-20', 'CH', 'DE', 1, 'CH', 'DE', "
            "'00000000-0000-4000-8000-000000000001', 0, x'00')"
        )
    finally:
        ledger.close()
    envelope = envelope_of("ExportAuthorization")
    number = envelope.find(".//{urn:i2es:authorization:1}ImportAuthorizationRef/{urn:i2es:authorization:1}Number")
    assert number is not None
    number.text = "CH-IMP-DAMAGED"
    ack = await de.send_signed(sign_envelope(envelope, de_signer(hub)))
    assert codes(ack) == ["INTERNAL_ERROR"]
    assert "safe to resend" in ack.reasons[0][1]
    await assert_not_routed(ch)
    accepted = await de.send_signed(signed("Clarification", de_signer(hub)))
    assert accepted.accepted
    await (await ch.next_delivery(timeout=10)).ack()
