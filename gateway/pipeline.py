"""The checks a message passes on its way through the hub, in the contract's order (sections 3-5).

``examine`` is pure: bytes and broker properties in, a verdict out. It reads the ledger and the
registry only through the narrow lookups of ``Checks``, and takes ``now`` as an argument.
Every refusal is raised once, where it is found, and turned into a verdict here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from lxml import etree

from certs.trust import TrustStore
from gateway.envelope import BUSINESS_TYPES, HUB, Header, body_document, is_uuid, read_header
from gateway.errors import (
    DuplicateMessageId,
    GatewayError,
    PropertyMismatch,
    ReasonCode,
    SchemaInvalid,
    SenderMismatch,
    StaleMessage,
    UnknownRecipient,
    UnknownReference,
    WarningCode,
)
from gateway.ledger.model import Finding, LedgerEntry
from gateway.reading import DOCUMENT_NS, ReadingPolicy, read_message
from gateway.rules.documents import read_document
from gateway.rules.engine import Parties, evaluate
from gateway.rules.record import Effect, Notice, TradeView
from gateway.rules.substances import Catalogue
from gateway.signature import DEFAULT_POLICY, SignaturePolicy, VerifiedMessage, verify_envelope

CONTENT_TYPE = "application/xml"
PERSISTENT = 2


class Directory(Protocol):
    def is_participant(self, code: str) -> bool: ...


class History(Protocol):
    def find_accepted(self, message_id: str) -> LedgerEntry | None: ...


@dataclass(frozen=True)
class Inbound:
    """One delivery from ``i2es.inbound``: the exact bytes and what the broker says about them."""

    body: bytes
    user_id: str | None
    message_id: str | None
    type: str | None
    content_type: str | None
    delivery_mode: int | None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class Checks:
    """Everything ``examine`` needs, built once at start-up."""

    reading: ReadingPolicy
    trust: TrustStore
    directory: Directory
    history: History
    replay_window: timedelta
    future_skew: timedelta
    trade: TradeView
    catalogue: Catalogue
    signature: SignaturePolicy = DEFAULT_POLICY


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    header: Header | None
    reasons: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    # For a Receipt: the ledger entry of the document it answers, and RECEIVED or REFUSED.
    receipt_for: LedgerEntry | None = None
    receipt_status: str | None = None
    # For a business document: what it changes in the trade record, and the notices the hub sends.
    document: bytes = b""
    effects: tuple[Effect, ...] = ()
    notices: tuple[Notice, ...] = ()
    signer_serial: str | None = None

    @property
    def status(self) -> str:
        return "ACCEPTED" if self.accepted else "REJECTED"

    def ref_to_message_id(self, inbound: Inbound) -> str | None:
        """What the acknowledgement answers: the envelope's MessageId, else the AMQP message_id if a UUID."""
        if self.header is not None and is_uuid(self.header.message_id):
            return self.header.message_id
        return inbound.message_id if is_uuid(inbound.message_id) else None


@dataclass(frozen=True)
class Opened:
    """A message read and its signature checked (``open_message``): the costly, self-contained part of
    ``examine``, which needs neither the ledger nor the trade record."""

    claimed: Header | None  # to address a rejection only
    verified: VerifiedMessage | None
    refusal: Finding | None = None


def examine(inbound: Inbound, checks: Checks, now: datetime) -> Verdict:
    """Run every check of sections 3-5 on one inbound message."""
    return judge(inbound, open_message(inbound, checks, now), checks, now)


def open_message(inbound: Inbound, checks: Checks, now: datetime) -> Opened:
    """Read the message (hardened parse, schema) and verify its signature and its signer's chain."""
    return open_body(inbound.body, checks.reading, checks.trust, now, checks.signature)


def open_body(
    body: bytes, reading: ReadingPolicy, trust: TrustStore, now: datetime, signature: SignaturePolicy = DEFAULT_POLICY
) -> Opened:
    """``open_message`` on the bytes alone: all it needs, so that another process can do it."""
    claimed: Header | None = None
    try:
        root = read_message(body, reading)
        claimed = _claimed_header(root)
        return Opened(claimed, verify_envelope(root, trust, now, signature))
    except GatewayError as error:
        return Opened(claimed, None, Finding(error.code, error.message))


def judge(inbound: Inbound, opened: Opened, checks: Checks, now: datetime) -> Verdict:
    """The checks that read the ledger and the trade record, on an opened message."""
    verified = opened.verified
    if verified is None:
        assert opened.refusal is not None
        return Verdict(accepted=False, header=opened.claimed, reasons=(opened.refusal,))
    try:
        verdict = _check_verified(inbound, verified, checks, now)
    except GatewayError as error:
        return Verdict(accepted=False, header=opened.claimed, reasons=(Finding(error.code, error.message),))
    return replace(
        verdict,
        signer_serial=f"{verified.signer.serial_number:x}",
        warnings=verdict.warnings + _expiry_warning(verified, now),
    )


EXPIRES_SOON = timedelta(days=30)


def _expiry_warning(verified: VerifiedMessage, now: datetime) -> tuple[Finding, ...]:
    not_after = verified.signer.not_valid_after_utc
    if not_after - now > EXPIRES_SOON:
        return ()
    return (
        Finding(
            WarningCode.CERTIFICATE_EXPIRES_SOON,
            f"the signing certificate (serial {verified.signer.serial_number:x}) expires on "
            f"{not_after.date().isoformat()}: renew it (i2es cert renew)",
        ),
    )


def _claimed_header(root: etree._Element) -> Header | None:
    # Only to address a rejection (RefToMessageId, ConversationId): never trusted for anything else.
    try:
        return read_header(root)
    except ValueError:
        return None


def _check_verified(inbound: Inbound, verified: VerifiedMessage, checks: Checks, now: datetime) -> Verdict:
    header = verified.header
    _check_document(verified)
    _check_sender(inbound, verified)
    _check_properties(inbound, header)
    _check_freshness(header, checks, now)
    _check_recipient(header, checks)
    if checks.history.find_accepted(header.message_id) is not None:
        raise DuplicateMessageId(
            f"MessageId {header.message_id} was already accepted with other content; "
            "a new message needs a new MessageId"
        )
    if header.type == "Receipt":
        return _check_receipt(verified, checks)
    return _check_rules(verified, checks, now)


def _check_rules(verified: VerifiedMessage, checks: Checks, now: datetime) -> Verdict:
    element = body_document(verified.signed)
    try:
        document = read_document(element)
    except (ValueError, ArithmeticError) as exc:
        raise SchemaInvalid(f"the {verified.header.type} cannot be read: {exc}") from None
    if document is None:
        return Verdict(accepted=True, header=verified.header)
    parties = Parties(verified.header.sender, verified.header.recipient)
    outcome = evaluate(document, parties, checks.trade, checks.catalogue, now)
    return Verdict(
        accepted=True,
        header=verified.header,
        warnings=outcome.warnings,
        document=etree.tostring(element),
        effects=outcome.effects,
        notices=outcome.notices,
    )


def _check_document(verified: VerifiedMessage) -> None:
    document = body_document(verified.signed)
    name = etree.QName(document)
    if name.namespace != DOCUMENT_NS or name.localname != verified.header.type:
        raise SchemaInvalid(f"Type is {verified.header.type} but the Body holds {name.localname}")


def _check_sender(inbound: Inbound, verified: VerifiedMessage) -> None:
    header = verified.header
    if verified.signer_code != header.sender or inbound.user_id != header.sender:
        raise SenderMismatch(
            f"From is {header.sender!r}, the broker user is {inbound.user_id!r} and the certificate names "
            f"{verified.signer_code!r}: all three must be the same participant"
        )
    if header.type not in BUSINESS_TYPES and header.type != "Receipt":
        raise SenderMismatch(f"only the hub sends {header.type} messages")


def _check_properties(inbound: Inbound, header: Header) -> None:
    problems = []
    if inbound.message_id != header.message_id:
        problems.append(f"message_id is {inbound.message_id!r} but MessageId is {header.message_id!r}")
    if inbound.type != header.type:
        problems.append(f"type is {inbound.type!r} but Type is {header.type!r}")
    if (inbound.content_type or "").split(";")[0].strip().lower() != CONTENT_TYPE:
        problems.append(f"content_type is {inbound.content_type!r}, not {CONTENT_TYPE!r}")
    if inbound.delivery_mode != PERSISTENT:
        problems.append(f"delivery_mode is {inbound.delivery_mode!r}, not 2 (persistent)")
    if problems:
        raise PropertyMismatch("AMQP properties disagree with the envelope: " + "; ".join(problems))


def _check_freshness(header: Header, checks: Checks, now: datetime) -> None:
    age = now - header.created_at
    if age > checks.replay_window:
        raise StaleMessage(
            f"CreatedAt {header.created_at.isoformat()} is older than the hub's replay window "
            f"({checks.replay_window}); send a new message with a new MessageId"
        )
    if -age > checks.future_skew:
        raise StaleMessage(
            f"CreatedAt {header.created_at.isoformat()} is more than {checks.future_skew} in the future; "
            "check the sending system's clock"
        )


def _check_recipient(header: Header, checks: Checks) -> None:
    if header.recipient == HUB or not checks.directory.is_participant(header.recipient):
        raise UnknownRecipient(f"{header.recipient!r} is not a participant registered with the hub")


def _check_receipt(verified: VerifiedMessage, checks: Checks) -> Verdict:
    header = verified.header
    ref = header.ref_to_message_id
    original = checks.history.find_accepted(ref) if ref else None
    if (
        original is None
        or original.routed_at is None
        or original.recipient != header.sender
        or original.sender != header.recipient
        or original.type not in BUSINESS_TYPES
    ):
        raise UnknownReference(
            f"no document {ref} was delivered by {header.recipient} to {header.sender}; "
            "a Receipt's RefToMessageId names the document it answers"
        )
    receipt = body_document(verified.signed)
    status = _child_text(receipt, "Status")
    digest = _child_text(receipt, "ReceivedDigest")
    warnings: tuple[Finding, ...] = ()
    if digest != original.digest:
        warnings = (
            Finding(
                WarningCode.RECEIPT_DIGEST_DIFFERS,
                f"the receipt's digest {digest} differs from the ledger's {original.digest} for message {ref}",
            ),
        )
    return Verdict(accepted=True, header=header, warnings=warnings, receipt_for=original, receipt_status=status)


def _child_text(element: etree._Element, name: str) -> str:
    child = element.find(f"{{{DOCUMENT_NS}}}{name}")
    return "" if child is None or child.text is None else child.text.strip()


def internal_error(error: BaseException) -> Finding:
    """The finding for a fault of the hub itself: the sender may resend."""
    return Finding(
        ReasonCode.INTERNAL_ERROR,
        f"the hub could not process the message ({type(error).__name__}); it is safe to resend it",
    )
