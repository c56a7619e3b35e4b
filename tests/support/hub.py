"""Helpers for tests that run the real hub on the real broker."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika

from adapters import Adapter, AdapterConfig, Delivery
from gateway.admin import vhost_url
from gateway.broker.service import HubService
from gateway.home import Home
from gateway.runtime import HubParts
from gateway.settings import Settings


def participant_password(code: str) -> str:
    """The development broker password the test session gives each participant."""
    return f"{code.lower()}-secret"


@dataclass
class RunningHub:
    settings: Settings
    parts: HubParts
    service: HubService

    @property
    def home(self) -> Home:
        return Home(self.settings.home)


def adapter_config(settings: Settings, code: str) -> AdapterConfig:
    home = Home(settings.home)
    return AdapterConfig(
        code=code,
        broker_url=vhost_url(settings, code, participant_password(code)),
        signer=home.participant_signer(code),
        anchors=tuple(home.anchors()),
        schema_dir=settings.schema_dir,
    )


async def drain(*adapters: Adapter) -> list[Delivery]:
    """Take whatever is waiting for these participants, acknowledged without receipts."""
    taken = []
    for adapter in adapters:
        while True:
            try:
                delivery = await adapter.next_delivery(timeout=0.3)
            except TimeoutError:
                break
            await delivery.ack()
            taken.append(delivery)
    return taken


async def participant_channel(settings: Settings, code: str) -> aio_pika.abc.AbstractRobustConnection:
    return await aio_pika.connect_robust(
        vhost_url(settings, code, participant_password(code)),
        client_properties={"connection_name": f"test-{code}"},
    )
