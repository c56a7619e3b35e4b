"""Estimate totals under any order of authorizations, cancellations and supplementary estimates."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.errors import GatewayError, ReasonCode
from gateway.ledger.model import Filing, NewEntry
from gateway.ledger.store import SqliteLedger
from gateway.rules.documents import Authorization, read_document
from gateway.rules.engine import Parties, evaluate
from gateway.rules.substances import Catalogue
from tests.support.trade import EXPORTER, IMPORTER, cancellation, import_authorization

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
CATALOGUE = Catalogue.load()
ESTIMATE = Decimal(1000)

grams = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(600), places=3)
operation = st.one_of(
    st.tuples(st.just("import"), grams),
    st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("supplementary"), grams),
)


def file(ledger: SqliteLedger, document: etree._Element, sender: str, recipient: str) -> bool:
    """Evaluate a document as the hub does and, if accepted, commit it with its effects."""
    try:
        outcome = evaluate(read_document(document), Parties(sender, recipient), ledger.trade, CATALOGUE, NOW)  # type: ignore[arg-type]
    except GatewayError as refusal:
        assert refusal.code is ReasonCode.ESTIMATE_EXCEEDED
        return False
    entry = NewEntry(None, sender, sender, recipient, etree.QName(document).localname, None, None, "0", b"",
                     "ACCEPTED", (), outcome.warnings, NOW, None)  # fmt: skip
    ledger.append(entry, lambda _: ("ack", b""), Filing(etree.tostring(document), outcome.effects))
    return True


@settings(max_examples=60, deadline=None)
@given(operations=st.lists(operation, max_size=25))
def test_an_import_is_accepted_exactly_when_it_fits_the_confirmed_figure_whatever_came_before(
    operations: list[tuple[str, object]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        ledger = SqliteLedger(Path(folder) / "hub.sqlite")
        ledger.trade.load_estimate(IMPORTER, "fentanyl", 2026, "estimate", ESTIMATE, NOW)
        supplementary = Decimal(0)
        live: list[tuple[etree._Element, Decimal]] = []
        counted = Decimal(0)
        for kind, value in operations:
            if kind == "import":
                assert isinstance(value, Decimal)
                document = import_authorization([("fentanyl", None, str(value), "g", str(value))])
                fits = counted + value <= ESTIMATE + supplementary
                assert file(ledger, document, IMPORTER, EXPORTER) is fits
                if fits:
                    live.append((document, value))
                    counted += value
            elif kind == "cancel" and live:
                assert isinstance(value, int)
                document, value_cancelled = live.pop(value % len(live))
                assert file(ledger, cancellation(document, "ImportAuthorization", IMPORTER), IMPORTER, EXPORTER)
                counted -= value_cancelled
            elif kind == "supplementary":
                assert isinstance(value, Decimal)
                supplementary = value  # a loaded figure replaces the earlier one of the same kind
                ledger.trade.load_estimate(IMPORTER, "fentanyl", 2026, "supplementary", value, NOW)
            assert ledger.trade.counted_against_estimate(IMPORTER, "fentanyl", 2026) == counted
            assert ledger.trade.estimate(IMPORTER, "fentanyl", 2026) == ESTIMATE + supplementary
        ledger.close()


def test_an_authorization_is_read_with_exact_quantities() -> None:
    document = read_document(import_authorization([("fentanyl", "citrate", "0.1", "kg", "0.0636545")]))
    assert isinstance(document, Authorization)
    (item,) = document.items
    assert item.quantity.in_grams() == Decimal(100)
    assert item.anhydrous_base.in_grams() == Decimal("63.6545")
