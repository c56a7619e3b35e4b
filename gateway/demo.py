"""`i2es demo`: one trade between CH (importing) and DE (exporting), through a real hub and broker."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from decimal import Decimal
from pathlib import Path

from lxml import etree

from adapters import Acknowledgement, Adapter, AdapterConfig, Delivery
from gateway.admin import add_participant, initialize, management, vhost_url
from gateway.broker.service import connect
from gateway.cli import format_ledger, ledger_rows
from gateway.envelope import body_document
from gateway.home import Home
from gateway.ledger.store import ledger_for
from gateway.logs import configure_logging
from gateway.reading import DOCUMENT_NS, parse_xml
from gateway.rules.estimates import read_estimates
from gateway.rules.substances import plain
from gateway.runtime import HubParts, utc_now
from gateway.settings import Settings

DOCUMENTS = Path(__file__).parent / "demo_documents"
PARTIES = {
    "CH": "Swissmedic, Swiss Agency for Therapeutic Products, Narcotics Division",
    "DE": "Bundesinstitut für Arzneimittel und Medizinprodukte, Bundesopiumstelle",
}


def _document(name: str) -> etree._Element:
    return body_document(parse_xml((DOCUMENTS / f"{name}.xml").read_bytes()))


def _lines(document: etree._Element) -> list[etree._Element]:
    return list(document.iter(f"{{{DOCUMENT_NS}}}Item"))


def _set(element: etree._Element, name: str, text: str) -> None:
    child = element.find(f"{{{DOCUMENT_NS}}}{name}")
    assert child is not None, name
    child.text = text


def _items(document: etree._Element) -> str:
    parts = []
    for item in document.iter(f"{{{DOCUMENT_NS}}}Item"):
        inn = item.findtext(f"{{{DOCUMENT_NS}}}Substance/{{{DOCUMENT_NS}}}INN")
        quantity = item.find(f"{{{DOCUMENT_NS}}}Quantity")
        if quantity is None:
            quantity = item.find(f"{{{DOCUMENT_NS}}}QuantityImported")
        if quantity is not None:
            parts.append(f"{inn} {quantity.text} {quantity.get('unit')}")
    return ", ".join(parts)


def _say_ack(ack: Acknowledgement) -> None:
    where = f", ledger #{ack.ledger_sequence}" if ack.ledger_sequence else ""
    print(f"      hub → sender: {ack.status}{where} (acknowledgement signed by the hub, verified)")
    for code, text in ack.reasons:
        print(f"        reason {code}: {text}")
    for code, text in ack.warnings:
        print(f"        warning {code}: {text}")


async def _receive(recipient: Adapter, sender: Adapter) -> Delivery:
    """The recipient verifies, stores and answers the document; the sender gets the receipt."""
    delivery = await recipient.next_delivery(timeout=30)
    header = delivery.header
    assert header is not None, delivery.problem
    signer = delivery.verified.signer if delivery.verified else None
    serial = f"{signer.serial_number:x}"[:16] if signer else "?"
    print(
        f"      {recipient.config.code} receives it: signature by {header.sender} verified "
        f"(certificate serial {serial}…), {len(delivery.raw)} bytes, identical to what was sent"
    )
    receipt = await delivery.accept()
    if receipt is not None:
        print(
            f"      {recipient.config.code} → {header.sender}: Receipt RECEIVED; hub: {receipt.status}"
            f", ledger #{receipt.ledger_sequence}"
        )
    answer = await sender.next_delivery(timeout=30)
    assert answer.header is not None and answer.header.type == "Receipt", answer.problem
    await answer.accept()
    print(f"      {sender.config.code} gets the receipt, signed by {answer.header.sender} and verified")
    return delivery


async def _trade(settings: Settings) -> None:
    home = Home(settings.home)
    adapters = {
        code: Adapter(
            AdapterConfig(
                code=code,
                broker_url=vhost_url(settings, code, home.participant_password(code)),
                signer=home.participant_signer(code),
                anchors=tuple(home.anchors()),
                schema_dir=settings.schema_dir,
            )
        )
        for code in PARTIES
    }
    ch, de = adapters["CH"], adapters["DE"]
    for adapter in adapters.values():
        await adapter.connect()
    conversation = "9d7e5c3b-1a2f-4b6c-8d9e-0f1a2b3c4d5e"
    try:
        print("\n[1] CH issues an import authorization and sends it to DE")
        document = _document("ImportAuthorization")
        print(f"      ImportAuthorization {document.findtext(f'{{{DOCUMENT_NS}}}Number')}: {_items(document)}")
        ack = await ch.send(document, "DE", conversation_id=conversation, check=True)
        _say_ack(ack)
        import_delivery = await _receive(de, ch)

        print("\n[2] DE issues the export authorization that answers it")
        document = _document("ExportAuthorization")
        print(f"      ExportAuthorization {document.findtext(f'{{{DOCUMENT_NS}}}Number')}: {_items(document)}")
        assert import_delivery.header is not None
        ack = await de.send(
            document,
            "CH",
            conversation_id=conversation,
            ref_to_message_id=import_delivery.header.message_id,
            check=True,
        )
        _say_ack(ack)
        export_delivery = await _receive(ch, de)
        assert export_delivery.header is not None

        print("\n[3] Someone alters the quantity in DE's signed export authorization and replays it")
        forged = export_delivery.raw.replace(b">500</Quantity>", b">5000</Quantity>")
        forged = forged.replace(export_delivery.header.message_id.encode(), b"0d0e0f10-1112-4314-8516-171819202122")
        ack = await de.publish(forged, message_id="0d0e0f10-1112-4314-8516-171819202122", type="ExportAuthorization")
        _say_ack(ack)
        print("      nothing is routed to CH")

        print("\n[4] CH authorizes a further 5 kg of codeine phosphate hemihydrate, beyond its estimate")
        document = _document("ImportAuthorization")
        _set(document, "Number", "CH-IMP-2026-004790")
        codeine = _lines(document)[1]
        document.find(f"{{{DOCUMENT_NS}}}Items").remove(_lines(document)[0])  # type: ignore[union-attr]
        _set(codeine, "Quantity", "5")
        _set(codeine, "AnhydrousBase", "3.6835")
        print(f"      ImportAuthorization CH-IMP-2026-004790: {_items(document)}")
        ack = await ch.send(document, "DE", conversation_id=str(uuid.uuid4()))
        _say_ack(ack)
        print("      nothing is routed to DE until the operator loads a supplementary estimate")

        print("\n[5] The goods arrive, 100 ampoules short; CH endorses the export authorization (art. 31 (7))")
        document = _document("ExportEndorsement")
        morphine = _lines(document)[0]
        _set(morphine, "NumberOfUnitsImported", "49900")
        _set(morphine, "QuantityImported", "499")
        _set(morphine, "AnhydrousBase", "375.28")
        print(f"      ExportEndorsement, quantities imported: {_items(document)}")
        ack = await ch.send(
            document,
            "DE",
            conversation_id=conversation,
            ref_to_message_id=export_delivery.header.message_id,
            check=True,
        )
        _say_ack(ack)
        await _receive(de, ch)
        notice = await de.next_delivery(timeout=30)
        assert notice.verified is not None and notice.header is not None and notice.header.type == "Notice"
        await notice.accept()
        text = body_document(notice.verified.signed).findtext(f"{{{DOCUMENT_NS}}}Text")
        print(f"      hub → DE: Notice QUANTITY_DISCREPANCY (signed by the hub, verified): {text}")
    finally:
        for adapter in adapters.values():
            await adapter.close()


async def _run(settings: Settings, parts: HubParts) -> None:
    connection = await connect(vhost_url(settings), "i2es-hub")
    service = parts.service(connection)
    hub_task = asyncio.create_task(service.run())
    try:
        await _trade(settings)
    finally:
        service.stop()
        await hub_task
        await connection.close()


def run_demo(settings: Settings) -> int:
    log_path = settings.home.parent / f"{settings.home.name}.log"
    log_path.unlink(missing_ok=True)
    configure_logging("json", log_path)
    print(f"I2ES demo: a hub and two national systems on the local RabbitMQ (vhost {settings.vhost!r})")
    print(f"state folder: {settings.home} (made anew for each run)")
    shutil.rmtree(settings.home, ignore_errors=True)
    management(settings).delete_vhost(settings.vhost)
    now = utc_now()
    initialize(settings, now)
    home = Home(settings.home)
    root, issuing = home.anchors()
    print(f"hub CA: {root.subject.rfc4514_string()} → {issuing.subject.rfc4514_string()}")
    for code, name in PARTIES.items():
        report = add_participant(settings, code, name, now)
        print(f"registered {code}: {name}; signing certificate serial {report.certificate.serial_number:x}")
    ledger = ledger_for(settings)
    for row in read_estimates((DOCUMENTS / "estimates.csv").read_text(encoding="utf-8")):
        ledger.trade.load_estimate(row.country, row.inn, row.year, row.kind, row.grams, now)
        print(
            f"estimate loaded by the operator: {row.country} {row.inn} {row.year}: {plain(row.grams)} g anhydrous base"
        )
    ledger.close()
    parts = HubParts(settings)
    try:
        asyncio.run(_run(settings, parts))
        print("\nThe hub's ledger:")
        ledger = ledger_for(settings)
        rows = ledger_rows(ledger.entries())
        ledger.close()
        print(format_ledger(rows))
        ledger = ledger_for(settings)
        print("\nThe trade record of CH-IMP-2026-004711 (i2es trade show):")
        for event in ledger.trade.events("CH-IMP-2026-004711"):
            print(f"  {event.type:21}  {event.number:20}  {event.kind:29}  {event.detail}")
        print("\nCH's imports in 2026, grams of anhydrous base (i2es report --year 2026):")
        for t in ledger.trade.yearly_totals(2026, "CH"):
            used = f"{t.estimate_used_percent}%" if t.estimate_used_percent is not None else "-"
            print(
                f"  {t.inn:10} authorized {plain(t.authorized):>9}  exported {plain(t.exported):>9}  "
                f"received {plain(t.received):>9}  estimate {plain(t.estimate or Decimal(0)):>6}  used {used}"
            )
        ledger.close()
    finally:
        parts.close()
    print(f"\nThe hub's log, one JSON line per message: {log_path}")
    print(f"Try: I2ES_HOME={settings.home} I2ES_VHOST={settings.vhost} i2es ledger show")
    return 0
