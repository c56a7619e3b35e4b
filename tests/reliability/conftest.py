"""A hub of each test's own, in a fresh vhost, run as an operator runs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench._site import Site, bench_site
from tests.support.postgres import postgres_ledger_url  # noqa: F401 - a fixture, for the tests of two hubs


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with bench_site(senders=2, receivers=2, parent=tmp_path_factory.mktemp("site")) as made:
        yield made
