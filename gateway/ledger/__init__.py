"""The hub's ledger: every message taken from the inbound queue, accepted or rejected, in order."""

from gateway.ledger.model import AckMaker, Filing, Finding, Ledger, LedgerEntry, NewEntry, SignedNotice
from gateway.ledger.store import SqliteLedger, SqlLedger, open_ledger

__all__ = [
    "AckMaker",
    "Filing",
    "Finding",
    "Ledger",
    "LedgerEntry",
    "NewEntry",
    "SignedNotice",
    "SqlLedger",
    "SqliteLedger",
    "open_ledger",
]
