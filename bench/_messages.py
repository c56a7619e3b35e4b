"""The bench's traffic: signed ExportAuthorizations, each with a new MessageId and a number of its own."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from certs.signer import Signer
from gateway.envelope import Header, body_document, build_envelope, new_message_id
from gateway.reading import DOCUMENT_NS, parse_xml
from gateway.settings import PROJECT_ROOT
from gateway.signature import sign_envelope

TEMPLATE = PROJECT_ROOT / "gateway" / "demo_documents" / "ExportAuthorization.xml"
TYPE = "ExportAuthorization"


@dataclass(frozen=True)
class Outgoing:
    """One signed envelope, ready to publish as its sender."""

    message_id: str
    sender: str
    recipient: str
    type: str
    body: bytes


def _set(document: etree._Element, path: str, text: str) -> None:
    element = document.find("/".join(f"{{{DOCUMENT_NS}}}{step}" for step in path.split("/")))
    if element is None:
        raise ValueError(f"the template has no {path}")
    element.text = text


class ExportAuthorizations:
    """Makes export authorizations from the demo document, from any sender to any recipient.

    Each gets a number of its own (the hub refuses a second authorization with the same number),
    its issuer is the sender and its importer the recipient, so the rules accept it; no estimate
    and no import authorization are on file, so every acknowledgement carries warnings.
    """

    def __init__(self, signers: dict[str, Signer]) -> None:
        self._signers = signers
        self._document = body_document(parse_xml(TEMPLATE.read_bytes()))

    def sign(self, sender: str, recipient: str, now: datetime | None = None) -> Outgoing:
        now = now or datetime.now(UTC)
        today = now.date()
        document = self._document  # build_envelope copies it
        _set(document, "Number", f"{sender}-EXP-BENCH-{uuid.uuid4().hex[:12]}")
        _set(document, "IssuingAuthority/Country", sender)
        _set(document, "Exporter/Country", sender)
        _set(document, "Importer/Country", recipient)
        _set(document, "IssueDate", today.isoformat())
        _set(document, "ValidUntil", (today + timedelta(days=90)).isoformat())
        _set(document, "ImportAuthorizationRef/Number", f"{recipient}-IMP-BENCH-{uuid.uuid4().hex[:12]}")
        _set(document, "ImportAuthorizationRef/IssuingCountry", recipient)
        _set(document, "ImportAuthorizationRef/IssueDate", (today - timedelta(days=3)).isoformat())
        header = Header(
            message_id=new_message_id(),
            sender=sender,
            recipient=recipient,
            type=TYPE,
            created_at=now,
            conversation_id=str(uuid.uuid4()),
        )
        body = sign_envelope(build_envelope(header, document), self._signers[sender])
        return Outgoing(header.message_id, sender, recipient, TYPE, body)


def pairings(senders: Sequence[str], receivers: Sequence[str]) -> Callable[[int], tuple[str, str]]:
    """The i-th message's sender and recipient: senders in turn, each writing to the receivers in turn."""

    def pair(index: int) -> tuple[str, str]:
        sender = senders[index % len(senders)]
        recipient = receivers[(index // len(senders)) % len(receivers)]
        return sender, recipient

    return pair


def sign_many(factory: ExportAuthorizations, count: int, pair: Callable[[int], tuple[str, str]]) -> list[Outgoing]:
    return [factory.sign(*pair(index)) for index in range(count)]
