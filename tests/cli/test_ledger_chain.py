"""A tamper-evident ledger: `i2es ledger verify` finds a hand-edited, removed or reordered entry, and a
signed extract can be checked by an auditor with xmlsec1 alone."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.pki import EXAMPLES

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def ledger(cli: Cli) -> Iterator[Path]:
    cli("init")
    for code in ("DE", "CH"):
        cli("participant", "add", code, "--name", f"{code} authority", "--password", f"{code}-pass")
    hub = cli.start_hub()
    try:
        for _ in range(3):
            cli("send", "--as", "DE", str(EXAMPLES / "Clarification.xml"))
        cli("send", "--as", "DE", "--to", "ZZ", str(EXAMPLES / "Clarification.xml"), check=False)  # refused
    finally:
        hub.terminate()
        hub.wait(timeout=30)
    yield cli.home / "hub.sqlite"


def edited(cli: Cli, ledger: Path, tmp_path: Path, statement: str) -> subprocess.CompletedProcess[str]:
    """Run `i2es ledger verify` on a copy of the ledger changed by SQL statements."""
    copy = tmp_path / "hub.sqlite"
    shutil.copy(ledger, copy)
    with sqlite3.connect(copy) as db:
        db.executescript(statement)
    return cli("ledger", "verify", check=False, env={"I2ES_LEDGER_URL": f"sqlite:///{copy}"})


def test_an_untouched_ledger_verifies(cli: Cli, ledger: Path) -> None:
    report = json.loads(cli("ledger", "verify", "--json").stdout)
    assert report["intact"] and report["entries"] == 4 and report["first"] == 1 and report["last"] == 4


@pytest.mark.parametrize(
    ("statement", "found"),
    [
        ("UPDATE message_bytes SET body = replace(body, 'QUESTION', 'ANSWER') WHERE sequence = 2", "#2"),
        ("DELETE FROM message_bytes WHERE sequence = 2", "#2"),
        (
            "UPDATE message_bytes SET sequence = -1 WHERE sequence = 1; "
            "UPDATE message_bytes SET sequence = 1 WHERE sequence = 2; "
            "UPDATE message_bytes SET sequence = 2 WHERE sequence = -1",
            "#1",
        ),
        ("UPDATE messages SET reasons = '[]', status = 'ACCEPTED' WHERE sequence = 4", "#4"),
        ("UPDATE messages SET recipient = 'FR' WHERE sequence = 1", "#1"),
        ("DELETE FROM messages WHERE sequence = 3", "#3 is missing"),
        ("UPDATE messages SET received_at = '2026-01-01T00:00:00+00:00' WHERE sequence = 2", "#2"),
    ],
    ids=["body", "bytes removed", "bytes swapped", "outcome", "recipient", "removed", "time"],
)
def test_a_hand_edited_ledger_is_caught(cli: Cli, ledger: Path, tmp_path: Path, statement: str, found: str) -> None:
    result = edited(cli, ledger, tmp_path, statement)
    assert result.returncode == 1
    assert result.stdout.startswith("LEDGER ALTERED") and found in result.stdout


def test_reordered_entries_are_caught(cli: Cli, ledger: Path, tmp_path: Path) -> None:
    copy = tmp_path / "hub.sqlite"
    shutil.copy(ledger, copy)
    with sqlite3.connect(copy) as db:  # swap the content of entries 1 and 2, keeping their sequence numbers
        db.execute("UPDATE messages SET sequence = -1 WHERE sequence = 1")
        db.execute("UPDATE messages SET sequence = 1 WHERE sequence = 2")
        db.execute("UPDATE messages SET sequence = 2 WHERE sequence = -1")
    result = cli("ledger", "verify", check=False, env={"I2ES_LEDGER_URL": f"sqlite:///{copy}"})
    assert result.returncode == 1 and "#1" in result.stdout


def test_a_signed_extract_verifies_with_xmlsec1_and_the_i2es_command(cli: Cli, ledger: Path, tmp_path: Path) -> None:
    extract = tmp_path / "extract.xml"
    cli("ledger", "export", "--from", "2", "--to", "4", "--out", str(extract))
    anchors = tmp_path / "hub-ca.pem"
    anchors.write_text(cli("ca", "show").stdout)
    xmlsec = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(anchors), str(extract)],
                            capture_output=True, text=True)  # fmt: skip
    assert xmlsec.returncode == 0, xmlsec.stderr
    report = json.loads(cli("ledger", "verify", "--extract", str(extract), "--anchors", str(anchors), "--json").stdout)
    assert report["intact"] and (report["first"], report["last"]) == (2, 4)
    assert report["head"] == json.loads(cli("ledger", "verify", "--json").stdout)["head"]

    forged = tmp_path / "forged.xml"
    forged.write_text(extract.read_text().replace("<status>REJECTED</status>", "<status>ACCEPTED</status>"))
    assert subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(anchors), str(forged)],
                          capture_output=True).returncode != 0  # fmt: skip
    assert cli("ledger", "verify", "--extract", str(forged), check=False).returncode == 2
