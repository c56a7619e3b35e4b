"""A batch is judged as if its messages came one at a time: a MessageId or a message seen earlier in the same
batch, or in an earlier one, is a duplicate or a resend. The ledger answers those questions for a whole batch
with one query (real SQLite, no broker)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.hub import Hub, Outcome
from gateway.ledger.model import NewEntry
from gateway.ledger.store import SqliteLedger
from gateway.pipeline import Checks
from tests.support.kept import NOW, KeptOutbox, from_de, kept_hub
from tests.support.pki import Pki, header_of, signed


@pytest.fixture
def hub(pki: Pki, kept_checks: Checks) -> Hub:
    return kept_hub(pki, kept_checks, NOW)


def statuses(outcomes: list[Outcome]) -> list[str]:
    return [o.status if o.status != "REJECTED" else f"REJECTED {o.reasons[0].code}" for o in outcomes]


async def test_a_message_id_accepted_earlier_in_the_same_batch_is_a_duplicate(pki: Pki, hub: Hub) -> None:
    first = signed("ExportAuthorization", pki.signers["DE"])
    other = signed("ExportAuthorization", pki.signers["DE"], message_id=header_of(first).message_id)
    later = signed("ExportAuthorization", pki.signers["DE"])

    outcomes = await hub.handle_batch([from_de(first), from_de(other), from_de(later)])

    assert statuses(outcomes) == ["ACCEPTED", "REJECTED DUPLICATE_MESSAGE_ID", "ACCEPTED"]


async def test_the_same_message_twice_in_a_batch_is_recorded_once_and_answered_twice(pki: Pki, hub: Hub) -> None:
    message = signed("ExportAuthorization", pki.signers["DE"])

    outcomes = await hub.handle_batch([from_de(message), from_de(message)])

    assert statuses(outcomes) == ["ACCEPTED", "RESENT"]
    assert outcomes[0].entry is not None and outcomes[1].entry is not None
    assert outcomes[1].entry.sequence == outcomes[0].entry.sequence
    assert isinstance(hub.outbox, KeptOutbox)
    assert hub.outbox.delivered == [header_of(message).message_id]
    assert hub.outbox.acknowledged == [outcomes[0].entry.ack] * 2


async def test_what_an_earlier_batch_accepted_is_a_duplicate_or_a_resend_in_a_later_one(pki: Pki, hub: Hub) -> None:
    message = signed("ExportAuthorization", pki.signers["DE"])
    other = signed("ExportAuthorization", pki.signers["DE"], message_id=header_of(message).message_id)
    await hub.handle_batch([from_de(message)])

    outcomes = await hub.handle_batch([from_de(signed("ExportAuthorization", pki.signers["DE"])), from_de(other)])
    again = await hub.handle_batch([from_de(message)])

    assert statuses(outcomes) == ["ACCEPTED", "REJECTED DUPLICATE_MESSAGE_ID"]
    assert statuses(again) == ["RESENT"]


def entry(message_id: str, digest: str, status: str = "ACCEPTED") -> NewEntry:
    return NewEntry(
        message_id, "DE", "DE", "CH", "ExportAuthorization", None, None, digest, b"<m/>", status, (), (), NOW, None
    )


def test_a_batch_asks_the_ledger_once_for_its_message_ids_and_digests(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "hub.sqlite")
    ledger.append(entry("on-file", "d-on-file"), lambda seq: ("ack", b"<ack/>"))
    asked: list[str] = []
    connection = ledger.database._db  # type: ignore[attr-defined]
    assert isinstance(connection, sqlite3.Connection)
    connection.set_trace_callback(lambda sql: asked.append(sql) if sql.startswith("SELECT") else None)
    ids = ["on-file", *(f"new-{n}" for n in range(10))]
    try:
        with ledger.group():
            ledger.expect(ids, [f"d-{i}" for i in ids])
            assert len(asked) == 1
            assert [ledger.find_accepted(i) is None for i in ids] == [False] + [True] * 10
            assert all(ledger.find_accepted_by_digest(f"d-{i}", "DE") is None for i in ids[1:])
            assert len(asked) == 2  # only the one on file was looked up
            ledger.append(entry("new-3", "d-new-3"), lambda seq: ("ack", b"<ack/>"))
            ledger.append(entry("new-4", "d-new-4", "REJECTED"), lambda seq: ("ack", b"<ack/>"))
            found = ledger.find_accepted("new-3")
            assert found is not None and found.message_id == "new-3"
            assert ledger.find_accepted_by_digest("d-new-3", "DE") is not None
            assert ledger.find_accepted("new-4") is None
        # Outside the transaction that asked, every lookup goes to the database again.
        before = len(asked)
        assert ledger.find_accepted("new-5") is None
        assert len(asked) == before + 1
    finally:
        ledger.close()


def test_a_batch_reads_each_estimate_once_and_again_after_it_changes(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "hub.sqlite")
    trade = ledger.trade
    trade.load_estimate("CH", "morphine", 2026, "estimate", Decimal("1000"), NOW)
    asked: list[str] = []
    connection = ledger.database._db  # type: ignore[attr-defined]
    connection.set_trace_callback(lambda sql: asked.append(sql) if "FROM estimates" in sql else None)
    try:
        with ledger.group():
            assert [trade.estimate("CH", "morphine", 2026) for _ in range(5)] == [Decimal("1000")] * 5
            assert trade.estimate("CH", "codeine", 2026) is None
            assert len(asked) == 2
            trade.load_estimate("CH", "morphine", 2026, "supplementary", Decimal("250"), NOW)
            assert trade.estimate("CH", "morphine", 2026) == Decimal("1250")
        assert trade.estimate("CH", "morphine", 2026) == Decimal("1250")
        assert len(asked) == 4
    finally:
        ledger.close()


def test_the_batch_lookup_searches_the_indexes_and_never_scans_the_ledger(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "hub.sqlite")
    plans: list[str] = []
    connection = ledger.database._db  # type: ignore[attr-defined]
    real_execute = ledger.database.execute

    def explained(sql: str, params: Sequence[object] = ()) -> Any:
        if sql.startswith("SELECT 'id'"):
            plans.extend(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        return real_execute(sql, params)

    ledger.database.execute = explained  # type: ignore[method-assign]
    try:
        with ledger.group():
            ledger.expect(["a", "b"], ["d-a", "d-b"])
    finally:
        ledger.close()
    searches = [plan for plan in plans if "messages" in plan]
    assert searches and all(plan.startswith("SEARCH") for plan in searches), plans
