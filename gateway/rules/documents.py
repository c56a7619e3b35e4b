"""The business documents of section 6, read from a verified tree into plain typed values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree

from gateway.envelope import parse_instant
from gateway.reading import DOCUMENT_NS
from gateway.rules.substances import Quantity, parse_quantity

IMPORT = "ImportAuthorization"
EXPORT = "ExportAuthorization"
PRE_EXPORT = "PreExportNotification"


def _q(name: str) -> str:
    return f"{{{DOCUMENT_NS}}}{name}"


def _text(element: etree._Element, path: str) -> str:
    found = element.find("/".join(_q(p) for p in path.split("/")))
    if found is None or found.text is None:
        raise ValueError(f"{etree.QName(element).localname} has no {path}")
    return found.text.strip()


def _optional(element: etree._Element, path: str) -> str | None:
    found = element.find("/".join(_q(p) for p in path.split("/")))
    return None if found is None or found.text is None else found.text.strip()


def _quantity(element: etree._Element, name: str) -> Quantity:
    found = element.find(_q(name))
    if found is None or found.text is None:
        raise ValueError(f"item has no {name}")
    return parse_quantity(found.text, found.get("unit", ""))


def _anhydrous_base(item: etree._Element) -> Quantity:
    # The schema allows every unit here, but the rules and the ledger weigh the base in grams.
    base = _quantity(item, "AnhydrousBase")
    if base.dimension != "mass":
        raise ValueError(f"item {item.get('line')}: AnhydrousBase is in {base.unit}; it must be a mass (mg, g, kg)")
    return base


@dataclass(frozen=True)
class Party:
    name: str
    country: str

    @classmethod
    def read(cls, element: etree._Element, name: str) -> Party:
        party = element.find(_q(name))
        if party is None:
            raise ValueError(f"no {name}")
        return cls(name=_text(party, "Name"), country=_text(party, "Country"))


@dataclass(frozen=True)
class Reference:
    """A reference to an authorization: its kind, number, issuing country and issue date."""

    type: str
    number: str
    issuing_country: str
    issue_date: date

    @classmethod
    def read(cls, element: etree._Element, name: str, type_: str | None = None) -> Reference:
        ref = element.find(_q(name))
        if ref is None:
            raise ValueError(f"no {name}")
        return cls(
            type=type_ or _text(ref, "Type"),
            number=_text(ref, "Number"),
            issuing_country=_text(ref, "IssuingCountry"),
            issue_date=date.fromisoformat(_text(ref, "IssueDate")),
        )

    def __str__(self) -> str:
        return f"{self.type} {self.number} ({self.issuing_country}, {self.issue_date.isoformat()})"


@dataclass(frozen=True)
class Item:
    line: int
    inn: str
    salt: str | None
    regime: str
    quantity: Quantity
    anhydrous_base: Quantity
    number_of_units: int


def _items(document: etree._Element) -> tuple[Item, ...]:
    items = []
    for item in document.iterfind(f"{_q('Items')}/{_q('Item')}"):
        items.append(
            Item(
                line=int(item.get("line", "0")),
                inn=_text(item, "Substance/INN"),
                salt=_optional(item, "Substance/Salt"),
                regime=_optional(item, "ControlRegime") or "",
                quantity=_quantity(item, "Quantity"),
                anhydrous_base=_anhydrous_base(item),
                number_of_units=int(_optional(item, "NumberOfUnits") or 0),
            )
        )
    return tuple(items)


@dataclass(frozen=True)
class Authorization:
    """An import or export authorization, or a pre-export notification (which authorizes nothing but has items)."""

    type: str
    number: str
    issuing_country: str
    issue_date: date
    valid_until: date | None
    importer: Party
    exporter: Party
    items: tuple[Item, ...]
    import_ref: Reference | None = None
    response_deadline: datetime | None = None

    @property
    def reference(self) -> Reference:
        return Reference(self.type, self.number, self.issuing_country, self.issue_date)


@dataclass(frozen=True)
class EndorsedItem:
    line: int
    inn: str
    salt: str | None
    quantity: Quantity
    anhydrous_base: Quantity


@dataclass(frozen=True)
class Endorsement:
    export_ref: Reference
    endorsing_country: str
    date_of_entry: date
    items: tuple[EndorsedItem, ...]


@dataclass(frozen=True)
class Cancellation:
    ref: Reference
    cancellation_date: date
    reason: str


@dataclass(frozen=True)
class Clarification:
    ref: Reference
    kind: str
    text: str


@dataclass(frozen=True)
class PreExportResponse:
    ref: Reference
    decision: str
    reason: str | None


Document = Authorization | Endorsement | Cancellation | Clarification | PreExportResponse


def read_document(document: etree._Element) -> Document | None:
    """Read a business document; None for the types no rule looks into (receipts and the hub's own)."""
    kind = etree.QName(document).localname
    if kind in (IMPORT, EXPORT, PRE_EXPORT):
        deadline = _optional(document, "ResponseDeadline")
        valid_until = _optional(document, "ValidUntil")
        return Authorization(
            type=kind,
            number=_text(document, "Number"),
            issuing_country=_text(document, "IssuingAuthority/Country"),
            issue_date=date.fromisoformat(_text(document, "IssueDate")),
            valid_until=date.fromisoformat(valid_until) if valid_until else None,
            importer=Party.read(document, "Importer"),
            exporter=Party.read(document, "Exporter"),
            items=_items(document),
            import_ref=Reference.read(document, "ImportAuthorizationRef", IMPORT) if kind == EXPORT else None,
            response_deadline=parse_instant(deadline) if deadline else None,
        )
    if kind == "ExportEndorsement":
        return Endorsement(
            export_ref=Reference.read(document, "ExportAuthorizationRef", EXPORT),
            endorsing_country=_text(document, "EndorsingAuthority/Country"),
            date_of_entry=date.fromisoformat(_text(document, "DateOfEntry")),
            items=tuple(
                EndorsedItem(
                    line=int(item.get("line", "0")),
                    inn=_text(item, "Substance/INN"),
                    salt=_optional(item, "Substance/Salt"),
                    quantity=_quantity(item, "QuantityImported"),
                    anhydrous_base=_anhydrous_base(item),
                )
                for item in document.iterfind(f"{_q('Items')}/{_q('Item')}")
            ),
        )
    if kind == "Cancellation":
        return Cancellation(
            ref=Reference.read(document, "AuthorizationRef"),
            cancellation_date=date.fromisoformat(_text(document, "CancellationDate")),
            reason=_text(document, "Reason"),
        )
    if kind == "Clarification":
        return Clarification(
            ref=Reference.read(document, "AuthorizationRef"), kind=_text(document, "Kind"), text=_text(document, "Text")
        )
    if kind == "PreExportResponse":
        return PreExportResponse(
            ref=Reference.read(document, "PreExportNotificationRef", PRE_EXPORT),
            decision=_text(document, "Decision"),
            reason=_optional(document, "Reason"),
        )
    return None
