"""The hub's own signed messages: the Acknowledgement of section 5 and the Notice of section 6."""

from __future__ import annotations

import uuid
from datetime import datetime

from lxml import etree

from certs.signer import Signer
from gateway.envelope import HUB, Header, build_envelope, document_element, format_instant
from gateway.ledger.model import Finding
from gateway.reading import DOCUMENT_NS
from gateway.rules.record import CertificateRef, Notice
from gateway.signature import sign_envelope


def _add(parent: etree._Element, name: str, text: str, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{DOCUMENT_NS}}}{name}", attributes)
    element.text = text
    return element


def acknowledgement_document(
    status: str,
    digest: str,
    received_at: datetime,
    sequence: int | None,
    reasons: tuple[Finding, ...],
    warnings: tuple[Finding, ...],
) -> etree._Element:
    document = document_element("Acknowledgement")
    _add(document, "Status", status)
    _add(document, "ReceivedDigest", digest)
    _add(document, "ReceivedAt", format_instant(received_at))
    if sequence is not None:
        _add(document, "LedgerSequence", str(sequence))
    for reason in reasons:
        _add(document, "Reason", reason.text, code=reason.code)
    for warning in warnings:
        _add(document, "Warning", warning.text, code=warning.code)
    return document


def sign_acknowledgement(
    signer: Signer,
    *,
    to: str,
    ref_to_message_id: str | None,
    conversation_id: str | None,
    status: str,
    digest: str,
    received_at: datetime,
    sequence: int | None,
    reasons: tuple[Finding, ...],
    warnings: tuple[Finding, ...],
    now: datetime,
) -> tuple[str, bytes]:
    """Build and sign one Acknowledgement; returns its MessageId and bytes."""
    document = acknowledgement_document(status, digest, received_at, sequence, reasons, warnings)
    return sign_from_hub(signer, document, to, now, conversation_id, ref_to_message_id)


def sign_from_hub(
    signer: Signer,
    document: etree._Element,
    to: str,
    now: datetime,
    conversation_id: str | None,
    ref_to_message_id: str | None,
) -> tuple[str, bytes]:
    """Wrap one of the hub's own documents in a new envelope from HUB and sign it."""
    message_id = str(uuid.uuid4())
    header = Header(
        message_id=message_id,
        sender=HUB,
        recipient=to,
        type=etree.QName(document).localname,
        created_at=now,
        conversation_id=conversation_id,
        ref_to_message_id=ref_to_message_id,
    )
    return message_id, sign_envelope(build_envelope(header, document), signer)


def notice_document(notice: Notice) -> etree._Element:
    document = document_element("Notice")
    _add(document, "Kind", notice.kind)
    about = notice.about
    if isinstance(about, CertificateRef):
        certificate = etree.SubElement(document, f"{{{DOCUMENT_NS}}}Certificate")
        _add(certificate, "Serial", about.serial)
        _add(certificate, "NotAfter", format_instant(about.not_after))
    elif about is not None:
        ref = etree.SubElement(document, f"{{{DOCUMENT_NS}}}AuthorizationRef")
        _add(ref, "Type", about.type)
        _add(ref, "Number", about.number)
        _add(ref, "IssuingCountry", about.issuing_country)
        _add(ref, "IssueDate", about.issue_date.isoformat())
    _add(document, "Text", notice.text)
    if notice.details:
        _add(document, "Details", notice.details)
    return document


def sign_notice(
    signer: Signer, notice: Notice, now: datetime, *, conversation_id: str | None, ref_to_message_id: str | None
) -> tuple[str, bytes]:
    """Build and sign one Notice from the hub; returns its MessageId and bytes."""
    return sign_from_hub(signer, notice_document(notice), notice.to, now, conversation_id, ref_to_message_id)
