"""A node of a three-node cluster killed while the hub runs: the quorum queues elect leaders on the other nodes, the
senders resend what was not acknowledged, and every document still reaches its recipient.

The queues are declared through node 1, so their leaders start there; the hub and the national systems use node 2,
so the crash takes the leaders away from under them but not their connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench._site import Site, bench_site
from tests.support.cluster import Cluster, ClusterNode
from tests.support.faults import MESSAGES, Exchange, HubProcess

pytestmark = pytest.mark.reliability

SEND_TIMEOUT = 120.0  # per message, resends included: a stalled hub fails the test instead of hanging it


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The running cluster if there is one; else one started here, and stopped afterwards."""
    nodes = Cluster()
    started = not nodes.is_up()
    if started:
        nodes.start()
    yield nodes
    if started:
        nodes.stop()


@pytest.fixture
def cluster_site(cluster: Cluster, tmp_path: Path) -> Iterator[Site]:
    # Declared through node 1; the vhost and the users are administered through node 2, which stays up, so that
    # they are removed even if node 1 does not come back.
    fields = {"broker_url": cluster.node(1).broker_url, "management_url": cluster.node(2).management_url}
    with bench_site(senders=2, receivers=2, parent=tmp_path, **fields) as made:
        yield made


def on_node(site: Site, node: ClusterNode) -> Site:
    """The same hub, reached through another node."""
    return replace(site, settings=site.settings.model_copy(update=node.settings_fields))


async def until(condition: Callable[[], bool], sending: asyncio.Task[None], timeout: float = 60.0) -> None:
    """Until ``condition`` holds, the sending has ended, or the time is up."""
    deadline = time.monotonic() + timeout
    while not condition() and not sending.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_a_cluster_node_killed_under_load_loses_nothing(
    cluster: Cluster, cluster_site: Site, tmp_path: Path
) -> None:
    first, second = cluster.node(1), cluster.node(2)
    leaders = cluster.leaders(cluster_site.vhost)
    assert leaders and set(leaders.values()) == {first.name}, f"the queues' leaders start on node 1: {leaders}"
    site = on_node(cluster_site, second)
    hub = HubProcess(site, tmp_path / "hub.log")
    exchange = Exchange.of(site)
    acknowledged = exchange.acknowledgements
    hub.start()
    await exchange.connect()
    killed_at = restarted_at = -1
    down = False
    started = time.monotonic()
    try:
        sending = asyncio.create_task(exchange.send_all(timeout=SEND_TIMEOUT))
        await until(lambda: len(acknowledged) >= MESSAGES // 3, sending)
        killed_at = len(acknowledged)
        await asyncio.to_thread(cluster.kill, 1)
        down = True
        await until(lambda: len(acknowledged) >= 2 * MESSAGES // 3, sending)
        moved = cluster.leaders(cluster_site.vhost)
        restarted_at = len(acknowledged)
        await asyncio.to_thread(cluster.restart, 1)
        down = False
        await sending
        await exchange.wait_delivered(timeout=60.0)
    finally:
        await exchange.close()
        stopped = hub.stop()
        if down:
            cluster.restart(1)
        figures = exchange.figures()
        print()
        print(
            figures.line(
                f"node 1 SIGKILLed after {killed_at} acknowledgements, started again after {restarted_at}, "
                f"{time.monotonic() - started:.1f} s"
            )
        )
    print(f"leaders while node 1 was down: {sorted(set(moved.values()))}")
    assert first.name not in moved.values(), "every queue elected a leader on a node that was up"
    assert figures.lost == 0
    assert figures.acknowledged == figures.sent and figures.rejected == 0, "every message acknowledged ACCEPTED"
    assert stopped == 0, "the hub went on running through the crash and stopped cleanly"
