"""The pipeline's checks on a fresh ledger and registry of their own, for the tests of the pure core."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from certs.trust import TrustStore
from gateway.ledger.store import SqliteLedger
from gateway.pipeline import Checks
from gateway.reading import ReadingPolicy
from gateway.registry import Registry
from gateway.rules.substances import Catalogue
from gateway.signature import DEFAULT_POLICY, SignaturePolicy
from tests.support.pki import Pki


@contextmanager
def checks_in(
    folder: Path,
    pki: Pki,
    reading: ReadingPolicy,
    participants: Iterable[str],
    now: datetime,
    signature: SignaturePolicy = DEFAULT_POLICY,
) -> Iterator[Checks]:
    """Checks as the hub builds them, with ``participants`` registered, in ``folder``'s ledger."""
    ledger = SqliteLedger(folder / "hub.sqlite")
    registry = Registry(folder / "hub.sqlite")
    for code in participants:
        registry.add_participant(code, code, None, now)
    try:
        yield Checks(
            reading=reading,
            trust=TrustStore(pki.anchors, revocations=registry),
            directory=registry,
            history=ledger,
            replay_window=timedelta(hours=24),
            future_skew=timedelta(minutes=5),
            trade=ledger.trade,
            catalogue=Catalogue.load(),
            signature=signature,
        )
    finally:
        ledger.close()
        registry.close()
