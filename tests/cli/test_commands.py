"""The `i2es` command as a security team or a national system's developer uses it, process by process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.admin import management
from gateway.settings import Settings
from tests.support.cli import I2ES, Cli
from tests.support.pki import EXAMPLES

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def running(cli: Cli) -> Iterator[subprocess.Popen[str]]:
    cli("init")
    cli("participant", "add", "CH", "--name", "Swissmedic", "--password", "ch-pass")
    cli("participant", "add", "DE", "--name", "BfArM", "--password", "de-pass")
    hub = cli.start_hub()
    yield hub
    if hub.poll() is None:
        hub.kill()
        hub.wait()


def test_init_is_idempotent_and_keeps_the_ca(cli: Cli, running: subprocess.Popen[str]) -> None:
    before = cli("ca", "show").stdout
    report = json.loads(cli("init", "--json").stdout)
    assert report["created_ca"] is False and report["created_hub_certificate"] is False
    assert cli("ca", "show").stdout == before


def test_ca_show_prints_the_root_then_the_issuing_ca(cli: Cli, running: subprocess.Popen[str]) -> None:
    from cryptography import x509

    certificates = x509.load_pem_x509_certificates(cli("ca", "show").stdout.encode())
    assert [c.subject.rfc4514_string() for c in certificates] == [
        "O=I2ES Hub,CN=I2ES Hub Root CA",
        "O=I2ES Hub,CN=I2ES Hub Issuing CA",
    ]


def openssl_csr(tmp_path: Path, cn: str, key_args: list[str]) -> Path:
    key, csr = tmp_path / f"{cn}.key", tmp_path / f"{cn}.csr"
    subprocess.run(["openssl", "genpkey", *key_args, "-out", str(key)], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={cn}/O=Authority", "-out", str(csr)],
        check=True,
        capture_output=True,
    )
    return csr


def test_a_certificate_is_issued_from_an_openssl_csr(cli: Cli, running: subprocess.Popen[str], tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "IN", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    out = tmp_path / "IN.pem"
    cli("participant", "add", "IN", "--name", "NCB India", "--csr", str(csr), "--cert-out", str(out))
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(cli("ca", "show").stdout)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(anchors), "-untrusted", str(out), str(out)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    subject = subprocess.run(["openssl", "x509", "-in", str(out), "-noout", "-subject"], capture_output=True, text=True)
    assert "CN = IN" in subject.stdout


def test_a_csr_whose_cn_is_not_the_code_is_refused(cli: Cli, running: subprocess.Popen[str], tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "FR", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    result = cli(
        "participant", "add", "IT", "--name", "AIFA", "--csr", str(csr), "--cert-out", str(tmp_path / "x"), check=False
    )
    assert result.returncode == 2
    assert "CN is 'FR'" in result.stderr and result.stderr.count("\n") == 1


def test_a_weak_rsa_csr_is_refused(cli: Cli, running: subprocess.Popen[str], tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "IT", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"])
    result = cli(
        "participant", "add", "IT", "--name", "AIFA", "--csr", str(csr), "--cert-out", str(tmp_path / "x"), check=False
    )
    assert result.returncode == 2
    assert "1024 bits" in result.stderr


def test_registering_a_participant_twice_is_refused_and_keeps_its_key(cli: Cli, running: subprocess.Popen[str]) -> None:
    key = cli.home / "participants" / "CH" / "signing.key"
    before = key.read_bytes()
    result = cli("participant", "add", "CH", "--name", "Swissmedic", check=False)
    assert result.returncode == 2 and "already registered" in result.stderr
    assert key.read_bytes() == before


def test_a_bad_participant_code_is_a_clear_error(cli: Cli, running: subprocess.Popen[str]) -> None:
    result = cli("participant", "add", "germany", "--name", "x", check=False)
    assert result.returncode == 2
    assert "ISO 3166-1 alpha-2" in result.stderr


def test_send_receive_and_verify_a_document(cli: Cli, running: subprocess.Popen[str], tmp_path: Path) -> None:
    sent = json.loads(cli("send", "--as", "DE", str(EXAMPLES / "ExportAuthorization.xml"), "--json").stdout)
    assert sent[0]["status"] == "ACCEPTED" and sent[0]["ledger_sequence"] >= 1

    inbox = tmp_path / "inbox"
    lines = cli("receive", "--as", "CH", "--out", str(inbox), "--count", "1", "--timeout", "20", "--json").stdout
    received = json.loads(lines.splitlines()[0])
    assert received["message_id"] == sent[0]["message_id"] and received["verified"] is True
    assert received["receipt"] == "ACCEPTED"
    stored = Path(received["file"])
    assert stored.exists()

    verified = json.loads(cli("verify", str(stored), "--json").stdout)
    assert verified["valid"] is True and verified["signer"] == "DE"

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(stored.read_bytes().replace(b">500</", b">5000</"))
    result = cli("verify", str(tampered), check=False)
    assert result.returncode == 1
    assert result.stdout.startswith("INVALID  SIGNATURE_INVALID")


def test_send_exits_one_on_a_rejection_and_prints_the_reason(cli: Cli, running: subprocess.Popen[str]) -> None:
    result = cli("send", "--as", "DE", "--to", "ZZ", str(EXAMPLES / "ExportAuthorization.xml"), check=False)
    assert result.returncode == 1
    assert "REJECTED" in result.stdout and "UNKNOWN_RECIPIENT" in result.stdout


def test_send_refuses_an_envelope_from_someone_else(cli: Cli, running: subprocess.Popen[str]) -> None:
    result = cli("send", "--as", "DE", str(EXAMPLES / "ImportAuthorization.xml"), check=False)
    assert result.returncode == 2
    assert "From CH" in result.stderr


def test_after_revoke_the_participants_messages_are_certificate_revoked(
    cli: Cli, running: subprocess.Popen[str]
) -> None:
    cli("participant", "add", "AT", "--name", "BASG", "--password", "at-pass")
    bare = Path(cli.home) / "bare.xml"  # a bare document: the command wraps it in an envelope from AT
    text = (EXAMPLES / "Clarification.xml").read_text(encoding="utf-8")
    start, end = text.index("<Clarification"), text.index("</Clarification>") + len("</Clarification>")
    bare.write_text(text[start:end], encoding="utf-8")
    assert cli("send", "--as", "AT", "--to", "CH", str(bare)).returncode == 0
    cli("participant", "revoke", "AT")
    after = cli("send", "--as", "AT", "--to", "CH", str(bare), check=False)
    assert after.returncode == 1 and "CERTIFICATE_REVOKED" in after.stdout


def test_the_ledger_shows_every_outcome(cli: Cli, running: subprocess.Popen[str]) -> None:
    rows = json.loads(cli("ledger", "show", "--json").stdout)
    statuses = {row["status"] for row in rows}
    assert statuses == {"ACCEPTED", "REJECTED"}
    assert [row["sequence"] for row in rows] == sorted(row["sequence"] for row in rows)


def test_estimates_are_loaded_and_an_import_counts_against_them(
    cli: Cli, running: subprocess.Popen[str], tmp_path: Path
) -> None:
    figures = tmp_path / "estimates.csv"
    figures.write_text(
        "country,substance,year,quantity,unit,kind\n"
        "CH,morphine,2026,1,kg,estimate\n"
        "CH,codeine,2026,20,kg,estimate\n"
        "CH,codeine,2026,500,g,supplementary estimate\n"
    )
    assert "loaded 3 figure(s)" in cli("estimates", "load", str(figures)).stdout
    sent = cli("send", "--as", "CH", str(EXAMPLES / "ImportAuthorization.xml"))
    assert "ACCEPTED" in sent.stdout

    shown = {(r["substance"], r["kind"]): r for r in json.loads(cli("estimates", "show", "CH", "--json").stdout)}
    assert shown[("codeine", "supplementary")]["confirmed_grams"] == "20500"
    assert shown[("morphine", "estimate")]["authorized_grams"] == "376.03"

    report = cli("report", "--year", "2026", "--country", "CH", "--format", "csv").stdout.splitlines()
    assert report[0] == "country,substance,authorized_g,exported_g,received_g,estimate_g,estimate_used_percent"
    assert "CH,codeine,18417,18417,0,20500,89.8" in report  # the export named it before it was on file

    trade = cli("trade", "show", "CH-IMP-2026-004711").stdout
    assert "ImportAuthorization" in trade and "ISSUED" in trade


def test_a_bad_estimates_file_names_the_line(cli: Cli, running: subprocess.Popen[str], tmp_path: Path) -> None:
    figures = tmp_path / "bad.csv"
    figures.write_text("country,substance,year,quantity,unit,kind\nCH,morphine,2026,1e3,g,estimate\n")
    result = cli("estimates", "load", str(figures), check=False)
    assert result.returncode == 2 and "line 2" in result.stderr


def test_dlq_list_shows_what_no_one_could_be_answered_for_and_leaves_it(
    cli: Cli, running: subprocess.Popen[str]
) -> None:
    import asyncio

    import aio_pika

    from gateway.admin import vhost_url

    async def publish_without_user_id() -> None:
        settings = Settings(vhost=cli.env["I2ES_VHOST"])
        connection = await aio_pika.connect(vhost_url(settings, "DE", "de-pass"))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("i2es.inbound", ensure=False)
            await exchange.publish(aio_pika.Message(b"<orphan/>", message_id="orphan-1"), routing_key="DE")

    asyncio.run(publish_without_user_id())
    rows: list[dict[str, object]] = []
    for _ in range(50):
        rows = json.loads(cli("dlq", "list", "--json").stdout)
        if rows:
            break
        time.sleep(0.2)
    assert [r["message_id"] for r in rows] == ["orphan-1"]
    assert "user_id" in str(rows[0]["reason"]) and rows[0]["bytes"] == len(b"<orphan/>")
    assert json.loads(cli("dlq", "list", "--json").stdout) == rows  # looking does not remove it


def test_sigterm_drains_and_the_hub_exits_cleanly(cli: Cli, running: subprocess.Popen[str]) -> None:
    running.send_signal(signal.SIGTERM)
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "hub_started" and events[-1]["event"] == "hub_stopped"
    handled = [e for e in events if e["event"] == "message"]
    assert events[-1]["processed"] == len(handled)  # every message taken was finished and logged


def test_the_demo_runs_a_whole_trade_with_a_refusal_and_a_notice(tmp_path: Path) -> None:
    vhost = f"i2es-demo-test-{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run(
            [*I2ES, "demo", "--home", str(tmp_path / "demo"), "--vhost", vhost],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        management(Settings(vhost=vhost)).delete_vhost(vhost)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("hub → sender: ACCEPTED") == 3
    assert "reason SIGNATURE_INVALID" in out
    assert "reason ESTIMATE_EXCEEDED" in out and "2100.5 g above the confirmed figure of 20000 g" in out
    assert "hub → DE: Notice QUANTITY_DISCREPANCY (signed by the hub, verified)" in out
    assert "   7  ACCEPTED  ExportEndorsement      CH    DE   RECEIVED  QUANTITY_DISCREPANCY" in out
