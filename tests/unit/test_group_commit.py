"""A batch's commit is on the disk before anything of the batch leaves the hub, as with a commit that waits for the
disk (SQLite's synchronous=FULL), but the wait happens in a thread: the hub's event loop goes on meanwhile
(reading the broker's confirms of the batches being sent). Real SQLite, no broker."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.hub import Hub
from gateway.ledger import db
from gateway.ledger.model import LedgerUnavailable, NewEntry
from gateway.ledger.store import SqliteLedger
from gateway.pipeline import Checks
from tests.support.kept import NOW, KeptOutbox, from_de, kept_hub
from tests.support.pki import Pki, signed

FULL, NORMAL = 2, 1  # PRAGMA synchronous


@pytest.fixture
def outbox() -> KeptOutbox:
    return KeptOutbox()


@pytest.fixture
def hub(pki: Pki, kept_checks: Checks, outbox: KeptOutbox) -> Hub:
    return kept_hub(pki, kept_checks, NOW, outbox)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch, outbox: KeptOutbox) -> list[str]:
    """The names of the files the ledger syncs, also put in the outbox's events as ``synced <name>``."""
    names: list[str] = []
    real = os.fdatasync

    def fdatasync(descriptor: int) -> None:
        real(descriptor)
        name = os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}"))
        names.append(name)
        outbox.events.append(f"synced {name}")

    monkeypatch.setattr(db.os, "fdatasync", fdatasync)
    return names


def entry(message_id: str) -> NewEntry:
    return NewEntry(
        message_id, "DE", "DE", "CH", "ExportAuthorization", None, None, f"d-{message_id}", b"<m/>", "ACCEPTED",
        (), (), NOW, None,
    )  # fmt: skip


def no_ack(sequence: int) -> tuple[str, bytes]:
    return "ack", b"<ack/>"


async def test_a_batch_is_synced_to_the_disk_before_its_deliveries_and_acknowledgements_go_out(
    pki: Pki, hub: Hub, outbox: KeptOutbox, synced: list[str]
) -> None:
    batch = [from_de(signed("ExportAuthorization", pki.signers["DE"])) for _ in range(3)]

    outcomes = await hub.handle_batch(batch)

    assert [o.status for o in outcomes] == ["ACCEPTED"] * 3
    assert outbox.events == ["synced hub.sqlite-wal", *["deliver"] * 3, *["acknowledge"] * 3]


def test_the_batch_commit_itself_does_not_wait_for_the_disk(tmp_path: Path, synced: list[str]) -> None:
    ledger = SqliteLedger(tmp_path / "hub.sqlite")
    mode: Callable[[], int] = lambda: int(ledger.database.execute("PRAGMA synchronous").fetchone()[0])  # noqa: E731

    with ledger.group(sync_later=True):
        assert mode() == NORMAL
        ledger.append(entry("a"), no_ack)
    assert mode() == FULL  # every other write waits for the disk at its commit, as before
    assert synced == []

    asyncio.run(ledger.sync())
    asyncio.run(ledger.sync())  # nothing new: nothing to sync

    assert synced == ["hub.sqlite-wal"]


def test_a_sync_for_what_another_process_committed_syncs_the_shared_log(tmp_path: Path, synced: list[str]) -> None:
    writer, reader = SqliteLedger(tmp_path / "hub.sqlite"), SqliteLedger(tmp_path / "hub.sqlite")
    with writer.group(sync_later=True):
        writer.append(entry("a"), no_ack)

    asyncio.run(reader.sync())
    assert synced == []  # the reader committed nothing itself
    asyncio.run(reader.sync(others=True))
    assert synced == ["hub.sqlite-wal"]


def test_a_sync_that_fails_is_a_ledger_unavailable_and_the_next_one_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced: list[str]
) -> None:
    ledger = SqliteLedger(tmp_path / "hub.sqlite")
    with ledger.group(sync_later=True):
        ledger.append(entry("a"), no_ack)
    working = db.os.fdatasync

    def failing(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(db.os, "fdatasync", failing)
    with pytest.raises(LedgerUnavailable, match="cannot be synced"):
        asyncio.run(ledger.sync())
    monkeypatch.setattr(db.os, "fdatasync", working)
    asyncio.run(ledger.sync())

    assert synced == ["hub.sqlite-wal"]


async def test_a_batch_whose_commit_cannot_be_synced_sends_nothing_and_is_answered_as_a_resend_when_taken_again(
    pki: Pki, hub: Hub, outbox: KeptOutbox, synced: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [from_de(signed("ExportAuthorization", pki.signers["DE"])) for _ in range(2)]
    working = db.os.fdatasync

    def failing(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(db.os, "fdatasync", failing)
    with pytest.raises(LedgerUnavailable):
        await hub.handle_batch(batch)
    assert outbox.events == []

    monkeypatch.setattr(db.os, "fdatasync", working)
    outcomes = await asyncio.wait_for(hub.handle_batch(batch), timeout=10)

    assert [o.status for o in outcomes] == ["RESENT", "RESENT"]
    assert outbox.events[0] == "synced hub.sqlite-wal"
    assert sorted(outbox.delivered) == sorted(i.message_id or "" for i in batch)
    assert outbox.events[1:] == ["deliver", "acknowledge"] * 2


async def test_a_batch_says_how_long_each_step_took_the_disks_sync_among_them(
    pki: Pki, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fdatasync

    def slow_disk(descriptor: int) -> None:
        time.sleep(0.05)
        real(descriptor)

    monkeypatch.setattr(db.os, "fdatasync", slow_disk)
    done = await hub.record([from_de(signed("ExportAuthorization", pki.signers["DE"]))])
    await hub.send(done)

    steps = done.steps.ms
    assert list(steps) == ["open", "record", "sync", "deliver", "acknowledge"]
    assert steps["sync"] >= 50
    assert all(ms >= 0 for ms in steps.values())
