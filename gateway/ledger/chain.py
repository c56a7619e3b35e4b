"""The ledger's hash chain: each entry's hash covers its content and the hash of the entry before it.

Changing, removing or reordering an entry breaks the chain from that entry on; ``verify_chain`` finds
the first place where it breaks. Pure functions: the ledger and the export call them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GENESIS = "0" * 64

# What an entry's hash covers: everything written when it is appended, nothing updated later
# (routing, receipts and flags change an entry's state, not what was received and answered).
CHAINED_FIELDS = (
    "message_id", "broker_user", "sender", "recipient", "type", "conversation_id", "ref_to_message_id", "digest",
    "body_sha256", "status", "reasons", "warnings", "received_at", "signer_serial", "ack_sha256",
)  # fmt: skip


def entry_hash(previous: str, sequence: int, fields: Mapping[str, object]) -> str:
    """The SHA-256 of the previous hash, the sequence number and the chained fields, in canonical JSON."""
    content = [previous, sequence, *(fields.get(name) for name in CHAINED_FIELDS)]
    return hashlib.sha256(json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class ChainedEntry:
    sequence: int
    hash: str
    fields: Mapping[str, object]


@dataclass(frozen=True)
class ChainReport:
    entries: int
    first: int | None
    last: int | None
    head: str
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify_chain(entries: Iterable[ChainedEntry], previous: str = GENESIS, first: int = 1) -> ChainReport:
    """Recompute the chain; report the first entry that is missing, out of order or changed."""
    expected = first
    for entry in entries:
        problem = None
        if entry.sequence != expected:
            problem = (
                f"entry #{expected} is missing (the next entry is #{entry.sequence})"
                if entry.sequence > expected
                else f"entry #{entry.sequence} is out of order (expected #{expected})"
            )
        elif entry.fields.get("digest") != entry.fields.get("body_sha256"):
            problem = f"entry #{entry.sequence}: the stored message is not the one received"
        elif entry_hash(previous, entry.sequence, entry.fields) != entry.hash:
            problem = f"entry #{entry.sequence} does not match its hash: it or an earlier entry was changed"
        if problem:
            return _report(first, expected, previous, problem)
        previous = entry.hash
        expected += 1
    return _report(first, expected, previous, None)


def _report(first: int, expected: int, head: str, problem: str | None) -> ChainReport:
    count = expected - first
    return ChainReport(count, first if count else None, expected - 1 if count else None, head, problem)
