"""Section 7 through the real hub: whole trades between SE (importing) and NL (exporting)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters import Adapter
from gateway.admin import add_participant
from gateway.envelope import body_document
from gateway.ledger.store import SqliteLedger
from gateway.reading import DOCUMENT_NS
from tests.support.hub import RunningHub, adapter_config, drain, participant_password
from tests.support.trade import (
    EXPORTER,
    IMPORTER,
    MORPHINE,
    cancellation,
    endorsement,
    export_authorization,
    import_authorization,
    number,
    pre_export_notification,
    pre_export_response,
)

FENTANYL_150G = ("fentanyl", "citrate", "150", "g", "95.4818")  # 150 g x 0.636545


@pytest.fixture(scope="module")
async def traders(hub: RunningHub) -> AsyncIterator[dict[str, Adapter]]:
    now = datetime.now(UTC)
    for code, name in ((IMPORTER, "Läkemedelsverket"), (EXPORTER, "CBG-MEB, Bureau Medicinale Cannabis en Opium")):
        await asyncio.to_thread(add_participant, hub.settings, code, name, now, password=participant_password(code))
    with_ledger(hub, lambda ledger: [
        ledger.trade.load_estimate(IMPORTER, "morphine", 2026, "estimate", Decimal(10_000), now),
        ledger.trade.load_estimate(IMPORTER, "codeine", 2026, "estimate", Decimal(100_000), now),
        ledger.trade.load_estimate(IMPORTER, "fentanyl", 2026, "estimate", Decimal(100), now),
    ])  # fmt: skip
    adapters = {code: Adapter(adapter_config(hub.settings, code)) for code in (IMPORTER, EXPORTER)}
    for adapter in adapters.values():
        await adapter.connect()
    yield adapters
    for adapter in adapters.values():
        await adapter.close()


def with_ledger(hub: RunningHub, work):  # type: ignore[no-untyped-def]
    ledger = SqliteLedger(hub.settings.ledger_path)
    try:
        return work(ledger)
    finally:
        ledger.close()


def codes(findings: tuple[tuple[str, str], ...]) -> list[str]:
    return [code for code, _ in findings]


async def test_an_export_that_matches_its_import_authorization_is_accepted_without_warnings(
    traders: dict[str, Adapter],
) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ia = import_authorization([MORPHINE])
    assert (await se.send(ia, EXPORTER)).accepted
    ack = await nl.send(export_authorization([MORPHINE], ia), IMPORTER)
    assert ack.accepted and ack.warnings == ()
    await drain(se, nl)


async def test_export_authorizations_together_may_not_exceed_the_import_authorization(
    traders: dict[str, Adapter],
) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ia = import_authorization([MORPHINE])
    await se.send(ia, EXPORTER, check=True)
    first = ("morphine", "sulfate pentahydrate", "300", "g", "225.617")
    assert (await nl.send(export_authorization([first], ia), IMPORTER)).accepted
    second = await nl.send(export_authorization([first], ia), IMPORTER)
    assert codes(second.reasons) == ["QUANTITY_EXCEEDS_AUTHORIZATION"]
    assert "150.413 g of 376.03 g" in second.reasons[0][1]
    await drain(se, nl)


async def test_an_export_naming_another_importer_is_an_authorization_mismatch(traders: dict[str, Adapter]) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ia = import_authorization([MORPHINE])
    await se.send(ia, EXPORTER, check=True)
    ack = await nl.send(export_authorization([MORPHINE], ia, importer_name="Another Pharma AB"), IMPORTER)
    assert codes(ack.reasons) == ["AUTHORIZATION_MISMATCH"]
    await drain(se, nl)


async def test_a_substance_not_authorized_for_import_is_an_authorization_mismatch(traders: dict[str, Adapter]) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ia = import_authorization([MORPHINE])
    await se.send(ia, EXPORTER, check=True)
    ack = await nl.send(export_authorization([FENTANYL_150G], ia), IMPORTER)
    assert codes(ack.reasons) == ["AUTHORIZATION_MISMATCH"]
    await drain(se, nl)


async def test_an_export_issued_after_the_import_authorization_expired_is_refused(traders: dict[str, Adapter]) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ia = import_authorization([MORPHINE], issue_date="2026-01-10", valid_until="2026-07-09")
    await se.send(ia, EXPORTER, check=True)
    late = export_authorization([MORPHINE], ia, issue_date="2026-11-23", valid_until="2027-02-21")
    ack = await nl.send(late, IMPORTER)
    assert codes(ack.reasons) == ["AUTHORIZATION_EXPIRED"]
    await drain(se, nl)


async def test_an_export_against_a_paper_import_authorization_is_accepted_with_a_warning(
    traders: dict[str, Adapter],
) -> None:
    ack = await traders[EXPORTER].send(export_authorization([MORPHINE], None), IMPORTER)
    assert ack.accepted
    assert codes(ack.warnings) == ["REFERENCE_NOT_ON_FILE"]
    await drain(*traders.values())


async def test_a_wrong_anhydrous_base_is_accepted_with_a_warning(traders: dict[str, Adapter]) -> None:
    wrong = ("morphine", "sulfate pentahydrate", "500", "g", "500")
    ack = await traders[IMPORTER].send(import_authorization([wrong]), EXPORTER)
    assert ack.accepted and codes(ack.warnings) == ["ANHYDROUS_BASE_DIFFERS"]
    assert "376.028" in ack.warnings[0][1]
    await drain(*traders.values())


async def test_an_import_over_the_estimate_is_refused_until_a_supplementary_estimate_lifts_it(
    hub: RunningHub, traders: dict[str, Adapter]
) -> None:
    se = traders[IMPORTER]
    first = import_authorization([FENTANYL_150G])
    assert (await se.send(first, EXPORTER)).accepted  # 95.4818 g of the 100 g estimate
    more = ("fentanyl", "citrate", "10", "g", "6.36545")
    refused = await se.send(import_authorization([more]), EXPORTER)
    assert codes(refused.reasons) == ["ESTIMATE_EXCEEDED"]
    assert "1.84725 g above the confirmed figure of 100 g" in refused.reasons[0][1]

    with_ledger(hub, lambda ledger: ledger.trade.load_estimate(
        IMPORTER, "fentanyl", 2026, "supplementary", Decimal(50), datetime.now(UTC)))  # fmt: skip
    assert (await se.send(import_authorization([more]), EXPORTER)).accepted

    # A cancelled authorization no longer counts: 95.4818 g are free again.
    assert (await se.send(cancellation(first, "ImportAuthorization", IMPORTER), EXPORTER)).accepted
    assert (await se.send(import_authorization([FENTANYL_150G]), EXPORTER)).accepted
    await drain(*traders.values())


async def test_an_endorsement_with_other_quantities_is_routed_and_the_exporter_gets_a_notice(
    traders: dict[str, Adapter],
) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ia = import_authorization([MORPHINE])
    await se.send(ia, EXPORTER, check=True)
    ea = export_authorization([MORPHINE], ia)
    await nl.send(ea, IMPORTER, check=True)
    await drain(se, nl)

    short = ("morphine", "sulfate pentahydrate", "490", "g", "368.51")
    ack = await se.send(endorsement(ea, [short]), EXPORTER)
    assert ack.accepted and codes(ack.warnings) == ["QUANTITY_DISCREPANCY"]

    kinds = {}
    for _ in range(2):
        delivery = await nl.next_delivery(timeout=10)
        assert delivery.header is not None and delivery.verified is not None
        kinds[delivery.header.type] = delivery
        await delivery.ack()
    assert set(kinds) == {"ExportEndorsement", "Notice"}
    notice = kinds["Notice"]
    assert notice.verified is not None and notice.verified.signer_code == "HUB"
    document = body_document(notice.verified.signed)
    assert document.findtext(f"{{{DOCUMENT_NS}}}Kind") == "QUANTITY_DISCREPANCY"
    assert "490 g imported, 500 g authorized" in (document.findtext(f"{{{DOCUMENT_NS}}}Text") or "")
    await drain(se, nl)


async def test_an_endorsement_of_an_unknown_export_authorization_is_an_unknown_reference(
    traders: dict[str, Adapter],
) -> None:
    never_sent = export_authorization([MORPHINE], None)
    ack = await traders[IMPORTER].send(endorsement(never_sent, [MORPHINE]), EXPORTER)
    assert codes(ack.reasons) == ["UNKNOWN_REFERENCE"]


async def test_an_endorsement_of_a_cancelled_export_authorization_is_an_authorization_mismatch(
    traders: dict[str, Adapter],
) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ea = export_authorization([MORPHINE], None)
    await nl.send(ea, IMPORTER, check=True)
    assert (await nl.send(cancellation(ea, "ExportAuthorization", EXPORTER), IMPORTER)).accepted
    ack = await se.send(endorsement(ea, [MORPHINE]), EXPORTER)
    assert codes(ack.reasons) == ["AUTHORIZATION_MISMATCH"]
    await drain(se, nl)


async def test_only_the_issuer_can_cancel_an_authorization(traders: dict[str, Adapter]) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ea = export_authorization([MORPHINE], None)
    await nl.send(ea, IMPORTER, check=True)
    ack = await se.send(cancellation(ea, "ExportAuthorization", EXPORTER), EXPORTER)
    assert codes(ack.reasons) == ["AUTHORIZATION_MISMATCH"]
    await drain(se, nl)


async def test_an_unanswered_pre_export_notification_makes_the_hub_send_the_exporter_one_notice(
    traders: dict[str, Adapter],
) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    pen = pre_export_notification(datetime.now(UTC) + timedelta(seconds=2))
    await nl.send(pen, IMPORTER, check=True)
    await drain(se)
    notice = await nl.next_delivery(timeout=15)
    await notice.ack()
    assert notice.header is not None and notice.header.type == "Notice"
    assert notice.verified is not None
    document = body_document(notice.verified.signed)
    assert document.findtext(f"{{{DOCUMENT_NS}}}Kind") == "PRE_EXPORT_DEADLINE_PASSED"
    assert number(pen) in (document.findtext(f"{{{DOCUMENT_NS}}}Text") or "")
    with pytest.raises(TimeoutError):  # once only, although the scheduler keeps running
        await nl.next_delivery(timeout=2)


async def test_an_answered_pre_export_notification_sends_no_notice(traders: dict[str, Adapter]) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    pen = pre_export_notification(datetime.now(UTC) + timedelta(seconds=2))
    await nl.send(pen, IMPORTER, check=True)
    await drain(se)
    assert (await se.send(pre_export_response(pen, "NO_OBJECTION"), EXPORTER)).accepted
    response = await nl.next_delivery(timeout=10)
    assert response.header is not None and response.header.type == "PreExportResponse"
    await response.ack()
    with pytest.raises(TimeoutError):
        await nl.next_delivery(timeout=3)


async def test_an_objection_without_a_reason_is_refused(traders: dict[str, Adapter]) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    pen = pre_export_notification(datetime.now(UTC) + timedelta(days=14))
    await nl.send(pen, IMPORTER, check=True)
    ack = await se.send(pre_export_response(pen, "OBJECTION"), EXPORTER)
    assert codes(ack.reasons) == ["SCHEMA_INVALID"]
    await drain(se, nl)


async def test_the_trade_record_shows_the_whole_chain(hub: RunningHub, traders: dict[str, Adapter]) -> None:
    se, nl = traders[IMPORTER], traders[EXPORTER]
    ia = import_authorization([MORPHINE])
    await se.send(ia, EXPORTER, check=True)
    ea = export_authorization([MORPHINE], ia)
    await nl.send(ea, IMPORTER, check=True)
    await se.send(endorsement(ea, [("morphine", "sulfate pentahydrate", "499", "g", "375.28")]), EXPORTER, check=True)
    await drain(se, nl)
    events = with_ledger(hub, lambda ledger: ledger.trade.events(number(ia)))
    assert [(e.number, e.kind) for e in events] == [
        (number(ia), "ISSUED"),
        (number(ea), "ISSUED"),
        (number(ia), "ANSWERED"),
        (number(ea), "ENDORSED"),
        (number(ea), "NOTICE QUANTITY_DISCREPANCY"),
    ]
