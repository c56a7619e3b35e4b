"""The attack catalogue (tests/data/attacks) through the pure checks, once with each XML-DSig backend.

tests/broker/test_attacks.py sends the catalogue through the running hub, whose policy uses the
default backend; here every attack, freshly signed and dated, goes through ``examine`` with signxml
and with xmlsec, and must get the reason code index.csv gives (or be accepted, for a positive control).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.pipeline import Checks, Inbound, examine
from gateway.reading import ReadingPolicy
from gateway.settings import PROJECT_ROOT
from gateway.signature import SignaturePolicy
from tests.broker.test_attacks import properties_of
from tests.data.attacks import generate
from tests.support.checks import checks_in
from tests.support.pki import Pki

with generate.INDEX.open(encoding="utf-8", newline="") as index:
    ROWS = list(csv.DictReader(index))

NOW = datetime.now(UTC)
READING = ReadingPolicy.load(PROJECT_ROOT / "schemas", generate.MAX_BYTES)


@pytest.fixture(scope="module")
def keys(pki: Pki) -> generate.Keys:
    """DE's signing key from the test CA, and an RSA key the same CA certifies for DE."""
    return generate.Keys(pki.signers["DE"], pki.signer("DE", key=rsa.generate_private_key(65537, 2048)))


@pytest.fixture
def checks(pki: Pki, policy: SignaturePolicy, tmp_path: Path) -> Iterator[Checks]:
    with checks_in(tmp_path, pki, READING, ("CH", "DE", "IN"), NOW, policy) as checks:
        yield checks


@pytest.mark.parametrize("row", ROWS, ids=[row["file"].removesuffix(".xml") for row in ROWS])
def test_every_attack_gets_its_reason_code_with_either_backend(
    checks: Checks, keys: generate.Keys, row: dict[str, str]
) -> None:
    data = generate.build(row["file"].removesuffix(".xml"), keys, NOW, max_bytes=READING.max_bytes)
    message_id, type_ = properties_of(data)
    inbound = Inbound(data, "DE", message_id, type_, "application/xml", 2)
    verdict = examine(inbound, checks, NOW)
    if row["expected"] == generate.ACCEPTED:
        assert (verdict.accepted, verdict.reasons) == (True, ())
    else:
        assert [finding.code for finding in verdict.reasons] == [row["expected"]], verdict.reasons
