"""The hub processes sharing one ledger: each says, every few seconds, that it is alive.

A hub owns what it has recorded and not yet sent (documents for a full queue, notices). If it stops saying it is
alive, another adopts those rows and sends them, once: the adoption is one conditional update, so two hubs
adopting at the same time cannot both take a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.ledger.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS hubs (
    name TEXT PRIMARY KEY,
    shard TEXT NOT NULL,
    started_at TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
"""

# The rows a hub still has to send, by table: what a live hub keeps, and what a stopped one leaves to adopt.
PENDING = {
    "messages": "status = 'ACCEPTED' AND recipient IS NOT NULL AND routed_at IS NULL",
    "notices": "sent_at IS NULL",
}


@dataclass(frozen=True)
class Peer:
    name: str
    shard: str
    started_at: datetime
    seen_at: datetime


class Peers:
    """The ``hubs`` table, on the ledger's connection."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.create(SCHEMA)

    def beat(self, name: str, shard: str, now: datetime, started_at: datetime) -> None:
        with self._db.transaction(durable=False):  # a beat lost to a power cut: the next one says the same
            self._db.execute(
                "INSERT INTO hubs (name, shard, started_at, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET shard = excluded.shard, started_at = excluded.started_at, seen_at = excluded.seen_at",
                (name, shard, started_at.isoformat(), now.isoformat()),
            )

    def leave(self, name: str) -> None:
        """A hub stopping cleanly: the others adopt what it leaves at their next beat."""
        with self._db.transaction(durable=False):
            self._db.execute("DELETE FROM hubs WHERE name = ?", (name,))

    def alive(self, now: datetime, lease: timedelta) -> dict[str, Peer]:
        """The hubs seen within ``lease`` of ``now``, by name."""
        rows = self._db.execute(
            "SELECT name, shard, started_at, seen_at FROM hubs WHERE seen_at >= ?", ((now - lease).isoformat(),)
        ).fetchall()
        return {
            str(r[0]): Peer(str(r[0]), str(r[1]), datetime.fromisoformat(r[2]), datetime.fromisoformat(r[3]))
            for r in rows
        }

    def adopt(self, me: str, alive: set[str]) -> dict[str, int]:
        """Take over the pending rows of hubs not ``alive`` (and of none, from before hubs were named): by table,
        how many were taken."""
        orphans = {
            table: {
                row[0]
                for row in self._db.execute(f"SELECT DISTINCT hub FROM {table} WHERE {pending}").fetchall()  # noqa: S608
            }
            - alive
            - {me}
            for table, pending in PENDING.items()
        }
        taken: dict[str, int] = {}
        if not any(orphans.values()):
            return taken
        with self._db.transaction():
            for table, pending in PENDING.items():
                count = 0
                for owner in orphans[table]:
                    where = "hub IS NULL" if owner is None else "hub = ?"
                    cursor = self._db.execute(
                        f"UPDATE {table} SET hub = ? WHERE {pending} AND {where}",  # noqa: S608
                        (me,) if owner is None else (me, owner),
                    )
                    count += max(cursor.rowcount, 0)
                if count:
                    taken[table] = count
        return taken
