"""What the ledger stores and the narrow interface the hub uses to reach it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from gateway.rules.documents import Reference
from gateway.rules.record import CertificateRef, Effect


class LedgerUnavailable(Exception):
    """The ledger cannot be written (disk full, locked, gone): the hub waits, takes nothing, and tries again."""


@dataclass(frozen=True)
class Finding:
    """A reason or warning: a contract code and a sentence."""

    code: str
    text: str


@dataclass(frozen=True)
class NewEntry:
    """One outcome, before the ledger gives it a sequence number."""

    message_id: str | None
    broker_user: str
    sender: str | None
    recipient: str | None
    type: str | None
    conversation_id: str | None
    ref_to_message_id: str | None
    digest: str
    body: bytes
    status: str
    reasons: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    received_at: datetime
    signer_serial: str | None  # the verified signer's certificate, hexadecimal


@dataclass(frozen=True)
class LedgerEntry(NewEntry):
    sequence: int
    ack_id: str
    ack: bytes
    routed_at: datetime | None
    delivery_status: str | None
    delivery_status_at: datetime | None
    flag: str | None  # KEY_COMPROMISE once the signer's key is reported compromised
    owner: str | None = None  # the hub that routes it (until it is routed)


@dataclass(frozen=True)
class SignedNotice:
    """A Notice the hub has signed, kept with the outcome that caused it and sent after the commit."""

    message_id: str
    to: str
    kind: str
    about: Reference | CertificateRef | None
    body: bytes


@dataclass(frozen=True)
class Filing:
    """What an accepted document changes in the trade record, committed with its ledger entry."""

    document: bytes = b""
    effects: tuple[Effect, ...] = ()
    notices: tuple[SignedNotice, ...] = ()


NO_FILING = Filing()

# Given the sequence number the ledger assigns, returns the acknowledgement's id and signed bytes.
AckMaker = Callable[[int], tuple[str, bytes]]


if TYPE_CHECKING:
    from gateway.ledger.peers import Peers


class Ledger(Protocol):
    """Append-only log of outcomes. ``append`` commits before it returns, unless inside ``group()``."""

    def group(self, sync_later: bool = False) -> AbstractContextManager[None]:
        """One transaction for several writes. With ``sync_later``, where the engine allows it, the commit does not
        wait for the disk: the caller then awaits ``sync()`` before anything it wrote leaves the hub."""
        ...

    async def sync(self, others: bool = False) -> None:
        """Wait, without stopping the event loop, until what this process committed is on the disk; with
        ``others``, what every process sharing the ledger committed too."""
        ...

    def writer_turn(self, durable: bool = True) -> AbstractAsyncContextManager[None]:
        """Wait, without stopping the event loop, until this process may write; the writes inside (which must not
        await) then begin at once."""
        ...

    def append(self, entry: NewEntry, make_ack: AckMaker, filing: Filing = NO_FILING) -> LedgerEntry: ...

    def find_accepted(self, message_id: str) -> LedgerEntry | None: ...

    def expect(self, message_ids: Collection[str], digests: Collection[str]) -> None: ...

    def get(self, sequence: int) -> LedgerEntry | None: ...

    def find_accepted_by_digest(self, digest: str, broker_user: str) -> LedgerEntry | None: ...

    def mark_routed(self, sequence: int, at: datetime) -> None: ...

    def mark_routed_many(self, sequences: Sequence[int], at: datetime) -> None: ...

    def unrouted(self, limit: int = 1000, mine: bool = False) -> Sequence[LedgerEntry]: ...

    @property
    def owner(self) -> str: ...

    @property
    def peers(self) -> Peers: ...

    def record_delivery_status(self, sequence: int, status: str, at: datetime) -> None: ...

    def flag_signed_by(self, serial: str, flag: str) -> int: ...

    def entries(self, limit: int = 100, after: int = 0) -> Sequence[LedgerEntry]: ...

    def close(self) -> None: ...
