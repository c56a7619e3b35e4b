"""Sections 3-5 as pure checks: bytes and broker properties in, a verdict out (no broker, real SQLite)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import ReasonCode
from gateway.ledger.model import NewEntry
from gateway.ledger.store import SqliteLedger
from gateway.pipeline import Checks, Inbound, examine
from gateway.reading import ReadingPolicy
from gateway.settings import PROJECT_ROOT
from gateway.signature import sign_envelope
from tests.support.checks import checks_in
from tests.support.pki import Pki, envelope_of, header_of, signed

NOW = datetime.now(UTC)
READING = ReadingPolicy.load(PROJECT_ROOT / "schemas", 1024 * 1024)


@pytest.fixture
def checks(pki: Pki, tmp_path: Path) -> Iterator[Checks]:
    with checks_in(tmp_path, pki, READING, ("CH", "DE"), NOW) as checks:
        yield checks


def inbound(data: bytes, user: str = "DE", **overrides: object) -> Inbound:
    header = header_of(data)
    fields: dict[str, object] = {
        "body": data,
        "user_id": user,
        "message_id": header.message_id,
        "type": header.type,
        "content_type": "application/xml",
        "delivery_mode": 2,
    }
    fields.update(overrides)
    return Inbound(**fields)  # type: ignore[arg-type]


def reasons(checks: Checks, message: Inbound) -> list[str]:
    return [finding.code for finding in examine(message, checks, NOW).reasons]


def test_a_well_formed_signed_authorization_is_accepted(pki: Pki, checks: Checks) -> None:
    verdict = examine(inbound(signed("ExportAuthorization", pki.signers["DE"])), checks, NOW)
    assert verdict.accepted and verdict.header is not None and verdict.header.recipient == "CH"


def test_the_broker_user_must_be_the_sender(pki: Pki, checks: Checks) -> None:
    assert reasons(checks, inbound(signed("ExportAuthorization", pki.signers["DE"]), user="CH")) == ["SENDER_MISMATCH"]


def test_an_amqp_message_id_that_is_not_the_envelopes_is_property_mismatch(pki: Pki, checks: Checks) -> None:
    message = inbound(signed("ExportAuthorization", pki.signers["DE"]), message_id="not-the-same")
    assert reasons(checks, message) == ["PROPERTY_MISMATCH"]


def test_the_replay_window_is_24_hours_and_the_future_skew_5_minutes(pki: Pki, checks: Checks) -> None:
    def at(offset: timedelta) -> list[str]:
        return reasons(checks, inbound(signed("ExportAuthorization", pki.signers["DE"], created_at=NOW - offset)))

    assert at(timedelta(hours=23, minutes=59)) == []
    assert at(timedelta(hours=24, minutes=1)) == ["STALE_MESSAGE"]
    assert at(timedelta(minutes=-4)) == []
    assert at(timedelta(minutes=-6)) == ["STALE_MESSAGE"]


def test_a_created_at_in_another_time_zone_is_compared_as_an_instant(pki: Pki, checks: Checks) -> None:
    envelope = envelope_of("ExportAuthorization")
    created_at = envelope.find("{urn:i2es:envelope:1}Header/{urn:i2es:envelope:1}CreatedAt")
    assert created_at is not None
    created_at.text = NOW.astimezone(timezone(timedelta(hours=9))).isoformat(timespec="seconds")
    assert created_at.text.endswith("+09:00")
    assert reasons(checks, inbound(sign_envelope(envelope, pki.signers["DE"]))) == []


def test_a_created_at_of_hour_24_on_the_last_day_of_year_9999_is_refused_with_a_reason_code(
    pki: Pki, checks: Checks
) -> None:
    # A valid xs:dateTime whose instant, 10000-01-01T00:00:00Z, no datetime can hold.
    envelope = envelope_of("ExportAuthorization")
    created_at = envelope.find("{urn:i2es:envelope:1}Header/{urn:i2es:envelope:1}CreatedAt")
    message_id = envelope.findtext("{urn:i2es:envelope:1}Header/{urn:i2es:envelope:1}MessageId")
    assert created_at is not None
    created_at.text = "9999-12-31T24:00:00Z"
    data = sign_envelope(envelope, pki.signers["DE"])
    # Built by hand: inbound() reads the properties with header_of, which cannot read this CreatedAt.
    message = Inbound(data, "DE", message_id, "ExportAuthorization", "application/xml", 2)
    assert reasons(checks, message) == ["SCHEMA_INVALID"]


@pytest.mark.parametrize("name", ["ExportAuthorization", "PreExportNotification"])
@pytest.mark.parametrize("unit", ["mL", "L", "unit"])
def test_an_anhydrous_base_that_is_not_a_mass_is_refused_as_schema_invalid(
    pki: Pki, checks: Checks, name: str, unit: str
) -> None:
    # The schema allows any unit on AnhydrousBase; the estimates and the ledger weigh it in grams.
    envelope = envelope_of(name)
    for base in envelope.iter("{urn:i2es:authorization:1}AnhydrousBase"):
        base.set("unit", unit)
    assert reasons(checks, inbound(sign_envelope(envelope, pki.signers["DE"]))) == ["SCHEMA_INVALID"]


def test_the_hub_is_not_a_recipient(pki: Pki, checks: Checks) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"], recipient="HUB")
    assert reasons(checks, inbound(data)) == ["UNKNOWN_RECIPIENT"]


def test_a_message_id_already_accepted_is_a_duplicate(pki: Pki, checks: Checks, tmp_path: Path) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"])
    header = header_of(data)
    ledger = SqliteLedger(tmp_path / "hub.sqlite")
    entry = NewEntry(
        header.message_id, "DE", "DE", "CH", header.type, None, None, "00", data, "ACCEPTED", (), (), NOW, None
    )
    ledger.append(entry, lambda seq: ("ack", b"<ack/>"))
    ledger.close()
    other = signed("ExportAuthorization", pki.signers["DE"], message_id=header.message_id)
    assert reasons(checks, inbound(other)) == ["DUPLICATE_MESSAGE_ID"]


def test_a_rejection_keeps_the_claimed_message_id_for_the_acknowledgement(pki: Pki, checks: Checks) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"]).replace(b">500</", b">5000</")
    message = inbound(data)
    verdict = examine(message, checks, NOW)
    assert [r.code for r in verdict.reasons] == [ReasonCode.SIGNATURE_INVALID]
    assert verdict.ref_to_message_id(message) == header_of(data).message_id


def test_an_unreadable_message_is_answered_by_its_amqp_message_id_only_if_it_is_a_uuid(checks: Checks) -> None:
    readable_id = Inbound(b"garbage", "DE", "6f1c2a9e-4b1d-4c55-9a55-0d9f5e1f2b11", None, None, 2)
    verdict = examine(readable_id, checks, NOW)
    assert verdict.ref_to_message_id(readable_id) == "6f1c2a9e-4b1d-4c55-9a55-0d9f5e1f2b11"
    not_uuid = Inbound(b"garbage", "DE", "42", None, None, 2)
    assert examine(not_uuid, checks, NOW).ref_to_message_id(not_uuid) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048))
def test_no_input_escapes_as_anything_but_a_reason_code(checks: Checks, body: bytes) -> None:
    verdict = examine(Inbound(body, "DE", None, None, None, None), checks, NOW)
    assert not verdict.accepted
    assert all(finding.code in ReasonCode.__members__ for finding in verdict.reasons)


@pytest.fixture(scope="module")
def export_authorization(pki: Pki) -> bytes:
    return signed("ExportAuthorization", pki.signers["DE"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_a_signed_message_with_any_byte_changed_is_refused_or_means_the_same(
    checks: Checks, export_authorization: bytes, position: int, value: int
) -> None:
    index = position % len(export_authorization)
    changed = export_authorization[:index] + bytes([value]) + export_authorization[index + 1 :]
    original = header_of(export_authorization)
    verdict = examine(Inbound(changed, "DE", original.message_id, original.type, "application/xml", 2), checks, NOW)
    if verdict.accepted:
        # Only a change outside the signed content can pass (whitespace in base64, the XML declaration).
        assert verdict.header == original


def test_the_ledger_chain_links_each_entry_to_the_one_before(pki: Pki, tmp_path: Path) -> None:
    from gateway.ledger.chain import GENESIS, entry_hash

    ledger = SqliteLedger(tmp_path / "chain.sqlite")
    for _ in range(3):
        data = signed("Clarification", pki.signers["DE"])
        header = header_of(data)
        ledger.append(
            NewEntry(header.message_id, "DE", "DE", "CH", header.type, None, None,
                     hashlib.sha256(data).hexdigest(), data, "ACCEPTED", (), (), NOW, None),
            lambda seq: ("ack", b"<ack/>"),
        )  # fmt: skip
    chain = list(ledger.chain())
    assert [e.sequence for e in chain] == [1, 2, 3]
    assert chain[0].hash == entry_hash(GENESIS, 1, chain[0].fields)
    assert chain[2].hash == entry_hash(chain[1].hash, 3, chain[2].fields)
    assert ledger.verify().intact and ledger.verify().head == chain[2].hash
    ledger.close()
