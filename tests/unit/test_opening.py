"""Opening messages in worker processes gives the hub's own verdicts, checks the chain again when recorded, and
survives a worker that dies (real worker processes, no broker)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ReasonCode
from gateway.opening import LocalOpener, WorkerOpener, WorkerSetup
from gateway.pipeline import Checks, Inbound, Opened, examine, judge
from gateway.reading import ReadingPolicy
from gateway.registry import Registry, serial_hex
from gateway.settings import PROJECT_ROOT
from tests.support.checks import checks_in
from tests.support.pki import Pki, header_of, signed

NOW = datetime.now(UTC)
READING = ReadingPolicy.load(PROJECT_ROOT / "schemas", 1024 * 1024)


@pytest.fixture
def checks(pki: Pki, tmp_path: Path) -> Iterator[Checks]:
    with checks_in(tmp_path, pki, READING, ("CH", "DE"), NOW) as checks:
        yield checks


@pytest.fixture
async def workers(pki: Pki, checks: Checks, tmp_path: Path) -> AsyncIterator[WorkerOpener]:
    setup = WorkerSetup(
        schema_dir=PROJECT_ROOT / "schemas",
        max_message_bytes=1024 * 1024,
        anchors=tuple(a.public_bytes(Encoding.DER) for a in pki.anchors),
        registry_path=tmp_path / "hub.sqlite",
        signature=checks.signature,
    )
    opener = WorkerOpener(setup, 2, checks)
    await opener.warm_up()
    yield opener
    await opener.stop()


def inbound(data: bytes, user: str = "DE") -> Inbound:
    header = header_of(data)
    return Inbound(data, user, header.message_id, header.type, "application/xml", 2)


def raw(data: bytes) -> Inbound:
    return Inbound(data, "DE", None, None, "application/xml", 2)


def codes(opened: Opened) -> list[str]:
    return [opened.refusal.code] if opened.refusal else []


def corrupted(data: bytes) -> bytes:
    changed = data.replace(b"<Name>Alpina Pharma AG</Name>", b"<Name>Alpine Pharma AG</Name>", 1)
    assert changed != data
    return changed


async def test_a_worker_opens_a_message_as_the_hub_does(pki: Pki, checks: Checks, workers: WorkerOpener) -> None:
    message = inbound(signed("ExportAuthorization", pki.signers["DE"]))
    (opened,) = await workers.open_all([message], NOW)
    assert opened.verified is not None
    assert opened.verified.header == header_of(message.body)
    assert opened.verified.signer == pki.signers["DE"].chain[0]
    assert judge(message, opened, checks, NOW) == examine(message, checks, NOW)


async def test_opened_ahead_or_with_the_batch_each_refusal_keeps_its_reason_code(
    pki: Pki, checks: Checks, workers: WorkerOpener
) -> None:
    good = signed("ExportAuthorization", pki.signers["DE"])
    messages = [
        inbound(good),
        inbound(corrupted(good)),
        raw(b"<not-closed>"),
        raw(good.replace(b"<Items>", b"<!-- x --><Items>", 1)),
    ]
    for message in messages[:2]:
        workers.begin(message.body, NOW)  # two of them opened as they arrive, the others with the batch
    opened = await workers.open_all(messages, NOW)
    local = await LocalOpener(checks).open_all(messages, NOW)
    assert [codes(o) for o in opened] == [codes(o) for o in local]
    assert [codes(o) for o in opened] == [
        [],
        [ReasonCode.SIGNATURE_INVALID],
        [ReasonCode.MALFORMED_XML],
        [ReasonCode.FORBIDDEN_XML_CONSTRUCT],
    ]


async def test_the_hub_opening_a_batch_lets_the_event_loop_run_between_two_messages(pki: Pki, checks: Checks) -> None:
    # What else the hub has to do (the broker's confirms of the batch it is sending) waits one message, not a batch.
    messages = [inbound(signed("ExportAuthorization", pki.signers["DE"])) for _ in range(3)]
    opening = asyncio.create_task(LocalOpener(checks).open_all(messages, NOW))
    turns = 0  # how often this task ran while the batch was being opened
    while not opening.done():
        turns += 1
        await asyncio.sleep(0)
    assert [o.verified is not None for o in opening.result()] == [True, True, True]
    assert turns >= len(messages)


async def test_a_certificate_revoked_after_a_worker_opened_the_message_is_refused_when_it_is_recorded(
    pki: Pki, workers: WorkerOpener, tmp_path: Path
) -> None:
    signer = pki.signer("DE")
    message = inbound(signed("ExportAuthorization", signer))
    workers.begin(message.body, NOW)
    await asyncio.sleep(0.5)  # the worker has vouched for it by now
    registry = Registry(tmp_path / "hub.sqlite")  # as `i2es cert revoke` does, on the hub's file
    try:
        registry.record_certificate(signer.chain[0], "signing", NOW)
        assert registry.revoke(serial_hex(signer.chain[0].serial_number), "keyCompromise", NOW)
    finally:
        registry.close()
    (opened,) = await workers.open_all([message], datetime.now(UTC))
    assert codes(opened) == [ReasonCode.CERTIFICATE_REVOKED]


async def test_a_worker_killed_with_messages_in_hand_loses_none_and_is_replaced(
    pki: Pki, workers: WorkerOpener
) -> None:
    messages = [inbound(signed("ExportAuthorization", pki.signers["DE"])) for _ in range(12)]
    for message in messages:
        workers.begin(message.body, NOW)
    victim = workers.pids[0]
    os.kill(victim, signal.SIGKILL)
    opened = await workers.open_all(messages, NOW)
    assert all(o.verified is not None for o in opened), [codes(o) for o in opened]
    for _ in range(100):  # a new worker starts in the background
        if len(workers.pids) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(set(workers.pids)) == 2 and victim not in workers.pids
    for message in messages:
        workers.begin(message.body, NOW)
    assert all(o.verified is not None for o in await workers.open_all(messages, NOW))
