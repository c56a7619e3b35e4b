"""A hub on a real ledger and registry (SQLite, no broker) whose outbox keeps what it would publish, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.hub import Hub
from gateway.ledger.model import LedgerEntry
from gateway.ledger.store import SqliteLedger
from gateway.pipeline import Checks, Inbound
from gateway.registry import Registry
from tests.support.pki import Pki, header_of

NOW = datetime.now(UTC)  # the clock of the kept hubs and of what their tests write to the ledger


@dataclass
class KeptOutbox:
    """What the hub would publish, kept in order; ``events`` interleaves both kinds with anything else a test
    appends to the same list."""

    delivered: list[str] = field(default_factory=list)  # MessageIds
    acknowledged: list[bytes] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    async def deliver(self, recipient: str, entry: LedgerEntry) -> None:
        self.delivered.append(entry.message_id or "")
        self.events.append("deliver")

    async def acknowledge(self, participant: str, entry: LedgerEntry, correlation_id: str | None) -> None:
        self.acknowledged.append(entry.ack)
        self.events.append("acknowledge")

    async def dead_letter(self, inbound: Inbound, reason: str) -> None:
        raise AssertionError(reason)

    async def notify(self, participant: str, message_id: str, body: bytes) -> None:
        pass


def kept_hub(pki: Pki, checks: Checks, now: datetime, outbox: KeptOutbox | None = None) -> Hub:
    """The hub as the service builds it, on ``checks``' ledger and registry, signing as ``pki``'s HUB."""
    assert isinstance(checks.history, SqliteLedger) and isinstance(checks.directory, Registry)
    return Hub(
        checks=checks,
        ledger=checks.history,
        directory=checks.directory,
        signer=pki.signers["HUB"],
        outbox=outbox or KeptOutbox(),
        clock=lambda: now,
        trade=checks.history.trade,
        certificates=checks.directory,
    )


def inbound_from(participant: str, data: bytes) -> Inbound:
    """``data`` as the hub takes it from ``participant``'s inbound queue, with the contract's properties."""
    header = header_of(data)
    return Inbound(data, participant, header.message_id, header.type, "application/xml", 2)


def from_de(data: bytes) -> Inbound:
    return inbound_from("DE", data)
