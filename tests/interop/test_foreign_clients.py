"""Clients that use nothing of this project: xmlsec1 signs and verifies, a Node.js amqplib client publishes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters import Adapter
from gateway.admin import add_participant, vhost_url
from gateway.envelope import format_instant
from tests.support.hub import RunningHub

HERE = Path(__file__).parent
TEMPLATE = HERE / "data" / "Clarification.template.xml"
NODE_CLIENT = HERE / "node"

pytestmark = pytest.mark.interop


def xmlsec1() -> str:
    path = shutil.which("xmlsec1")
    if path is None:
        pytest.fail("xmlsec1 is not installed: scripts/setup installs it")
    return path


def sign_with_xmlsec1(hub: RunningHub, code: str, tmp_path: Path) -> tuple[bytes, str]:
    """Fill the template's header and sign it with `xmlsec1 --sign`, as a national system would."""
    message_id = str(uuid.uuid4())
    template = TEMPLATE.read_text(encoding="utf-8")
    template = template.replace("6f1c2a9e-4b1d-4c55-9a55-0d9f5e1f2b11", message_id)
    template = template.replace("2026-11-23T10:00:00Z", format_instant(datetime.now(UTC)))
    template = template.replace("<From>DE</From>", f"<From>{code}</From>")
    unsigned = tmp_path / "unsigned.xml"
    unsigned.write_text(template, encoding="utf-8")
    signed = tmp_path / "signed.xml"
    key = hub.home.signing_key(code)
    chain = hub.home.signing_chain(code)
    subprocess.run(
        [xmlsec1(), "--sign", "--privkey-pem", f"{key},{chain}", "--output", str(signed), str(unsigned)],
        check=True,
        capture_output=True,
    )
    return signed.read_bytes(), message_id


async def test_a_message_signed_by_xmlsec1_from_a_template_is_accepted_and_routed(
    hub: RunningHub, de: Adapter, ch: Adapter, tmp_path: Path
) -> None:
    data, message_id = sign_with_xmlsec1(hub, "DE", tmp_path)
    ack = await de.publish(data, message_id=message_id, type="Clarification")
    assert ack.status == "ACCEPTED", ack.reasons
    delivery = await ch.next_delivery(timeout=10)
    assert delivery.raw == data
    await delivery.accept()


async def test_the_hubs_acknowledgement_verifies_with_xmlsec1_and_the_hub_ca(
    hub: RunningHub, ch: Adapter, de: Adapter, tmp_path: Path
) -> None:
    data, message_id = sign_with_xmlsec1(hub, "DE", tmp_path)
    ack = await de.publish(data, message_id=message_id, type="Clarification")
    await (await ch.next_delivery(timeout=10)).accept()
    ack_file = tmp_path / "ack.xml"
    ack_file.write_bytes(ack.raw)
    anchors = hub.home.anchors_path  # what `i2es ca show` prints
    result = subprocess.run(
        [xmlsec1(), "--verify", "--trusted-pem", str(anchors), str(ack_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr


async def test_a_forged_acknowledgement_fails_xmlsec1(
    hub: RunningHub, ch: Adapter, de: Adapter, tmp_path: Path
) -> None:
    data, message_id = sign_with_xmlsec1(hub, "DE", tmp_path)
    ack = await de.publish(data, message_id=message_id, type="Clarification")
    await (await ch.next_delivery(timeout=10)).accept()
    forged = tmp_path / "forged.xml"
    forged.write_bytes(ack.raw.replace(b"<Status>ACCEPTED</Status>", b"<Status>REJECTED</Status>"))
    result = subprocess.run(
        [xmlsec1(), "--verify", "--trusted-pem", str(hub.home.anchors_path), str(forged)], capture_output=True
    )
    assert result.returncode != 0


async def test_a_node_amqplib_client_publishes_an_xmlsec1_signed_message_and_gets_a_signed_ack(
    hub: RunningHub, ch: Adapter, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT / "node_modules" / "amqplib").exists():
        pytest.fail("the Node.js client is not installed: scripts/setup installs node and its modules")
    # A participant of its own, so that no Python adapter shares its deliver queue.
    await asyncio.to_thread(add_participant, hub.settings, "JP", "MHLW", datetime.now(UTC), password="jp-secret")
    data, message_id = sign_with_xmlsec1(hub, "JP", tmp_path)
    signed = tmp_path / "to-send.xml"
    signed.write_bytes(data)
    url = vhost_url(hub.settings, "JP", "jp-secret")
    # In a thread: the hub under test runs on this event loop and must keep serving meanwhile.
    result = await asyncio.to_thread(
        subprocess.run,
        [node, str(NODE_CLIENT / "publish.mjs"), url, "JP", str(signed), message_id, "Clarification"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    ack_file = tmp_path / "ack.xml"
    ack_file.write_bytes(result.stdout)
    assert b"<Status>ACCEPTED</Status>" in result.stdout
    assert f"<RefToMessageId>{message_id}</RefToMessageId>".encode() in result.stdout
    verified = subprocess.run(
        [xmlsec1(), "--verify", "--trusted-pem", str(hub.home.anchors_path), str(ack_file)], capture_output=True
    )
    assert verified.returncode == 0, verified.stderr.decode()
    delivery = await ch.next_delivery(timeout=10)
    assert delivery.raw == data
    await delivery.accept()
