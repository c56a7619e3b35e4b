"""Production transport: a second RabbitMQ node configured by `i2es broker tls-config` (TLS only, EXTERNAL).

Participants connect with a client certificate from the hub CA and no password; the broker refuses
a certificate from another CA, an expired one and a revoked one, and drops a revoked one's connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import pytest

from certs.authority import Profile
from certs.keys import generate_key, write_certificates, write_private_key
from gateway.broker.management import Management
from gateway.broker.tls import TlsBroker
from gateway.home import Home
from tests.support.cli import Cli
from tests.support.pki import EXAMPLES, make_pki

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
PORT, MANAGEMENT_PORT, DIST_PORT = 5681, 15681, 25681


@dataclass
class TlsHub:
    cli: Cli
    broker: TlsBroker
    hub: subprocess.Popen[str]

    def participant_url(self, code: str, certificate: Path, key: Path) -> str:
        return self.broker.url(certificate, key, self.cli.env["I2ES_VHOST"])


def node_env(folder: Path, broker: TlsBroker) -> dict[str, str]:
    return {
        **os.environ,
        "I2ES_BROKER_DIR": str(REPO / ".run" / "rabbitmq-tls"),
        "I2ES_BROKER_CONFIG": str(broker.config),
        "I2ES_BROKER_PLUGINS": str(broker.plugins),
        "I2ES_BROKER_ADVANCED_CONFIG": str(broker.advanced_config),
        "I2ES_BROKER_NODE": "i2es-tls@localhost",
        "I2ES_BROKER_DIST_PORT": str(DIST_PORT),
        "I2ES_BROKER_AMQP_PORT": str(PORT),
        "I2ES_BROKER_MGMT_PORT": str(MANAGEMENT_PORT),
    }


@pytest.fixture(scope="module")
def tls(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsHub]:
    folder = tmp_path_factory.mktemp("tls-broker")
    cli("init")
    for code in ("DE", "CH"):
        cli("participant", "add", code, "--name", f"{code} authority")
    written = json.loads(cli("broker", "tls-config", "--out", str(folder), "--port", str(PORT),
                             "--management-port", str(MANAGEMENT_PORT), "--json").stdout)  # fmt: skip
    broker = TlsBroker(folder, "localhost", PORT, MANAGEMENT_PORT)
    env = node_env(folder, broker)
    subprocess.run([str(REPO / "scripts" / "broker"), "reset"], env=env, check=True, capture_output=True)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.fail(f"port {PORT} is taken by another broker; stop it so this test can start its own TLS node")
    subprocess.run([str(REPO / "scripts" / "broker"), "start"], env=env, check=True, capture_output=True)
    cli.env |= {"I2ES_BROKER_URL": written["hub_broker_url"], "I2ES_MANAGEMENT_URL": written["management_url"]}
    cli("init")  # the topology and every registered participant's user, on the new broker
    # DE keeps its own key and sends a request made with openssl; CH lets the hub make its key.
    key, csr = folder / "DE-tls.key", folder / "DE-tls.csr"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=DE/O=BfArM", "-out", str(csr)],
                   check=True, capture_output=True)  # fmt: skip
    cli("cert", "issue", "DE", "--profile", "tls", "--csr", str(csr), "--out", str(folder / "DE-tls.pem"))
    cli("cert", "issue", "CH", "--profile", "tls", "--out", str(folder / "CH-tls.pem"))
    hub = cli.start_hub()
    yield TlsHub(cli, broker, hub)
    hub.terminate()
    hub.wait(timeout=30)
    subprocess.run([str(REPO / "scripts" / "broker"), "reset"], env=env, check=False, capture_output=True)


def management(tls: TlsHub) -> Management:
    return Management(f"http://127.0.0.1:{MANAGEMENT_PORT}", "guest", "guest")


def test_participants_send_and_receive_with_their_certificate_and_no_password(tls: TlsHub) -> None:
    folder = tls.broker.folder
    de = tls.participant_url("DE", folder / "DE-tls.pem", folder / "DE-tls.key")
    ch = tls.participant_url("CH", folder / "CH-tls.pem", folder / "CH-tls.key")
    assert "password" not in de and "@" not in de
    sent = json.loads(tls.cli("send", "--as", "DE", "--url", de, str(EXAMPLES / "Clarification.xml"), "--json").stdout)
    assert sent[0]["status"] == "ACCEPTED"
    inbox = folder / "inbox"
    received = tls.cli("receive", "--as", "CH", "--url", ch, "--out", str(inbox), "--count", "1", "--timeout", "20",
                       "--json").stdout  # fmt: skip
    assert json.loads(received.splitlines()[0])["message_id"] == sent[0]["message_id"]


def test_the_only_amqp_listener_is_tls(tls: TlsHub) -> None:
    listeners = {(entry["protocol"], entry["port"]) for entry in management(tls).overview()["listeners"]}
    assert ("amqp/ssl", PORT) in listeners
    assert not any(protocol == "amqp" for protocol, _ in listeners)


def connect_and_close(tls: TlsHub, certificate: Path, key: Path) -> None:
    """Open a connection with this certificate and close it again, in one event loop."""

    async def attempt() -> None:
        connection = await aio_pika.connect(tls.participant_url("?", certificate, key), timeout=10)
        await connection.close()

    asyncio.run(asyncio.wait_for(attempt(), 30))


def expect_refusal(tls: TlsHub, certificate: Path, key: Path) -> None:
    """The TLS handshake fails (with TLS 1.3 the client may see only the reset that follows the alert)."""
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, aio_pika.exceptions.AMQPConnectionError)):
        connect_and_close(tls, certificate, key)


def test_a_certificate_from_another_ca_is_refused(tls: TlsHub) -> None:
    stranger = make_pki(("DE",)).signers["DE"]
    folder = tls.broker.folder
    write_private_key(folder / "stranger.key", stranger.key)
    write_certificates(folder / "stranger.pem", list(stranger.chain))
    expect_refusal(tls, folder / "stranger.pem", folder / "stranger.key")


def test_an_expired_certificate_is_refused(tls: TlsHub) -> None:
    authority = Home(tls.cli.home).authority()
    key = generate_key()
    long_ago = datetime.now(UTC) - timedelta(days=30)
    certificate = authority.issue(key.public_key(), "DE", "DE authority", Profile.TLS_CLIENT, long_ago,
                                  timedelta(days=1))  # fmt: skip
    folder = tls.broker.folder
    write_private_key(folder / "expired.key", key)
    write_certificates(folder / "expired.pem", [certificate, authority.issuing])
    expect_refusal(tls, folder / "expired.pem", folder / "expired.key")


def test_a_revoked_certificate_loses_its_connection_and_cannot_connect_again(tls: TlsHub) -> None:
    folder = tls.broker.folder
    tls.cli("cert", "issue", "CH", "--profile", "tls", "--out", str(folder / "CH-2-tls.pem"))
    certificate, key = folder / "CH-2-tls.pem", folder / "CH-2-tls.key"

    async def hold_then_revoke() -> bool:
        connection = await aio_pika.connect(tls.participant_url("CH", certificate, key), timeout=10)
        for _ in range(100):  # the management API lists a connection once its statistics are in
            if any(c.get("user") == "CH" for c in management(tls).connections() or []):
                break
            await asyncio.sleep(0.1)
        serial = json.loads(tls.cli("cert", "list", "CH", "--json").stdout)[-1]["serial"]
        revoked = json.loads(tls.cli("cert", "revoke", serial, "--reason", "keyCompromise", "--json").stdout)
        assert revoked["closed_connections"] >= 1
        for _ in range(50):
            await asyncio.sleep(0.1)
            try:
                await asyncio.wait_for(connection.channel(), 2)
            except Exception:  # the broker closed the connection under it
                return True
        return False

    assert asyncio.run(hold_then_revoke()), "the broker kept the revoked certificate's connection"
    expect_refusal(tls, certificate, key)
    # The same participant's other certificate, not revoked, still connects: the broker checks the certificate.
    connect_and_close(tls, folder / "CH-tls.pem", folder / "CH-tls.key")
