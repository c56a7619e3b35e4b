"""Who the hub knows: participants, the certificates issued to them, and revocations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certs.keys import common_name
from gateway.ledger.db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    contact TEXT,
    registered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    profile TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    pem TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_at TEXT,
    revocation_reason TEXT
);
CREATE INDEX IF NOT EXISTS certificates_code ON certificates (code);
CREATE TABLE IF NOT EXISTS ca_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    serial TEXT,
    code TEXT,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS expiry_notices (
    serial TEXT NOT NULL,
    days INTEGER NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (serial, days)
);
"""

# RFC 5280 reason names, as security teams write them (openssl ca -crl_reason uses the same words).
REVOCATION_REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
)


@dataclass(frozen=True)
class Participant:
    code: str
    name: str
    contact: str | None
    registered_at: datetime


@dataclass(frozen=True)
class CertificateRecord:
    serial: str
    code: str
    profile: str
    subject: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    revoked_at: datetime | None
    revocation_reason: str | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return f"revoked ({self.revocation_reason})"
        if now > self.not_after:
            return "expired"
        if now < self.not_before:
            return "not yet valid"
        return "valid"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    serial: str | None
    code: str | None
    detail: str


def serial_hex(serial: int) -> str:
    return f"{serial:x}"


class Registry:
    """Participants and certificates in the hub's SQLite file; also the hub's revocation list."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._db.executescript(SCHEMA)

    def add_participant(self, code: str, name: str, contact: str | None, now: datetime) -> Participant:
        self._db.execute(
            "INSERT INTO participants (code, name, contact, registered_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (code) DO UPDATE SET name = excluded.name, contact = excluded.contact",
            (code, name, contact, now.isoformat()),
        )
        participant = self.participant(code)
        assert participant is not None
        return participant

    def participant(self, code: str) -> Participant | None:
        row = self._db.execute(
            "SELECT code, name, contact, registered_at FROM participants WHERE code = ?", (code,)
        ).fetchone()
        if row is None:
            return None
        return Participant(row[0], row[1], row[2], datetime.fromisoformat(row[3]))

    def participants(self) -> list[Participant]:
        rows = self._db.execute("SELECT code, name, contact, registered_at FROM participants ORDER BY code")
        return [Participant(r[0], r[1], r[2], datetime.fromisoformat(r[3])) for r in rows]

    def is_participant(self, code: str) -> bool:
        return self._db.execute("SELECT 1 FROM participants WHERE code = ?", (code,)).fetchone() is not None

    def record_certificate(self, certificate: x509.Certificate, profile: str, now: datetime) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO certificates (serial, code, profile, subject, not_before, not_after, "
            "fingerprint, pem, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                serial_hex(certificate.serial_number),
                common_name(certificate.subject) or "",
                profile,
                certificate.subject.rfc4514_string(),
                certificate.not_valid_before_utc.isoformat(),
                certificate.not_valid_after_utc.isoformat(),
                certificate.fingerprint(hashes.SHA256()).hex(),
                certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                now.isoformat(),
            ),
        )

    def certificates(self, code: str | None = None, serial: str | None = None) -> list[CertificateRecord]:
        query = (
            "SELECT serial, code, profile, subject, not_before, not_after, fingerprint, revoked_at, "
            "revocation_reason FROM certificates"
        )
        args: tuple[str, ...] = ()
        if code is not None:
            query += " WHERE code = ?"
            args = (code,)
        elif serial is not None:
            query += " WHERE serial = ?"
            args = (serial.lower().lstrip("0") or "0",)
        rows = self._db.execute(query + " ORDER BY issued_at", args).fetchall()
        return [
            CertificateRecord(
                r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), datetime.fromisoformat(r[5]), r[6],
                datetime.fromisoformat(r[7]) if r[7] else None, r[8],
            )
            for r in rows
        ]  # fmt: skip

    def certificate_pem(self, serial: str) -> str | None:
        row = self._db.execute("SELECT pem FROM certificates WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else str(row[0])

    def revoke(self, serial: str, reason: str, now: datetime) -> bool:
        """Revoke one certificate; False if it was revoked already."""
        cursor = self._db.execute(
            "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ? AND revoked_at IS NULL",
            (now.isoformat(), reason, serial),
        )
        return cursor.rowcount == 1

    def revoked(self) -> list[tuple[int, datetime, str]]:
        """Every revoked certificate: serial, when, why (for the CRL)."""
        rows = self._db.execute(
            "SELECT serial, revoked_at, revocation_reason FROM certificates WHERE revoked_at IS NOT NULL"
        ).fetchall()
        return [(int(r[0], 16), datetime.fromisoformat(r[1]), r[2]) for r in rows]

    def audit(self, actor: str, action: str, detail: str, now: datetime, serial: str | None = None,
              code: str | None = None) -> None:  # fmt: skip
        """Record a certificate authority action: who did what, to which certificate, when."""
        self._db.execute(
            "INSERT INTO ca_audit (at, actor, action, serial, code, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now.isoformat(), actor, action, serial, code, detail),
        )

    def audit_entries(self) -> list[AuditEntry]:
        rows = self._db.execute("SELECT id, at, actor, action, serial, code, detail FROM ca_audit ORDER BY id")
        return [AuditEntry(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def next_crl_number(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM ca_audit WHERE action = 'crl'").fetchone()
        return int(row[0]) + 1

    def expiring(self, now: datetime, days: int) -> list[CertificateRecord]:
        """Valid, unrevoked certificates of participants that expire within ``days`` and were not noticed yet."""
        return [
            c
            for c in self.certificates()
            if c.revoked_at is None
            and c.code != "HUB"
            and now < c.not_after <= now + timedelta(days=days)
            and self._db.execute(
                "SELECT 1 FROM expiry_notices WHERE serial = ? AND days = ?", (c.serial, days)
            ).fetchone()
            is None
        ]

    def mark_expiry_noticed(self, serial: str, days: int, now: datetime) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO expiry_notices (serial, days, sent_at) VALUES (?, ?, ?)",
            (serial, days, now.isoformat()),
        )

    def is_revoked(self, serial: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM certificates WHERE serial = ? AND revoked_at IS NOT NULL", (serial_hex(serial),)
        ).fetchone()
        return row is not None

    def close(self) -> None:
        self._db.close()
