"""Shared fixtures: real keys, and a real hub on the real RabbitMQ node (scripts/broker) in its own vhost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters import Adapter
from gateway.admin import add_participant, initialize, management, vhost_url
from gateway.broker.service import connect
from gateway.runtime import HubParts, utc_now
from gateway.settings import Settings
from tests.support.hub import RunningHub, adapter_config, drain, participant_password
from tests.support.pki import Pki, make_pki

PARTICIPANTS = {"CH": "Swissmedic", "DE": "BfArM", "IN": "Narcotics Commissioner of India"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "hub_settings" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="session")
def hub_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("hub")
    # Two worker processes whatever the machine: what arrives behind a backlog takes the workers' path.
    settings = Settings(
        home=home, vhost=f"i2es-test-{uuid.uuid4().hex[:8]}", delivery_limit=3, schedule_seconds=0.5, workers=2
    )
    try:
        management(settings).overview()
    except Exception as exc:
        pytest.exit(f"RabbitMQ is not running ({exc}); start it with scripts/broker start", returncode=3)
    now = utc_now()
    initialize(settings, now)
    for code, name in PARTICIPANTS.items():
        add_participant(settings, code, name, now, password=participant_password(code))
    yield settings
    management(settings).delete_vhost(settings.vhost)


@pytest.fixture(scope="session")
async def hub(hub_settings: Settings) -> AsyncIterator[RunningHub]:
    parts = HubParts(hub_settings)
    connection = await connect(vhost_url(hub_settings), "i2es-hub-test")
    service = parts.service(connection)
    task = asyncio.create_task(service.run())
    yield RunningHub(hub_settings, parts, service)
    service.stop()
    await task
    await connection.close()
    parts.close()


@pytest.fixture(scope="session")
async def adapters(hub: RunningHub) -> AsyncIterator[dict[str, Adapter]]:
    connected = {code: Adapter(adapter_config(hub.settings, code)) for code in PARTICIPANTS}
    for adapter in connected.values():
        await adapter.connect()
    yield connected
    for adapter in connected.values():
        await adapter.close()


@pytest.fixture
async def ch(adapters: dict[str, Adapter]) -> AsyncIterator[Adapter]:
    yield adapters["CH"]
    await drain(*adapters.values())


@pytest.fixture
async def de(adapters: dict[str, Adapter]) -> AsyncIterator[Adapter]:
    yield adapters["DE"]
    await drain(*adapters.values())


@pytest.fixture
def examples() -> Path:
    from tests.support.pki import EXAMPLES

    return EXAMPLES
