"""The ledger on both engines, SQLite (embedded) and PostgreSQL (shared): the same sequence and chain, one writer
at a time across processes, and what a stopped hub leaves adopted by exactly one other."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.ledger.model import LedgerUnavailable, NewEntry
from gateway.ledger.store import SqlLedger, open_ledger
from tests.support.postgres import drop_database, fresh_database

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.sqlite'}"
        return
    url = fresh_database("ledger_engines")
    try:
        yield url
    finally:
        drop_database(url)


def open_as(url: str, owner: str) -> SqlLedger:
    return open_ledger(url, Path("/nonexistent"), busy_seconds=30.0, owner=owner)


def document(n: int, recipient: str | None = "CH") -> NewEntry:
    body = f"<doc n='{n}'/>".encode()
    return NewEntry(
        message_id=f"m-{n}", broker_user="DE", sender="DE", recipient=recipient, type="ExportAuthorization",
        conversation_id=None, ref_to_message_id=None, digest=hashlib.sha256(body).hexdigest(), body=body, status="ACCEPTED",
        reasons=(), warnings=(), received_at=NOW, signer_serial=None,
    )  # fmt: skip


def ack(sequence: int) -> tuple[str, bytes]:
    return f"ack-{sequence}", f"<ack n='{sequence}'/>".encode()


def test_writers_in_parallel_get_unique_contiguous_sequences_and_one_chain(ledger_url: str) -> None:
    open_as(ledger_url, "setup").close()  # the tables, once
    errors: list[BaseException] = []

    def write(owner: str, first: int) -> None:
        ledger = open_as(ledger_url, owner)
        try:
            for n in range(first, first + 40):
                ledger.append(document(n), ack)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            ledger.close()

    threads = [threading.Thread(target=write, args=(f"hub-{k}", k * 1000)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ledger = open_as(ledger_url, "reader")
    try:
        entries = list(ledger.entries(limit=1000))
        assert [e.sequence for e in entries] == list(range(1, 121))
        assert {e.owner for e in entries} == {"hub-0", "hub-1", "hub-2"}
        assert ledger.verify().intact
    finally:
        ledger.close()


def test_batches_from_two_hubs_in_turn_chain_to_each_other(ledger_url: str) -> None:
    first, second = open_as(ledger_url, "hub-1"), open_as(ledger_url, "hub-2")
    try:
        with first.group():
            first.append(document(1), ack)
            first.append(document(2), ack)  # chained to the one before, in the same transaction
        second.append(document(3), ack)
        with first.group():
            assert first.append(document(4), ack).sequence == 4  # after the other hub's, not after its own
        entries = list(first.entries(limit=10))
        assert [(e.sequence, e.owner) for e in entries] == [(1, "hub-1"), (2, "hub-1"), (3, "hub-2"), (4, "hub-1")]
        assert first.verify().intact
    finally:
        first.close()
        second.close()


async def test_a_hub_waiting_for_its_turn_to_write_leaves_its_event_loop_running(ledger_url: str) -> None:
    holder, waiter = open_as(ledger_url, "hub-1"), open_as(ledger_url, "hub-2")

    async def write(n: int) -> int:
        async with waiter.writer_turn():
            return waiter.append(document(n), ack).sequence

    try:
        async with holder.writer_turn():
            holder.append(document(1), ack)  # committed; the turn is still this hub's
            writing = asyncio.create_task(write(2))
            for _ in range(10):  # a loop stopped by the waiter would never get here, nor end the turn
                await asyncio.sleep(0.005)
            assert not writing.done()
            holder.append(document(3), ack)
        assert await asyncio.wait_for(writing, 5) == 3  # its turn came when the other's ended
        assert [e.message_id for e in holder.entries(limit=10)] == ["m-1", "m-3", "m-2"]
    finally:
        holder.close()
        waiter.close()


async def test_a_turn_held_too_long_makes_the_ledger_unavailable(ledger_url: str) -> None:
    holder = open_as(ledger_url, "hub-1")
    waiter = open_ledger(ledger_url, Path("/nonexistent"), busy_seconds=0.05, owner="hub-2")
    try:
        async with holder.writer_turn():
            with pytest.raises(LedgerUnavailable, match="another writer has held it"):
                async with waiter.writer_turn():
                    pass
        async with waiter.writer_turn():  # free again
            waiter.append(document(1), ack)
    finally:
        holder.close()
        waiter.close()


def test_what_a_stopped_hub_left_unrouted_is_adopted_by_one_live_hub(ledger_url: str) -> None:
    gone, alive, other = open_as(ledger_url, "hub-1"), open_as(ledger_url, "hub-2"), open_as(ledger_url, "hub-3")
    try:
        for n in range(3):
            gone.append(document(n), ack)
        alive.append(document(10), ack)
        routed = gone.append(document(20), ack)
        gone.mark_routed(routed.sequence, NOW)
        alive.peers.beat("hub-2", "2/3", NOW, NOW)
        other.peers.beat("hub-3", "3/3", NOW, NOW)
        live = set(alive.peers.alive(NOW + timedelta(seconds=1), timedelta(seconds=5)))
        assert live == {"hub-2", "hub-3"}

        assert alive.peers.adopt("hub-2", live) == {"messages": 3}
        assert other.peers.adopt("hub-3", live) == {}  # taken already: not twice
        assert [e.message_id for e in alive.unrouted(mine=True)] == ["m-0", "m-1", "m-2", "m-10"]
        assert other.unrouted(mine=True) == []
    finally:
        for ledger in (gone, alive, other):
            ledger.close()


def test_a_hub_that_left_is_no_longer_alive(ledger_url: str) -> None:
    ledger = open_as(ledger_url, "hub-1")
    try:
        ledger.peers.beat("hub-1", "1/1", NOW, NOW)
        assert set(ledger.peers.alive(NOW, timedelta(seconds=5))) == {"hub-1"}
        assert ledger.peers.alive(NOW + timedelta(seconds=6), timedelta(seconds=5)) == {}
        ledger.peers.leave("hub-1")
        assert ledger.peers.alive(NOW, timedelta(seconds=5)) == {}
    finally:
        ledger.close()


def test_the_hubs_commits_leave_copying_the_log_to_a_checkpoint_thread(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    ledger = open_as(f"sqlite:///{path}", "hub-1")
    ledger.checkpoint_in_background(every_seconds=3600)  # no pass of its own during this test
    file_size = path.stat().st_size
    for n in range(700):  # about 6 MB of log: SQLite's own commits would have copied it past 1000 pages (4 MB)
        body = hashlib.sha512(str(n).encode()).digest() * 128
        ledger.append(replace(document(n), body=body, digest=hashlib.sha256(body).hexdigest()), ack)
    assert path.stat().st_size == file_size, "a commit copied the log into the database file"
    assert path.with_name(f"{path.name}-wal").stat().st_size > 4 * 1024 * 1024
    ledger.close()  # the checkpointer's last pass
    reopened = open_as(f"sqlite:///{path}", "hub-1")
    try:
        assert path.stat().st_size > 5 * 1024 * 1024
        assert reopened.get(700) is not None and reopened.verify().intact
    finally:
        reopened.close()


def test_the_checkpoint_thread_copies_the_log_while_the_hub_writes(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    ledger = open_as(f"sqlite:///{path}", "hub-1")
    ledger.checkpoint_in_background(every_seconds=0.05)
    try:
        file_size = path.stat().st_size
        for n in range(50):
            ledger.append(document(n), ack)
        deadline = time.monotonic() + 10
        while path.stat().st_size == file_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > file_size, "no checkpoint copied the log while the ledger was open"
    finally:
        ledger.close()


def test_marking_a_large_document_routed_rewrites_a_small_row_not_the_document(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    ledger = open_as(f"sqlite:///{path}", "hub-1")
    try:
        body = b"<doc>" + b"x" * 64 * 1024 + b"</doc>"  # 17 pages of 4 KiB
        entry = ledger.append(replace(document(1), body=body, digest=hashlib.sha256(body).hexdigest()), ack)
        page = int(ledger.database.execute("PRAGMA page_size").fetchone()[0])
        log = path.with_name(f"{path.name}-wal")
        before = log.stat().st_size
        ledger.mark_routed(entry.sequence, NOW)
        pages_written = (log.stat().st_size - before) // (page + 24)  # each frame: a header of 24 bytes, a page
        assert 0 < pages_written <= 4
        assert ledger.get(entry.sequence) == replace(entry, routed_at=NOW)
    finally:
        ledger.close()


def test_a_ledger_with_the_bytes_in_the_entries_rows_moves_them_out_once(ledger_url: str) -> None:
    ledger = open_as(ledger_url, "hub-1")
    entries = [ledger.append(document(n), ack) for n in range(1, 4)]
    db = ledger.database
    blob = "BYTEA" if db.dialect == "postgresql" else "BLOB"
    with db.transaction():  # the layout written before: body and ack in the entry's row
        db.execute(f"ALTER TABLE messages ADD COLUMN body {blob}")
        db.execute(f"ALTER TABLE messages ADD COLUMN ack {blob}")
        for entry in entries:
            db.execute(
                "UPDATE messages SET body = ?, ack = ? WHERE sequence = ?", (entry.body, entry.ack, entry.sequence)
            )
        db.execute("DROP TABLE message_bytes")
    ledger.close()

    reopened = open_as(ledger_url, "hub-2")
    try:
        assert "body" not in reopened.database.columns("messages")
        assert [reopened.get(e.sequence) for e in entries] == entries
        assert reopened.verify().intact
        again = reopened.append(document(4), ack)
        assert reopened.get(again.sequence) == again and reopened.verify().intact
        assert reopened.entries() == [*entries, again]
    finally:
        reopened.close()


def test_the_log_starts_again_from_its_beginning_while_the_hub_writes_without_a_pause(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    ledger = open_as(f"sqlite:///{path}", "hub-1")
    ledger.checkpoint_in_background(every_seconds=0.01, rewind_after_frames=100)
    log = path.with_name(f"{path.name}-wal")
    try:
        for n in range(1500):  # about 10 pages of log each, 60 MB in all: never a pause for SQLite to rewind it
            body = hashlib.sha512(str(n).encode()).digest() * 64
            ledger.append(replace(document(n), body=body, digest=hashlib.sha256(body).hexdigest()), ack)
        assert log.stat().st_size < 8 * 1024 * 1024, f"the log grew to {log.stat().st_size} bytes"
        assert len(ledger.entries(limit=2000)) == 1500 and ledger.verify().intact
    finally:
        ledger.close()
