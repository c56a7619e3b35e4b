"""The trade record: authorizations on file, endorsements, estimates and the hub's notices.

Written only inside the ledger's transaction (``apply_effects``), so a document's outcome and what it
changes in the trade record are committed together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.errors import GatewayError
from gateway.ledger.db import Database, WithinTransaction
from gateway.ledger.model import SignedNotice
from gateway.reading import parse_xml
from gateway.rules.documents import EXPORT, IMPORT, PRE_EXPORT, Authorization, Reference, read_document
from gateway.rules.record import (
    CancelAuthorization,
    CertificateRef,
    Effect,
    FileAuthorization,
    FileClarification,
    FileEndorsement,
    FileResponse,
    OnFile,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS authorizations (
    type TEXT NOT NULL,
    issuing_country TEXT NOT NULL,
    number TEXT NOT NULL,
    issue_date TEXT NOT NULL,
    valid_until TEXT,
    importer_country TEXT NOT NULL,
    exporter_country TEXT NOT NULL,
    import_ref_country TEXT,
    import_ref_number TEXT,
    counts_against_estimate INTEGER NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    document BLOB NOT NULL,
    response_deadline TEXT,
    cancelled_sequence INTEGER,
    response_sequence INTEGER,
    response_decision TEXT,
    deadline_notice_at TEXT,
    PRIMARY KEY (type, issuing_country, number)
);
CREATE TABLE IF NOT EXISTS authorization_items (
    type TEXT NOT NULL,
    issuing_country TEXT NOT NULL,
    number TEXT NOT NULL,
    line INTEGER NOT NULL,
    inn TEXT NOT NULL,
    salt TEXT,
    regime TEXT NOT NULL,
    quantity TEXT NOT NULL,
    unit TEXT NOT NULL,
    base_grams TEXT NOT NULL,
    PRIMARY KEY (type, issuing_country, number, line)
);
CREATE TABLE IF NOT EXISTS trade_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sequence INTEGER NOT NULL,
    type TEXT NOT NULL,
    issuing_country TEXT NOT NULL,
    number TEXT NOT NULL,
    kind TEXT NOT NULL,
    message_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trade_events_number ON trade_events (number);
CREATE TABLE IF NOT EXISTS endorsed_items (
    issuing_country TEXT NOT NULL,
    number TEXT NOT NULL,
    line INTEGER NOT NULL,
    inn TEXT NOT NULL,
    base_grams TEXT NOT NULL,
    sequence INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS estimates (
    country TEXT NOT NULL,
    inn TEXT NOT NULL,
    year INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('estimate', 'supplementary', 'assessment')),
    grams TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    PRIMARY KEY (country, inn, year, kind)
);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    to_code TEXT NOT NULL,
    kind TEXT NOT NULL,
    about TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS notices_unsent ON notices (id) WHERE sent_at IS NULL;
"""


class TradeRecordDamaged(RuntimeError):
    """The hub's own record cannot be read: a fault of the hub (INTERNAL_ERROR), never of a sender."""


def _key(ref: Reference) -> tuple[str, str, str]:
    return (ref.type, ref.issuing_country, ref.number)


def apply_effects(
    db: Database, sequence: int, message_id: str, sender: str, recipient: str, document: bytes,
    effects: Iterable[Effect],
) -> None:  # fmt: skip
    """Record what an accepted document changes; called inside the ledger's open transaction."""
    for effect in effects:
        if isinstance(effect, FileAuthorization):
            _file(db, effect, sequence, message_id, sender, recipient, document)
        elif isinstance(effect, CancelAuthorization):
            ref = effect.cancellation.ref
            db.execute(
                "UPDATE authorizations SET cancelled_sequence = ? "
                "WHERE type = ? AND issuing_country = ? AND number = ?",
                (sequence, *_key(ref)),
            )
            _event(db, sequence, ref, "CANCELLED", message_id, effect.cancellation.reason)
        elif isinstance(effect, FileEndorsement):
            endorsement = effect.endorsement
            detail = "; ".join(effect.discrepancies) or "quantities as authorized"
            items = ", ".join(f"{i.inn} {i.quantity.amount} {i.quantity.unit}" for i in endorsement.items)
            db.executemany(
                "INSERT INTO endorsed_items (issuing_country, number, line, inn, base_grams, sequence) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (endorsement.export_ref.issuing_country, endorsement.export_ref.number, i.line, i.inn,
                     str(i.anhydrous_base.in_grams()), sequence)
                    for i in endorsement.items
                ],
            )  # fmt: skip
            _event(db, sequence, endorsement.export_ref, "ENDORSED", message_id, f"{items} ({detail})")
        elif isinstance(effect, FileResponse):
            response = effect.response
            db.execute(
                "UPDATE authorizations SET response_sequence = ?, response_decision = ? "
                "WHERE type = ? AND issuing_country = ? AND number = ?",
                (sequence, response.decision, *_key(response.ref)),
            )
            _event(db, sequence, response.ref, response.decision, message_id, response.reason or "")
        elif isinstance(effect, FileClarification):
            clarification = effect.clarification
            _event(db, sequence, clarification.ref, clarification.kind, message_id, clarification.text)


def _file(
    db: Database, effect: FileAuthorization, sequence: int, message_id: str, sender: str, recipient: str,
    document: bytes,
) -> None:  # fmt: skip
    a = effect.authorization
    db.execute(
        "INSERT INTO authorizations (type, issuing_country, number, issue_date, valid_until, importer_country, "
        "exporter_country, import_ref_country, import_ref_number, counts_against_estimate, sender, recipient, "
        "message_id, sequence, document, response_deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            a.type, a.issuing_country, a.number, a.issue_date.isoformat(),
            a.valid_until.isoformat() if a.valid_until else None, a.importer.country, a.exporter.country,
            a.import_ref.issuing_country if a.import_ref else None, a.import_ref.number if a.import_ref else None,
            int(effect.counts_against_estimate), sender, recipient, message_id, sequence, document,
            a.response_deadline.isoformat() if a.response_deadline else None,
        ),
    )  # fmt: skip
    db.executemany(
        "INSERT INTO authorization_items (type, issuing_country, number, line, inn, salt, regime, quantity, unit, "
        "base_grams) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (a.type, a.issuing_country, a.number, i.line, i.inn, i.salt, i.regime, str(i.quantity.amount),
             i.quantity.unit, str(i.anhydrous_base.in_grams()))
            for i in a.items
        ],
    )  # fmt: skip
    if a.type == IMPORT:
        # Exports that named this import authorization before it was on file counted as paper ones; it counts now.
        db.execute(
            "UPDATE authorizations SET counts_against_estimate = 0 "
            "WHERE type = ? AND import_ref_country = ? AND import_ref_number = ?",
            (EXPORT, a.issuing_country, a.number),
        )
    _event(db, sequence, a.reference, "ISSUED", message_id, f"{sender} to {recipient}")
    if a.import_ref is not None:
        _event(db, sequence, a.import_ref, "ANSWERED", message_id, f"by {a.type} {a.number}")


def _event(db: Database, sequence: int, ref: Reference, kind: str, message_id: str | None, detail: str) -> None:
    db.execute(
        "INSERT INTO trade_events (sequence, type, issuing_country, number, kind, message_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (sequence, *_key(ref), kind, message_id, detail),
    )


@dataclass(frozen=True)
class TradeEvent:
    sequence: int
    type: str
    issuing_country: str
    number: str
    kind: str
    message_id: str | None
    detail: str


class TradeRecord:
    """The rules' view of the trade record (``TradeView``), over the ledger's connection."""

    def __init__(self, db: Database, owner: str = "") -> None:
        self._db = db
        self.owner = owner  # the hub that sends the notices it records
        self._estimates: WithinTransaction[tuple[str, str, int], dict[str, str]] = WithinTransaction(db)
        db.create(SCHEMA)
        if "hub" not in db.columns("notices"):
            db.execute("ALTER TABLE notices ADD COLUMN hub TEXT")

    def on_file(self, ref: Reference) -> OnFile | None:
        row = self._db.execute(
            "SELECT document, sender, recipient, message_id, cancelled_sequence FROM authorizations "
            "WHERE type = ? AND issuing_country = ? AND number = ?",
            _key(ref),
        ).fetchone()
        if row is None:
            return None
        try:
            document = read_document(parse_xml(bytes(row[0])))
        except (GatewayError, ValueError, ArithmeticError) as exc:
            # The hub's own copy, not the sender's message, is at fault: it must not read as the sender's error.
            raise TradeRecordDamaged(f"the trade record's copy of {ref} cannot be read: {exc}") from exc
        if not isinstance(document, Authorization):
            raise TradeRecordDamaged(f"the trade record's copy of {ref} is not an authorization")
        return OnFile(document, row[1], row[2], row[3], row[4] is not None)

    def exported_against(self, import_ref: Reference) -> dict[str, Decimal]:
        rows = self._db.execute(
            "SELECT i.inn, i.base_grams FROM authorization_items i JOIN authorizations a "
            "USING (type, issuing_country, number) WHERE a.type = ? AND a.import_ref_country = ? "
            "AND a.import_ref_number = ? AND a.cancelled_sequence IS NULL",
            (EXPORT, import_ref.issuing_country, import_ref.number),
        )
        return _sum_by_inn(rows)

    def counted_against_estimate(self, country: str, inn: str, year: int) -> Decimal:
        rows = self._db.execute(
            "SELECT i.inn, i.base_grams FROM authorization_items i JOIN authorizations a "
            "USING (type, issuing_country, number) WHERE a.importer_country = ? AND i.inn = ? "
            "AND substr(a.issue_date, 1, 4) = ? AND a.counts_against_estimate = 1 AND a.cancelled_sequence IS NULL "
            "AND a.type IN (?, ?)",
            (country, inn, f"{year:04d}", IMPORT, EXPORT),
        )
        return _sum_by_inn(rows).get(inn, Decimal(0))

    def estimate(self, country: str, inn: str, year: int) -> Decimal | None:
        # Read once per batch: the messages of a batch name the same few countries and substances.
        figures = self._estimates.get((country, inn, year), lambda: self._estimate_figures(country, inn, year))
        if "estimate" in figures or "supplementary" in figures:
            # Supplementary estimates add to the annual estimate (1961 Convention, art. 19 (3)).
            return Decimal(figures.get("estimate", "0")) + Decimal(figures.get("supplementary", "0"))
        if "assessment" in figures:
            return Decimal(figures["assessment"])
        return None

    def _estimate_figures(self, country: str, inn: str, year: int) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT kind, grams FROM estimates WHERE country = ? AND inn = ? AND year = ?", (country, inn, year)
        ).fetchall()
        return {str(kind): str(grams) for kind, grams in rows}

    def load_estimate(self, country: str, inn: str, year: int, kind: str, grams: Decimal, now: datetime) -> None:
        self._estimates.forget((country, inn, year))
        self._db.execute(
            "INSERT INTO estimates (country, inn, year, kind, grams, loaded_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (country, inn, year, kind) "
            "DO UPDATE SET grams = excluded.grams, loaded_at = excluded.loaded_at",
            (country, inn, year, kind, str(grams), now.isoformat()),
        )

    def estimates(self, country: str, year: int | None = None) -> list[tuple[str, int, str, Decimal]]:
        query = "SELECT inn, year, kind, grams FROM estimates WHERE country = ?"
        args: tuple[object, ...] = (country,)
        if year is not None:
            query += " AND year = ?"
            args = (country, year)
        rows = self._db.execute(query + " ORDER BY year, inn, kind", args).fetchall()
        return [(r[0], int(r[1]), r[2], Decimal(r[3])) for r in rows]

    def events(self, number: str) -> list[TradeEvent]:
        """Everything that happened to an authorization and to those that answer it, in ledger order."""
        numbers = {number}
        for row in self._db.execute(
            "SELECT number FROM authorizations WHERE import_ref_number = ?", (number,)
        ).fetchall():
            numbers.add(row[0])
        marks = ",".join("?" * len(numbers))
        rows = self._db.execute(
            f"SELECT sequence, type, issuing_country, number, kind, message_id, detail FROM trade_events "  # noqa: S608
            f"WHERE number IN ({marks}) ORDER BY {self._db.insertion_order}",
            tuple(numbers),
        ).fetchall()
        return [TradeEvent(*r) for r in rows]

    def overdue_pre_export(self, now: datetime) -> list[OnFile]:
        """Pre-export notifications past their deadline with no response and no notice sent yet."""
        rows = self._db.execute(
            "SELECT type, issuing_country, number FROM authorizations WHERE type = ? AND response_sequence IS NULL "
            "AND cancelled_sequence IS NULL AND deadline_notice_at IS NULL AND response_deadline IS NOT NULL",
            (PRE_EXPORT,),
        ).fetchall()
        overdue = []
        for row in rows:
            # on_file looks up by type, issuing country and number; the issue date plays no part.
            found = self.on_file(Reference(row[0], row[2], row[1], datetime.min.date()))
            if found and found.authorization.response_deadline and found.authorization.response_deadline < now:
                overdue.append(found)
        return overdue

    def mark_deadline_notice(self, ref: Reference, now: datetime) -> bool:
        """Mark the notification as noticed; False if it already was (by another hub, a moment ago)."""
        cursor = self._db.execute(
            "UPDATE authorizations SET deadline_notice_at = ? WHERE type = ? AND issuing_country = ? AND number = ? "
            "AND deadline_notice_at IS NULL",
            (now.isoformat(), *_key(ref)),
        )
        return cursor.rowcount != 0

    def record_notice(
        self,
        sequence: int,
        message_id: str,
        to: str,
        kind: str,
        about: Reference | CertificateRef | None,
        body: bytes,
        now: datetime,
    ) -> None:
        """Keep a signed Notice before it is sent; ``sequence`` is the ledger entry that caused it."""
        self._db.execute(
            "INSERT INTO notices (message_id, to_code, kind, about, body, created_at, hub) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message_id, to, kind, "" if about is None else str(about), body, now.isoformat(), self.owner),
        )
        if isinstance(about, Reference):
            _event(self._db, sequence, about, f"NOTICE {kind}", message_id, f"to {to}")

    def record_hub_notice(self, notice: SignedNotice, now: datetime) -> None:
        """Keep a notice the hub sends on its own (a deadline passed, a certificate expiring) until it is sent;
        for a deadline, mark the notification as noticed in the same transaction."""
        with self._db.transaction():
            deadline = notice.kind == "PRE_EXPORT_DEADLINE_PASSED" and isinstance(notice.about, Reference)
            if deadline and not self.mark_deadline_notice(notice.about, now):  # type: ignore[arg-type]
                return  # another hub sent this one
            self.record_notice(0, notice.message_id, notice.to, notice.kind, notice.about, notice.body, now)

    def mark_notice_sent(self, message_id: str, now: datetime) -> None:
        with self._db.transaction(durable=False):
            self._db.execute("UPDATE notices SET sent_at = ? WHERE message_id = ?", (now.isoformat(), message_id))

    def unsent_notices(self) -> list[tuple[str, str, bytes]]:
        """The notices this hub recorded (or adopted) and has not sent, oldest first."""
        rows = self._db.execute(
            "SELECT message_id, to_code, body FROM notices WHERE sent_at IS NULL AND hub = ? ORDER BY id", (self.owner,)
        )
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    def yearly_totals(self, year: int, country: str | None = None, inn: str | None = None) -> list[Totals]:
        """Authorized imports, exports and quantities received per importing country and substance in ``year``."""
        db = self._db
        prefix = f"{year:04d}"

        def grouped(query: str, args: tuple[object, ...]) -> dict[tuple[str, str], Decimal]:
            totals: dict[tuple[str, str], Decimal] = {}
            for c, i, grams in db.execute(query, args).fetchall():
                totals[(c, i)] = totals.get((c, i), Decimal(0)) + Decimal(grams)
            return totals

        items = (
            "SELECT a.importer_country, i.inn, i.base_grams FROM authorization_items i JOIN authorizations a "
            "USING (type, issuing_country, number) WHERE a.type = ? AND substr(a.issue_date, 1, 4) = ? "
            "AND a.cancelled_sequence IS NULL"
        )
        authorized = grouped(items, (IMPORT, prefix))
        exported = grouped(items, (EXPORT, prefix))
        received = grouped(
            "SELECT a.importer_country, e.inn, e.base_grams FROM endorsed_items e JOIN authorizations a "
            "ON a.type = 'ExportAuthorization' AND a.issuing_country = e.issuing_country AND a.number = e.number "
            "WHERE substr(a.issue_date, 1, 4) = ?",
            (prefix,),
        )
        keys = sorted(set(authorized) | set(exported) | set(received))
        return [
            Totals(
                country=c,
                inn=i,
                authorized=authorized.get((c, i), Decimal(0)),
                exported=exported.get((c, i), Decimal(0)),
                received=received.get((c, i), Decimal(0)),
                estimate=self.estimate(c, i, year),
                counted=self.counted_against_estimate(c, i, year),
            )
            for c, i in keys
            if (country is None or c == country) and (inn is None or i == inn)
        ]


@dataclass(frozen=True)
class Totals:
    """One line of the yearly report: grams of anhydrous base for one importing country and substance."""

    country: str
    inn: str
    authorized: Decimal
    exported: Decimal
    received: Decimal
    estimate: Decimal | None
    counted: Decimal

    @property
    def estimate_used_percent(self) -> Decimal | None:
        if not self.estimate:
            return None
        return (self.counted * 100 / self.estimate).quantize(Decimal("0.1"))


def _sum_by_inn(rows: Iterable[Sequence[object]]) -> dict[str, Decimal]:
    # Summed as Decimal in Python: SQLite's SUM would go through floating point.
    totals: dict[str, Decimal] = {}
    for inn, grams in rows:
        totals[str(inn)] = totals.get(str(inn), Decimal(0)) + Decimal(str(grams))
    return totals
