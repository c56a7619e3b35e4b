"""Fixtures of the pure core's tests: each signature verification runs with both XML-DSig backends."""

from __future__ import annotations

import pytest

from gateway.signature import SignaturePolicy

BACKENDS = ("signxml", "xmlsec")


@pytest.fixture(params=BACKENDS)
def policy(request: pytest.FixtureRequest) -> SignaturePolicy:
    """The contract's signature policy, checked by signxml and again by xmlsec (skipped where it is not installed)."""
    if request.param == "xmlsec":
        pytest.importorskip("xmlsec", reason="python-xmlsec is not installed (pip install -e '.[fast]')")
    return SignaturePolicy(backend=request.param)
