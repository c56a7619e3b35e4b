"""Business documents for the rules' tests, built from the contract's examples for two other countries."""

from __future__ import annotations

import uuid
from copy import deepcopy
from datetime import datetime

from lxml import etree

from gateway.envelope import body_document
from gateway.reading import DOCUMENT_NS
from tests.support.pki import example

IMPORTER, EXPORTER = "SE", "NL"
N = f"{{{DOCUMENT_NS}}}"

# (INN, salt, quantity, unit, anhydrous base)
Line = tuple[str, str | None, str, str, str]
MORPHINE: Line = ("morphine", "sulfate pentahydrate", "500", "g", "376.03")


def _set(element: etree._Element, path: str, value: str) -> None:
    found = element.find("/".join(N + p for p in path.split("/")))
    assert found is not None, path
    found.text = value


def _items(document: etree._Element, lines: list[Line], quantity: str = "Quantity") -> None:
    items = document.find(f"{N}Items")
    assert items is not None
    template = deepcopy(items[0])
    for old in list(items):
        items.remove(old)
    for number, (inn, salt, amount, unit, base) in enumerate(lines, start=1):
        item = deepcopy(template)
        item.set("line", str(number))
        _set(item, "Substance/INN", inn)
        salt_element = item.find(f"{N}Substance/{N}Salt")
        if salt is None and salt_element is not None:
            salt_element.getparent().remove(salt_element)  # type: ignore[union-attr]
        elif salt is not None:
            _set(item, "Substance/Salt", salt)
        for name, value in ((quantity, amount), ("AnhydrousBase", base)):
            element = item.find(N + name)
            assert element is not None
            element.text, element.attrib["unit"] = value, unit
        items.append(item)


def _parties(document: etree._Element, importer: str, exporter: str) -> None:
    _set(document, "Importer/Country", importer)
    _set(document, "Exporter/Country", exporter)


def number(document: etree._Element) -> str:
    return document.findtext(f"{N}Number") or ""


def import_authorization(
    lines: list[Line], *, issue_date: str = "2026-11-20", valid_until: str = "2027-05-19"
) -> etree._Element:
    document = body_document(example("ImportAuthorization"))
    _set(document, "Number", f"{IMPORTER}-IMP-{uuid.uuid4().hex[:10]}")
    _set(document, "IssuingAuthority/Country", IMPORTER)
    _set(document, "IssueDate", issue_date)
    _set(document, "ValidUntil", valid_until)
    _parties(document, IMPORTER, EXPORTER)
    _items(document, lines)
    return document


def export_authorization(
    lines: list[Line],
    answering: etree._Element | None,
    *,
    issue_date: str = "2026-11-23",
    valid_until: str = "2027-02-21",
    importer_name: str | None = None,
) -> etree._Element:
    """An export authorization; ``answering=None`` names a paper import authorization not on file."""
    document = body_document(example("ExportAuthorization"))
    _set(document, "Number", f"{EXPORTER}-EXP-{uuid.uuid4().hex[:10]}")
    _set(document, "IssuingAuthority/Country", EXPORTER)
    _set(document, "IssueDate", issue_date)
    _set(document, "ValidUntil", valid_until)
    if answering is not None:
        _set(document, "ImportAuthorizationRef/Number", number(answering))
        _set(document, "ImportAuthorizationRef/IssueDate", answering.findtext(f"{N}IssueDate") or "")
    else:
        _set(document, "ImportAuthorizationRef/Number", f"{IMPORTER}-PAPER-{uuid.uuid4().hex[:6]}")
    _set(document, "ImportAuthorizationRef/IssuingCountry", IMPORTER)
    _parties(document, IMPORTER, EXPORTER)
    if importer_name:
        _set(document, "Importer/Name", importer_name)
    _items(document, lines)
    return document


def endorsement(export: etree._Element, lines: list[Line]) -> etree._Element:
    document = body_document(example("ExportEndorsement"))
    _set(document, "ExportAuthorizationRef/Number", number(export))
    _set(document, "ExportAuthorizationRef/IssuingCountry", EXPORTER)
    _set(document, "ExportAuthorizationRef/IssueDate", export.findtext(f"{N}IssueDate") or "")
    _set(document, "EndorsingAuthority/Country", IMPORTER)
    items = document.find(f"{N}Items")
    assert items is not None
    _items(document, lines, quantity="QuantityImported")
    for item in items:
        units = item.find(f"{N}NumberOfUnitsImported")
        assert units is not None
        units.text = "1"
    return document


def cancellation(of: etree._Element, kind: str, issuer: str) -> etree._Element:
    document = body_document(example("Cancellation"))
    _set(document, "AuthorizationRef/Type", kind)
    _set(document, "AuthorizationRef/Number", number(of))
    _set(document, "AuthorizationRef/IssuingCountry", issuer)
    _set(document, "AuthorizationRef/IssueDate", of.findtext(f"{N}IssueDate") or "")
    return document


def pre_export_notification(deadline: datetime) -> etree._Element:
    document = body_document(example("PreExportNotification"))
    _set(document, "Number", f"{EXPORTER}-PEN-{uuid.uuid4().hex[:10]}")
    _set(document, "IssuingAuthority/Country", EXPORTER)
    _set(document, "ResponseDeadline", deadline.isoformat(timespec="seconds"))
    _parties(document, IMPORTER, EXPORTER)
    return document


def pre_export_response(to: etree._Element, decision: str, reason: str | None = None) -> etree._Element:
    document = body_document(example("PreExportResponse"))
    _set(document, "PreExportNotificationRef/Number", number(to))
    _set(document, "PreExportNotificationRef/IssuingCountry", EXPORTER)
    _set(document, "PreExportNotificationRef/IssueDate", to.findtext(f"{N}IssueDate") or "")
    _set(document, "RespondingAuthority/Country", IMPORTER)
    _set(document, "Decision", decision)
    if reason:
        etree.SubElement(document, f"{N}Reason").text = reason
    return document
