"""Fixtures of the pure core's tests: each signature verification runs with both XML-DSig backends; a kept hub's
checks on a real ledger and registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.pipeline import Checks
from gateway.reading import ReadingPolicy
from gateway.settings import PROJECT_ROOT
from gateway.signature import SignaturePolicy
from tests.support.checks import checks_in
from tests.support.kept import NOW
from tests.support.pki import Pki

BACKENDS = ("signxml", "xmlsec")


@pytest.fixture(params=BACKENDS)
def policy(request: pytest.FixtureRequest) -> SignaturePolicy:
    """The contract's signature policy, checked by signxml and again by xmlsec (skipped where it is not installed)."""
    if request.param == "xmlsec":
        pytest.importorskip("xmlsec", reason="python-xmlsec is not installed (pip install -e '.[fast]')")
    return SignaturePolicy(backend=request.param)


@pytest.fixture
def kept_checks(pki: Pki, tmp_path: Path) -> Iterator[Checks]:
    """The checks of a hub on a fresh SQLite ledger and registry (CH and DE registered), at ``kept.NOW``."""
    reading = ReadingPolicy.load(PROJECT_ROOT / "schemas", 1024 * 1024)
    with checks_in(tmp_path, pki, reading, ("CH", "DE"), NOW) as checks:
        yield checks
