"""The SQLite connection every part of the hub opens, and how a write fails."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.ledger.model import LedgerUnavailable


def connect(path: Path, busy_seconds: float = 30.0) -> sqlite3.Connection:
    """Open (and create) a SQLite database the way every part of the hub does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, timeout=busy_seconds, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed outcome survives a power cut, since its acknowledgement has left the hub.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


@contextmanager
def writing(db: sqlite3.Connection) -> Iterator[None]:
    """One write, rolled back whole if it fails; a full disk, a lock held too long or an I/O error is the
    ledger being unavailable, which the hub waits out, not the message's fault."""
    try:
        yield
    except BaseException as error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(error, sqlite3.OperationalError):
            raise LedgerUnavailable(f"the ledger cannot be written: {error}") from error
        raise
