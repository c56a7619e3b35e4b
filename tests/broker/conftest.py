"""A real hub on the real RabbitMQ node (started by scripts/broker), in its own vhost for the session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest

from adapters import Adapter, AdapterConfig
from gateway.admin import add_participant, initialize, management, vhost_url
from gateway.broker.service import HubService, connect
from gateway.home import Home
from gateway.runtime import HubParts, utc_now
from gateway.settings import Settings

PARTICIPANTS = {"CH": "Swissmedic", "DE": "BfArM", "IN": "Narcotics Commissioner of India"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/broker" in str(item.fspath):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def hub_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("hub")
    settings = Settings(home=home, vhost=f"i2es-test-{uuid.uuid4().hex[:8]}", delivery_limit=3)
    try:
        management(settings).overview()
    except Exception as exc:
        pytest.exit(f"RabbitMQ is not running ({exc}); start it with scripts/broker start", returncode=3)
    now = utc_now()
    initialize(settings, now)
    for code, name in PARTICIPANTS.items():
        add_participant(settings, code, name, now, password=f"{code.lower()}-secret")
    yield settings
    management(settings).delete_vhost(settings.vhost)


@dataclass
class RunningHub:
    settings: Settings
    parts: HubParts
    service: HubService

    @property
    def home(self) -> Home:
        return Home(self.settings.home)


@pytest.fixture(scope="session")
async def hub(hub_settings: Settings) -> AsyncIterator[RunningHub]:
    parts = HubParts(hub_settings)
    connection = await connect(vhost_url(hub_settings), "i2es-hub-test")
    service = HubService(parts.make_hub, connection, hub_settings.prefetch)
    task = asyncio.create_task(service.run())
    yield RunningHub(hub_settings, parts, service)
    service.stop()
    await task
    await connection.close()
    parts.close()


def adapter_config(settings: Settings, code: str) -> AdapterConfig:
    home = Home(settings.home)
    return AdapterConfig(
        code=code,
        broker_url=vhost_url(settings, code, f"{code.lower()}-secret"),
        signer=home.participant_signer(code),
        anchors=tuple(home.anchors()),
        schema_dir=settings.schema_dir,
    )


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
    await drain(adapters)


@pytest.fixture
async def de(adapters: dict[str, Adapter]) -> AsyncIterator[Adapter]:
    yield adapters["DE"]
    await drain(adapters)


async def drain(adapters: dict[str, Adapter]) -> None:
    """Acknowledge whatever a test left undelivered, so the next one starts clean."""
    for adapter in adapters.values():
        while True:
            try:
                delivery = await adapter.next_delivery(timeout=0.2)
            except TimeoutError:
                break
            await delivery._incoming.ack()


async def participant_channel(settings: Settings, code: str) -> aio_pika.abc.AbstractRobustConnection:
    return await aio_pika.connect_robust(
        vhost_url(settings, code, f"{code.lower()}-secret"),
        client_properties={"connection_name": f"test-{code}"},
    )


@pytest.fixture
def examples() -> Path:
    from tests.support.pki import EXAMPLES

    return EXAMPLES
