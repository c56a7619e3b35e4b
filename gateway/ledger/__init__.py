"""The hub's ledger: every message taken from the inbound queue, accepted or rejected, in order."""

from gateway.ledger.model import AckMaker, Finding, Ledger, LedgerEntry, NewEntry
from gateway.ledger.sqlite import SqliteLedger

__all__ = ["AckMaker", "Finding", "Ledger", "LedgerEntry", "NewEntry", "SqliteLedger"]
