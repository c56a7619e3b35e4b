"""Who the hub knows: participants, the certificates issued to them, and revocations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certs.keys import common_name
from gateway.ledger.sqlite import connect

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
"""


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

    def certificates(self, code: str | None = None) -> list[CertificateRecord]:
        query = (
            "SELECT serial, code, profile, subject, not_before, not_after, fingerprint, revoked_at, "
            "revocation_reason FROM certificates"
        )
        args: tuple[str, ...] = ()
        if code is not None:
            query += " WHERE code = ?"
            args = (code,)
        rows = self._db.execute(query + " ORDER BY issued_at", args).fetchall()
        return [
            CertificateRecord(
                r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), datetime.fromisoformat(r[5]), r[6],
                datetime.fromisoformat(r[7]) if r[7] else None, r[8],
            )
            for r in rows
        ]  # fmt: skip

    def revoke_participant(self, code: str, reason: str, now: datetime) -> int:
        """Revoke every certificate of ``code``; returns how many were newly revoked."""
        cursor = self._db.execute(
            "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE code = ? AND revoked_at IS NULL",
            (now.isoformat(), reason, code),
        )
        return cursor.rowcount

    def is_revoked(self, serial: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM certificates WHERE serial = ? AND revoked_at IS NOT NULL", (serial_hex(serial),)
        ).fetchone()
        return row is not None

    def close(self) -> None:
        self._db.close()
