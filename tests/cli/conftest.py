from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cli import Cli, cli_fixture


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A hub state folder and broker vhost of the module's own, driven through the `i2es` command."""
    yield from cli_fixture(tmp_path_factory)
