"""The broker restarted while documents flow: the hub and the adapters reconnect by themselves, the senders resend
what was not acknowledged, and nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._site import Site, bench_site
from tests.support.faults import Exchange, HubProcess, SpareNode

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpareNode]:
    spare = SpareNode("i2es-restart", 5693, tmp_path_factory.mktemp("node"))
    spare.run("reset")
    spare.run("start")
    yield spare
    spare.run("reset")


@pytest.fixture
def spare_site(node: SpareNode, tmp_path: Path) -> Iterator[Site]:
    with bench_site(senders=2, receivers=2, parent=tmp_path, **node.settings_fields) as made:
        yield made


async def test_a_broker_restarted_under_load_loses_nothing(node: SpareNode, spare_site: Site, tmp_path: Path) -> None:
    hub = HubProcess(spare_site, tmp_path / "hub.log")
    exchange = Exchange.of(spare_site)

    async def restart_broker() -> None:
        await asyncio.to_thread(node.run, "stop")
        await asyncio.to_thread(node.run, "start")

    restarted_at = await exchange.through_fault(hub, restart_broker)
    stopped = hub.stop()  # its exit status, from the stop at the end of the stream
    figures = exchange.figures()
    print(figures.line(f"broker restarted after {restarted_at} acknowledgements"))
    assert figures.lost == 0
    assert figures.acknowledged == figures.sent and figures.rejected == 0
    assert stopped == 0, "the hub went on running through the restart and stopped cleanly"
