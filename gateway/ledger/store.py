"""The ledger: an append-only, hash-chained log of outcomes, in SQLite (embedded) or PostgreSQL (shared).

SQLite, one file in WAL mode, is the default: the hub and the CLI side by side on one machine. PostgreSQL,
chosen by ``I2ES_LEDGER_URL=postgresql://...``, lets several hub processes, on one machine or many, share one
ledger. Both run the same SQL (``gateway.ledger.db``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.ledger.chain import GENESIS, ChainedEntry, ChainReport, entry_hash, verify_chain
from gateway.ledger.db import REWIND_AFTER_FRAMES, Database, SqliteDatabase, WithinTransaction, open_database
from gateway.ledger.model import NO_FILING, AckMaker, Filing, Finding, LedgerEntry, NewEntry
from gateway.ledger.peers import Peers
from gateway.ledger.trade import TradeRecord, apply_effects

if TYPE_CHECKING:
    from gateway.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT,
    broker_user TEXT NOT NULL,
    sender TEXT,
    recipient TEXT,
    type TEXT,
    conversation_id TEXT,
    ref_to_message_id TEXT,
    digest TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ACCEPTED', 'REJECTED')),
    reasons TEXT NOT NULL,
    warnings TEXT NOT NULL,
    received_at TEXT NOT NULL,
    ack_id TEXT NOT NULL,
    routed_at TEXT,
    delivery_status TEXT,
    delivery_status_at TEXT,
    signer_serial TEXT,
    flag TEXT,
    entry_hash TEXT
);
-- The signed bytes of each entry, written once: the message as received and the acknowledgement as sent. Apart
-- from the row the marks change (routed, delivery status, flag), so that changing one rewrites a small row.
CREATE TABLE IF NOT EXISTS message_bytes (
    sequence INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    ack BLOB NOT NULL
);
-- A MessageId is accepted once, ever: the contract's key for at-least-once delivery.
CREATE UNIQUE INDEX IF NOT EXISTS messages_accepted_id ON messages (message_id) WHERE status = 'ACCEPTED';
CREATE INDEX IF NOT EXISTS messages_digest ON messages (digest);
-- What is still to be routed: read by the message path and the scheduler, and small whatever the ledger's size.
CREATE INDEX IF NOT EXISTS messages_unrouted ON messages (sequence)
    WHERE status = 'ACCEPTED' AND recipient IS NOT NULL AND routed_at IS NULL;
"""

# Columns added after the first release of the schema, for ledgers created before them.
ADDED_COLUMNS = {"signer_serial": "TEXT", "flag": "TEXT", "entry_hash": "TEXT", "hub": "TEXT"}


def _chained_fields(entry: NewEntry, ack: bytes) -> dict[str, object]:
    return {
        "message_id": entry.message_id,
        "broker_user": entry.broker_user,
        "sender": entry.sender,
        "recipient": entry.recipient,
        "type": entry.type,
        "conversation_id": entry.conversation_id,
        "ref_to_message_id": entry.ref_to_message_id,
        "digest": entry.digest,
        "body_sha256": hashlib.sha256(entry.body).hexdigest(),
        "status": entry.status,
        "reasons": _findings(entry.reasons),
        "warnings": _findings(entry.warnings),
        "received_at": entry.received_at.isoformat(),
        "signer_serial": entry.signer_serial,
        "ack_sha256": hashlib.sha256(ack).hexdigest(),
    }


def _findings(items: tuple[Finding, ...]) -> str:
    return json.dumps([{"code": f.code, "text": f.text} for f in items], ensure_ascii=False)


def _parse_findings(text: str) -> tuple[Finding, ...]:
    return tuple(Finding(code=i["code"], text=i["text"]) for i in json.loads(text))


# Which of a batch's MessageIds and digests are on file as accepted: two searches of their indexes (an OR of the
# two lists would scan the whole ledger).
_ON_FILE = (
    "SELECT 'id', message_id FROM messages WHERE status = 'ACCEPTED' AND message_id IN ({ids}) "
    "UNION ALL SELECT 'digest', digest FROM messages WHERE status = 'ACCEPTED' AND digest IN ({digests})"
)


def _marks(values: Sequence[object]) -> str:
    """The placeholders of an ``IN (...)`` list; ``NULL`` for none (which matches nothing)."""
    return ", ".join("?" * len(values)) or "NULL"


def _blob(value: object) -> bytes:
    # A hand-edited row may hold text where bytes were written, or be gone: read it as such, for the chain to judge.
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[call-overload]


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_COLUMNS = (
    "sequence, message_id, broker_user, sender, recipient, type, conversation_id, ref_to_message_id, "
    "digest, body, status, reasons, warnings, received_at, ack_id, ack, routed_at, delivery_status, "
    "delivery_status_at, signer_serial, flag, hub"
)
# An entry whose bytes were removed is still read (with none), for the chain to report it.
_ENTRIES = "messages LEFT JOIN message_bytes USING (sequence)"


def _entry(row: Sequence[object]) -> LedgerEntry:
    (seq, mid, user, sender, recipient, type_, conv, ref, digest, body, status, reasons, warnings,
     received, ack_id, ack, routed, dstatus, dstatus_at, signer, flag, hub) = row  # fmt: skip
    return LedgerEntry(
        sequence=int(str(seq)),
        message_id=mid,  # type: ignore[arg-type]
        broker_user=str(user),
        sender=sender,  # type: ignore[arg-type]
        recipient=recipient,  # type: ignore[arg-type]
        type=type_,  # type: ignore[arg-type]
        conversation_id=conv,  # type: ignore[arg-type]
        ref_to_message_id=ref,  # type: ignore[arg-type]
        digest=str(digest),
        body=_blob(body),
        status=str(status),
        reasons=_parse_findings(str(reasons)),
        warnings=_parse_findings(str(warnings)),
        received_at=datetime.fromisoformat(str(received)),
        ack_id=str(ack_id),
        ack=_blob(ack),
        routed_at=_instant(routed),  # type: ignore[arg-type]
        delivery_status=dstatus,  # type: ignore[arg-type]
        delivery_status_at=_instant(dstatus_at),  # type: ignore[arg-type]
        signer_serial=signer,  # type: ignore[arg-type]
        flag=flag,  # type: ignore[arg-type]
        owner=hub,  # type: ignore[arg-type]
    )


class SqlLedger:
    """The ledger in a database. ``append`` commits before it returns, unless inside ``group()``.

    ``owner`` names the hub process writing: it owns the documents it records until they are routed (and the
    notices until they are sent); ``unrouted(mine=True)`` are those.
    """

    def __init__(self, db: Database, owner: str = "") -> None:
        self._db = db
        self.owner = owner
        db.create(SCHEMA)
        present = db.columns("messages")
        for column, kind in ADDED_COLUMNS.items():
            if column not in present:
                db.execute(f"ALTER TABLE messages ADD COLUMN {column} {kind}")
        if "body" in present:
            _move_bytes_out(db)
        self._trade = TradeRecord(db, owner)
        self._peers = Peers(db)
        # The last sequence and entry hash this process appended, and in which transaction: the next append in the
        # same transaction (a batch) chains to it without asking the database again.
        self._tail: tuple[int, int, str] | None = None
        # MessageIds and digests that this transaction found not accepted (``expect``).
        self._not_on_file: WithinTransaction[tuple[str, str], bool] = WithinTransaction(db)

    @property
    def peers(self) -> Peers:
        """The hub processes sharing this ledger."""
        return self._peers

    @property
    def database(self) -> Database:
        return self._db

    @property
    def trade(self) -> TradeRecord:
        """The trade record, on this ledger's connection (so it shares its transactions)."""
        return self._trade

    def group(self, sync_later: bool = False) -> AbstractContextManager[None]:
        """One transaction for several writes: what is appended inside commits once, at the end, or not at all.
        With ``sync_later`` (SQLite), the commit does not wait for the disk; ``sync()`` does, off the event loop."""
        return self._db.transaction(durable=not (sync_later and self._db.syncs_apart))

    async def sync(self, others: bool = False) -> None:
        await self._db.sync(others)

    def writer_turn(self, durable: bool = True) -> AbstractAsyncContextManager[None]:
        return self._db.turn(durable)

    def append(self, entry: NewEntry, make_ack: AckMaker, filing: Filing = NO_FILING) -> LedgerEntry:
        db = self._db
        with db.transaction():
            # Under the write lock: the next number and the hash it chains to are this process's alone.
            previous, previous_hash = self._last_entry()
            sequence = previous + 1
            ack_id, ack = make_ack(sequence)
            chained = entry_hash(previous_hash, sequence, _chained_fields(entry, ack))
            db.execute(
                "INSERT INTO messages (sequence, message_id, broker_user, sender, recipient, type, conversation_id, "
                "ref_to_message_id, digest, status, reasons, warnings, received_at, signer_serial, ack_id, "
                "entry_hash, hub) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sequence,
                    entry.message_id,
                    entry.broker_user,
                    entry.sender,
                    entry.recipient,
                    entry.type,
                    entry.conversation_id,
                    entry.ref_to_message_id,
                    entry.digest,
                    entry.status,
                    _findings(entry.reasons),
                    _findings(entry.warnings),
                    entry.received_at.isoformat(),
                    entry.signer_serial,
                    ack_id,
                    chained,
                    self.owner,
                ),
            )
            db.execute("INSERT INTO message_bytes (sequence, body, ack) VALUES (?, ?, ?)", (sequence, entry.body, ack))
            apply_effects(
                db, sequence, entry.message_id or "", entry.sender or "", entry.recipient or "", filing.document,
                filing.effects,
            )  # fmt: skip
            for notice in filing.notices:
                self._trade.record_notice(
                    sequence, notice.message_id, notice.to, notice.kind, notice.about, notice.body, entry.received_at
                )
            self._tail = (db.transaction_number, sequence, chained)
            if entry.status == "ACCEPTED":
                self._not_on_file.forget(("id", entry.message_id or ""))
                self._not_on_file.forget(("digest", entry.digest))
        return LedgerEntry(
            **{**entry.__dict__},
            sequence=sequence,
            ack_id=ack_id,
            ack=ack,
            routed_at=None,
            delivery_status=None,
            delivery_status_at=None,
            flag=None,
            owner=self.owner,
        )

    def _last_entry(self) -> tuple[int, str]:
        """The ledger's last sequence and entry hash (0 and the genesis hash when empty); inside the write lock."""
        tail = self._tail
        if tail is not None and tail[0] == self._db.transaction_number:
            return tail[1], tail[2]
        last = self._db.execute("SELECT sequence, entry_hash FROM messages ORDER BY sequence DESC LIMIT 1").fetchone()
        return (int(last[0]), last[1] or GENESIS) if last else (0, GENESIS)

    def _one(self, where: str, args: tuple[object, ...]) -> LedgerEntry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM {_ENTRIES} WHERE {where}", args).fetchone()  # noqa: S608
        return None if row is None else _entry(row)

    def expect(self, message_ids: Collection[str], digests: Collection[str]) -> None:
        """Before a batch is judged, inside its transaction: ask once which of these MessageIds and digests the
        ledger holds as accepted. Until the transaction ends, ``find_accepted`` and ``find_accepted_by_digest``
        answer the others without a query: not on file, unless this transaction accepts them (then they ask)."""
        if not self._db.in_transaction or not (message_ids or digests):
            return
        ids, sums = sorted(set(message_ids)), sorted(set(digests))
        rows = self._db.execute(_ON_FILE.format(ids=_marks(ids), digests=_marks(sums)), (*ids, *sums)).fetchall()
        on_file = {(str(kind), str(value)) for kind, value in rows}
        for key in [("id", m) for m in ids] + [("digest", d) for d in sums]:
            if key not in on_file:
                self._not_on_file.put(key, True)

    def find_accepted(self, message_id: str) -> LedgerEntry | None:
        if self._not_on_file.holds(("id", message_id)):
            return None
        return self._one("message_id = ? AND status = 'ACCEPTED'", (message_id,))

    def find_accepted_by_digest(self, digest: str, broker_user: str) -> LedgerEntry | None:
        if self._not_on_file.holds(("digest", digest)):
            return None
        return self._one("digest = ? AND broker_user = ? AND status = 'ACCEPTED'", (digest, broker_user))

    def get(self, sequence: int) -> LedgerEntry | None:
        return self._one("sequence = ?", (sequence,))

    def mark_routed(self, sequence: int, at: datetime) -> None:
        self.mark_routed_many((sequence,), at)

    def mark_routed_many(self, sequences: Sequence[int], at: datetime) -> None:
        """The broker confirmed these deliveries: one write for all of them."""
        if not sequences:
            return
        with self._db.transaction(durable=False):
            self._db.executemany(
                "UPDATE messages SET routed_at = ? WHERE sequence = ? AND routed_at IS NULL",
                [(at.isoformat(), sequence) for sequence in sequences],
            )

    def unrouted(self, limit: int = 1000, mine: bool = False) -> Sequence[LedgerEntry]:
        """Accepted documents not yet confirmed delivered, oldest first; with ``mine``, only this owner's."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM {_ENTRIES} WHERE status = 'ACCEPTED' AND recipient IS NOT NULL "  # noqa: S608
            f"AND routed_at IS NULL {'AND hub = ? ' if mine else ''}ORDER BY sequence LIMIT ?",
            (self.owner, limit) if mine else (limit,),
        ).fetchall()
        return [_entry(r) for r in rows]

    def record_delivery_status(self, sequence: int, status: str, at: datetime) -> None:
        with self._db.transaction():
            self._db.execute(
                "UPDATE messages SET delivery_status = ?, delivery_status_at = ? WHERE sequence = ?",
                (status, at.isoformat(), sequence),
            )

    def chain(self, first: int = 1, last: int | None = None) -> Iterator[ChainedEntry]:
        """The entries as the hash chain sees them, recomputing the digests of the stored bytes."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS}, entry_hash FROM {_ENTRIES} WHERE sequence >= ? AND sequence <= ? "  # noqa: S608
            "ORDER BY sequence",
            (first, last if last is not None else 2**62),
        )
        for row in rows:
            entry = _entry(row[:-1])
            yield ChainedEntry(entry.sequence, row[-1] or "", _chained_fields(entry, entry.ack))

    def hash_before(self, sequence: int) -> str:
        row = self._db.execute(
            "SELECT entry_hash FROM messages WHERE sequence < ? ORDER BY sequence DESC LIMIT 1", (sequence,)
        ).fetchone()
        return str(row[0]) if row and row[0] else GENESIS

    def verify(self) -> ChainReport:
        """Check the whole hash chain from the first entry."""
        return verify_chain(self.chain())

    def flag_signed_by(self, serial: str, flag: str) -> int:
        """Flag every message signed with the certificate ``serial``; returns how many."""
        with self._db.transaction():
            cursor = self._db.execute("UPDATE messages SET flag = ? WHERE signer_serial = ?", (flag, serial))
            return cursor.rowcount

    def entries(self, limit: int = 100, after: int = 0) -> Sequence[LedgerEntry]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM {_ENTRIES} WHERE sequence > ? ORDER BY sequence LIMIT ?",  # noqa: S608
            (after, limit),
        ).fetchall()
        return [_entry(r) for r in rows]

    def checkpoint_in_background(
        self, every_seconds: float = 0.5, rewind_after_frames: int = REWIND_AFTER_FRAMES
    ) -> None:
        """The hub's service writes for hours: the database's housekeeping runs beside it (SQLite's checkpoints)."""
        self._db.checkpoint_in_background(every_seconds, rewind_after_frames)

    def close(self) -> None:
        self._db.close()


def _move_bytes_out(db: Database) -> None:
    """A ledger written before ``message_bytes``: its bodies and acknowledgements move there, once, in one write."""
    with db.transaction():
        if "body" not in db.columns("messages"):  # another process moved them while this one waited
            return
        db.execute("INSERT INTO message_bytes (sequence, body, ack) SELECT sequence, body, ack FROM messages")
        db.execute("ALTER TABLE messages DROP COLUMN body")
        db.execute("ALTER TABLE messages DROP COLUMN ack")


class SqliteLedger(SqlLedger):
    """The embedded ledger: one SQLite file in WAL mode, safe for the hub and the CLI side by side."""

    def __init__(self, path: Path, busy_seconds: float = 30.0, owner: str = "") -> None:
        self.path = path
        super().__init__(SqliteDatabase(path, busy_seconds), owner)


def open_ledger(url: str, default_path: Path, busy_seconds: float = 30.0, owner: str = "") -> SqlLedger:
    """The ledger ``I2ES_LEDGER_URL`` names (``postgresql://...`` or ``sqlite:///path``); empty: the home's file."""
    return SqlLedger(open_database(url, default_path, busy_seconds), owner)


def ledger_for(settings: Settings) -> SqlLedger:
    """The hub's ledger as the settings name it; the SQLite file must exist (``i2es init`` creates it)."""
    if not settings.ledger_url.startswith(("postgresql://", "postgres://")) and not settings.ledger_path.exists():
        raise LedgerMissing(f"no ledger at {settings.ledger_path}: run `i2es init` first")
    return open_ledger(settings.ledger_url, settings.ledger_path, settings.ledger_busy_seconds, settings.hub_id)


class LedgerMissing(RuntimeError):
    """The embedded ledger's file is not there: the hub was not set up."""
