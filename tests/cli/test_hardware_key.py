"""The hub signs its acknowledgements with a key kept in a PKCS#11 token (SoftHSM2), and they still verify."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters import Adapter, AdapterConfig
from certs.keys import read_certificates
from certs.trust import TrustStore
from gateway.admin import vhost_url
from gateway.envelope import body_document
from gateway.home import Home
from gateway.reading import parse_xml
from gateway.settings import Settings
from gateway.signature import verify_envelope
from tests.support.cli import Cli
from tests.support.pki import envelope_of

pytestmark = pytest.mark.broker

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "4711-4711"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not MODULE.exists() or shutil.which("softhsm2-util") is None:
        pytest.fail("SoftHSM2 is not installed: scripts/setup installs it (Debian package softhsm2)")
    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    config = folder / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n")
    env = {"SOFTHSM2_CONF": str(config)}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "i2es-hub", "--pin", PIN, "--so-pin", "99999999"],
        env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip
    return env | {"I2ES_PKCS11_MODULE": str(MODULE), "I2ES_PKCS11_TOKEN": "i2es-hub", "I2ES_PKCS11_PIN": PIN}


@pytest.fixture(scope="module")
def hub_with_token(cli: Cli, token: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    cli.env.update(token)
    cli("init")
    cli("participant", "add", "DE", "--name", "BfArM", "--password", "de-pass")
    cli("participant", "add", "CH", "--name", "Swissmedic", "--password", "ch-pass")
    cli("hsm", "init")
    cli.env["I2ES_SIGNER"] = "pkcs11"
    process = cli.start_hub()
    yield process
    process.terminate()
    process.wait(timeout=30)


def test_the_key_made_in_the_token_is_sensitive_and_never_extractable(
    hub_with_token: subprocess.Popen[str], token: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    monkeypatch.setenv("SOFTHSM2_CONF", token["SOFTHSM2_CONF"])
    session = pkcs11.lib(str(MODULE)).get_token(token_label="i2es-hub").open(user_pin=PIN)
    try:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label="i2es-hub")
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
    finally:
        session.close()


async def test_acknowledgements_signed_in_the_token_verify_with_the_adapter_and_xmlsec1(
    cli: Cli, hub_with_token: subprocess.Popen[str], tmp_path: Path
) -> None:
    home = Home(cli.home)
    settings = Settings(home=cli.home, vhost=cli.env["I2ES_VHOST"])
    config = AdapterConfig(
        code="DE",
        broker_url=vhost_url(settings, "DE", "de-pass"),
        signer=home.participant_signer("DE"),
        anchors=tuple(home.anchors()),
    )
    async with Adapter(config) as de:
        ack = await de.send(body_document(envelope_of("Clarification")), "CH", timeout=30)
    assert ack.accepted
    token_certificate = read_certificates(home.hub_token_chain)[0]
    ack_file = tmp_path / "ack.xml"
    ack_file.write_bytes(ack.raw)
    verified = await asyncio.to_thread(
        subprocess.run, ["xmlsec1", "--verify", "--trusted-pem", str(home.anchors_path), str(ack_file)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    signed_by = verify_envelope(parse_xml(ack.raw), TrustStore(tuple(home.anchors())), datetime.now(UTC)).signer
    assert signed_by == token_certificate  # the token's key, not the key file
