"""What the rules may ask of the hub's trade record, and what they ask it to remember."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from gateway.rules.documents import (
    Authorization,
    Cancellation,
    Clarification,
    Endorsement,
    PreExportResponse,
    Reference,
)


@dataclass(frozen=True)
class OnFile:
    """An authorization the hub accepted, with the parties that exchanged it."""

    authorization: Authorization
    sender: str
    recipient: str
    message_id: str
    cancelled: bool


class TradeView(Protocol):
    """Read-only questions the rules ask; answered from the hub's database, never from the broker."""

    def on_file(self, ref: Reference) -> OnFile | None:
        """The authorization with this type, issuing country and number, if the hub has it."""
        ...

    def exported_against(self, import_ref: Reference) -> dict[str, Decimal]:
        """Grams of anhydrous base per substance in the active export authorizations naming an import one."""
        ...

    def counted_against_estimate(self, country: str, inn: str, year: int) -> Decimal:
        """Grams of anhydrous base already authorized for import into ``country`` in ``year``."""
        ...

    def estimate(self, country: str, inn: str, year: int) -> Decimal | None:
        """The confirmed estimate or assessment, in grams of anhydrous base; None when none is loaded."""
        ...


@dataclass(frozen=True)
class CertificateRef:
    """What a certificate notice is about: the certificate's serial (hexadecimal) and end of validity."""

    serial: str
    not_after: datetime

    def __str__(self) -> str:
        return f"certificate {self.serial} (valid until {self.not_after.isoformat()})"


@dataclass(frozen=True)
class Notice:
    """A Notice the hub sends on its own (section 6)."""

    to: str
    kind: str
    about: Reference | CertificateRef | None  # None: the message named in RefToMessageId
    text: str
    details: str | None = None


# What an accepted document changes in the trade record; applied in the ledger's transaction.
@dataclass(frozen=True)
class FileAuthorization:
    authorization: Authorization
    counts_against_estimate: bool


@dataclass(frozen=True)
class CancelAuthorization:
    cancellation: Cancellation


@dataclass(frozen=True)
class FileEndorsement:
    endorsement: Endorsement
    discrepancies: tuple[str, ...]


@dataclass(frozen=True)
class FileResponse:
    response: PreExportResponse


@dataclass(frozen=True)
class FileClarification:
    clarification: Clarification


Effect = FileAuthorization | CancelAuthorization | FileEndorsement | FileResponse | FileClarification
