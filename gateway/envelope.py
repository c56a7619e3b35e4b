"""The envelope of section 3: reading its header from a (verified) tree and building new ones."""

from __future__ import annotations

import uuid
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from gateway.reading import DOCUMENT_NS, ENVELOPE_NS

HUB = "HUB"

# Documents a recipient answers with a Receipt; the others are the hub's and receipts themselves.
BUSINESS_TYPES = frozenset(
    {
        "ImportAuthorization",
        "ExportAuthorization",
        "ExportEndorsement",
        "Cancellation",
        "Clarification",
        "PreExportNotification",
        "PreExportResponse",
    }
)


def _q(name: str) -> str:
    return f"{{{ENVELOPE_NS}}}{name}"


@dataclass(frozen=True)
class Header:
    message_id: str
    sender: str
    recipient: str
    type: str
    created_at: datetime
    conversation_id: str | None = None
    ref_to_message_id: str | None = None


def format_instant(instant: datetime) -> str:
    """An xs:dateTime in UTC with a Z, to the second (or millisecond when it has one)."""
    instant = instant.astimezone(UTC)
    if instant.microsecond:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> datetime:
    """Parse an xs:dateTime that carries a zone (the schema has already required one)."""
    text = text.strip()
    midnight_end = "T24:00:00" in text  # xs:dateTime allows 24:00:00, the end of the day: the next day's 00:00
    value = datetime.fromisoformat(text.replace("T24:00:00", "T00:00:00").replace("Z", "+00:00"))
    if midnight_end:
        try:
            value += timedelta(days=1)
        except OverflowError:  # 9999-12-31T24:00:00 is the first instant of the year 10000
            raise ValueError(f"{text!r} is after the last day a date can have (9999-12-31)") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value


def read_header(message: etree._Element) -> Header:
    """Read the header of a schema-valid envelope."""
    header = message.find(_q("Header"))
    if header is None:
        raise ValueError("the envelope has no Header")

    def text(name: str) -> str | None:
        node = header.find(_q(name))
        return None if node is None or node.text is None else node.text.strip()

    return Header(
        message_id=text("MessageId") or "",
        sender=text("From") or "",
        recipient=text("To") or "",
        type=text("Type") or "",
        created_at=parse_instant(text("CreatedAt") or ""),
        conversation_id=text("ConversationId"),
        ref_to_message_id=text("RefToMessageId"),
    )


def body_document(message: etree._Element) -> etree._Element:
    """The one document inside ``Body``."""
    body = message.find(_q("Body"))
    if body is None or len(body) != 1:
        raise ValueError("the envelope's Body must hold exactly one document")
    return body[0]


def build_envelope(header: Header, document: etree._Element) -> etree._Element:
    """A new unsigned envelope around ``document`` (which is copied, not moved)."""
    message = etree.Element(_q("Message"), nsmap={None: ENVELOPE_NS})  # type: ignore[dict-item]
    head = etree.SubElement(message, _q("Header"))
    fields = [
        ("MessageId", header.message_id),
        ("From", header.sender),
        ("To", header.recipient),
        ("Type", header.type),
        ("CreatedAt", format_instant(header.created_at)),
        ("ConversationId", header.conversation_id),
        ("RefToMessageId", header.ref_to_message_id),
    ]
    for name, value in fields:
        if value is not None:
            etree.SubElement(head, _q(name)).text = value
    body = etree.SubElement(message, _q("Body"))
    body.append(_detached_copy(document))
    return message


def _detached_copy(element: etree._Element) -> etree._Element:
    copy = deepcopy(element)
    copy.tail = None
    return copy


def document_element(local_name: str) -> etree._Element:
    """A new empty document element in the authorization namespace."""
    return etree.Element(f"{{{DOCUMENT_NS}}}{local_name}", nsmap={None: DOCUMENT_NS})  # type: ignore[dict-item]


def new_message_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str | None) -> bool:
    if not value:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36
