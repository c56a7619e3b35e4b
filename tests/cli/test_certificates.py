"""The security team's certificate lifecycle, with openssl on the other side, through the `i2es` command."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.pki import EXAMPLES

pytestmark = pytest.mark.broker


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=check)


def request(tmp_path: Path, cn: str, curve: str = "P-256") -> Path:
    key, csr = tmp_path / f"{cn}.key", tmp_path / f"{cn}.csr"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}/O=Authority", "-out", str(csr))
    return csr


@pytest.fixture(scope="module")
def hub(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    cli("init")
    for code in ("CH", "DE"):
        cli("participant", "add", code, "--name", f"{code} authority", "--password", f"{code}-pass")
    process = cli.start_hub()
    yield process
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def anchors(cli: Cli, hub: subprocess.Popen[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("anchors") / "hub-ca.pem"
    path.write_text(cli("ca", "show").stdout)
    return path


def serials(cli: Cli, code: str, profile: str) -> list[str]:
    return [c["serial"] for c in json.loads(cli("cert", "list", code, "--json").stdout) if c["profile"] == profile]


def test_a_tls_client_certificate_is_issued_from_an_openssl_request(cli: Cli, anchors: Path, tmp_path: Path) -> None:
    out = tmp_path / "de-tls.pem"
    issued = json.loads(cli("cert", "issue", "DE", "--profile", "tls", "--csr", str(request(tmp_path, "DE")),
                            "--out", str(out), "--json").stdout)  # fmt: skip
    assert issued["code"] == "DE" and issued["key"] is None  # the key never left the requester
    verified = openssl("verify", "-purpose", "sslclient", "-CAfile", str(anchors), "-untrusted", str(out), str(out))
    assert verified.returncode == 0 and ": OK" in verified.stdout
    text = openssl("x509", "-in", str(out), "-noout", "-text").stdout
    assert "TLS Web Client Authentication" in text and "O = DE authority" in text


def test_a_broker_server_certificate_names_its_host(cli: Cli, anchors: Path, tmp_path: Path) -> None:
    out = tmp_path / "broker.pem"
    cli("cert", "issue", "HUB", "--profile", "server", "--dns", "broker.hub.example", "--dns", "localhost",
        "--out", str(out))  # fmt: skip
    verified = openssl("verify", "-purpose", "sslserver", "-CAfile", str(anchors), "-untrusted", str(out), str(out))
    assert verified.returncode == 0
    text = openssl("x509", "-in", str(out), "-noout", "-ext", "subjectAltName").stdout
    assert "DNS:broker.hub.example" in text and "DNS:localhost" in text


def test_a_pkcs12_keystore_opens_with_its_passphrase_only(cli: Cli, hub: subprocess.Popen[str], tmp_path: Path) -> None:
    keystore = tmp_path / "ch.p12"
    cli("cert", "issue", "CH", "--profile", "tls", "--out", str(tmp_path / "ch.pem"), "--p12", str(keystore),
        "--passphrase", "correct horse")  # fmt: skip
    listing = openssl("pkcs12", "-in", str(keystore), "-passin", "pass:correct horse", "-nokeys")
    assert "subject=CN = CH" in listing.stdout and "Issuing CA" in listing.stdout
    assert openssl("pkcs12", "-in", str(keystore), "-passin", "pass:wrong", "-nokeys", check=False).returncode != 0


def test_a_request_for_an_unknown_curve_is_refused(cli: Cli, hub: subprocess.Popen[str], tmp_path: Path) -> None:
    result = cli("cert", "issue", "DE", "--profile", "tls", "--csr", str(request(tmp_path, "DE", "secp256k1")),
                 "--out", str(tmp_path / "x.pem"), check=False)  # fmt: skip
    assert result.returncode == 2 and "secp256k1" in result.stderr


def test_show_gives_validity_fingerprints_and_status(cli: Cli, hub: subprocess.Popen[str]) -> None:
    (serial,) = serials(cli, "CH", "signing")
    shown = json.loads(cli("cert", "show", serial, "--json").stdout)
    assert shown["serial"] == serial and shown["status"] == "valid" and shown["profile"] == "signing"
    assert len(shown["sha256"].split(":")) == 32


def test_expiring_lists_only_certificates_within_the_horizon(cli: Cli, hub: subprocess.Popen[str]) -> None:
    assert json.loads(cli("cert", "list", "--expiring", "30d", "--json").stdout) == []
    within_three_years = json.loads(cli("cert", "list", "--expiring", "1100d", "--json").stdout)
    assert {c["code"] for c in within_three_years} >= {"CH", "DE", "HUB"}


def test_after_renewal_both_certificates_sign_during_the_overlap(cli: Cli, hub: subprocess.Popen[str]) -> None:
    (old,) = serials(cli, "DE", "signing")
    body = EXAMPLES / "Clarification.xml"
    assert json.loads(cli("send", "--as", "DE", str(body), "--json").stdout)[0]["status"] == "ACCEPTED"
    old_key = (cli.home / "participants" / "DE" / "signing.key").read_bytes()
    old_chain = (cli.home / "participants" / "DE" / "signing.pem").read_bytes()

    renewed = json.loads(cli("cert", "renew", old, "--json").stdout)
    assert renewed["replaces"] == old and renewed["serial"] != old
    assert set(serials(cli, "DE", "signing")) == {old, renewed["serial"]}
    assert json.loads(cli("send", "--as", "DE", str(body), "--json").stdout)[0]["status"] == "ACCEPTED"

    # A system that has not switched yet still signs with the old key: accepted while it is valid.
    (cli.home / "participants" / "DE" / "signing.key").write_bytes(old_key)
    (cli.home / "participants" / "DE" / "signing.pem").write_bytes(old_chain)
    assert json.loads(cli("send", "--as", "DE", str(body), "--json").stdout)[0]["status"] == "ACCEPTED"


def test_revoked_as_superseded_the_certificate_is_on_the_crl_and_earlier_messages_stay_valid(
    cli: Cli, anchors: Path, tmp_path: Path
) -> None:
    old = serials(cli, "DE", "signing")[0]
    revoked = json.loads(cli("cert", "revoke", old, "--reason", "superseded", "--json").stdout)
    assert revoked["flagged_messages"] == 0
    crl = tmp_path / "crl.pem"
    crl.write_text(cli("crl").stdout)
    listing = openssl("crl", "-in", str(crl), "-noout", "-text").stdout
    assert old.upper() in listing and "Superseded" in listing
    pem = tmp_path / "old.pem"
    pem.write_text(openssl("x509", "-in", str(cli.home / "participants" / "DE" / "signing.pem")).stdout)
    check = openssl("verify", "-crl_check", "-CAfile", str(anchors), "-CRLfile", str(crl), str(pem), check=False)
    assert check.returncode != 0 and "revoked" in check.stdout + check.stderr
    # Its messages are refused from now on; those it signed before are not flagged.
    sent = cli("send", "--as", "DE", str(EXAMPLES / "Clarification.xml"), check=False)
    assert "CERTIFICATE_REVOKED" in sent.stdout
    rows = json.loads(cli("ledger", "show", "--json").stdout)
    assert not any(r["flag"] for r in rows if r["signer_serial"] == old)


def test_revoked_for_key_compromise_the_messages_it_signed_are_flagged(
    cli: Cli, hub: subprocess.Popen[str], tmp_path: Path
) -> None:
    (serial,) = serials(cli, "CH", "signing")
    text = (EXAMPLES / "Clarification.xml").read_text(encoding="utf-8")
    bare = tmp_path / "clarification.xml"  # a bare document, wrapped in an envelope from CH by the command
    bare.write_text(text[text.index("<Clarification") : text.index("</Body>")], encoding="utf-8")
    cli("send", "--as", "CH", "--to", "DE", str(bare))
    signed_by_it = [r for r in json.loads(cli("ledger", "show", "--json").stdout) if r["signer_serial"] == serial]
    revoked = json.loads(cli("cert", "revoke", serial, "--reason", "keyCompromise", "--json").stdout)
    assert revoked["flagged_messages"] == len(signed_by_it) > 0
    rows = json.loads(cli("ledger", "show", "--json").stdout)
    assert all(r["flag"] == "KEY_COMPROMISE" for r in rows if r["signer_serial"] == serial)
    assert "FLAGGED KEY_COMPROMISE" in cli("ledger", "show").stdout


def test_every_ca_action_is_in_the_audit_log_with_who_and_when(cli: Cli, hub: subprocess.Popen[str]) -> None:
    cli("crl", "--update", "--actor", "security-officer-2")
    entries = json.loads(cli("ca", "audit", "--json").stdout)
    actions = [e["action"] for e in entries]
    assert actions[0] == "init"
    assert {"issue", "renew", "revoke", "crl"} <= set(actions)
    assert entries[-1]["actor"] == "security-officer-2" and entries[-1]["action"] == "crl"
    assert all(e["at"] and e["actor"] for e in entries)


def test_init_can_write_the_root_key_elsewhere_and_make_an_rsa_ca(tmp_path: Path) -> None:
    from tests.support.cli import cli_fixture

    class Factory:
        def mktemp(self, name: str) -> Path:
            path = tmp_path / name
            path.mkdir()
            return path

    tools = cli_fixture(Factory())  # type: ignore[arg-type]
    cli = next(tools)
    try:
        offline = tmp_path / "removable" / "root.key"
        cli("init", "--ca-key", "rsa3072", "--root-key-out", str(offline))
        assert offline.exists() and not (cli.home / "ca" / "root.key").exists()
        root = openssl("x509", "-in", str(cli.home / "ca" / "root.pem"), "-noout", "-text").stdout
        assert "Public-Key: (3072 bit)" in root
        key = openssl("pkey", "-in", str(offline), "-pubout").stdout
        assert key == openssl("x509", "-in", str(cli.home / "ca" / "root.pem"), "-noout", "-pubkey").stdout

        # Later, the root key comes back from offline once, to make a new issuing CA.
        wrong = tmp_path / "wrong.key"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", str(wrong))
        refused = cli("ca", "rotate-issuing", "--root-key", str(wrong), check=False)
        assert refused.returncode == 2 and "not the root CA's key" in refused.stderr
        cli("ca", "rotate-issuing", "--root-key", str(offline))
        anchors = tmp_path / "anchors.pem"
        anchors.write_text(cli("ca", "show").stdout)
        assert anchors.read_text().count("BEGIN CERTIFICATE") == 3
        old_hub = cli.home / "hub" / "signing.pem"  # issued by the old issuing CA
        assert openssl("verify", "-CAfile", str(anchors), str(old_hub)).returncode == 0
        cli("participant", "add", "DE", "--name", "BfArM")
        new_chain = cli.home / "participants" / "DE" / "signing.pem"
        assert openssl("verify", "-CAfile", str(anchors), str(new_chain)).returncode == 0
        issuers = {openssl("x509", "-in", str(p), "-noout", "-issuer").stdout for p in (old_hub, new_chain)}
        assert len(issuers) == 1  # the same issuing CA name, a new key: only the signatures tell them apart
        assert "rotate" in [e["action"] for e in json.loads(cli("ca", "audit", "--json").stdout)]
    finally:
        next(tools, None)
