"""Traffic for the crash and failure tests: real adapters sending signed documents through a hub in its own
process, with the figures that say whether anything was lost.

``I2ES_FAULT_MESSAGES`` sets how many documents each test sends (a short run by default; ``scripts/reliability``
runs the long form).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from adapters import Acknowledgement, Adapter, AdapterConfig
from bench._messages import ExportAuthorizations, Outgoing, pairings, sign_many
from bench._site import Site
from gateway.settings import PROJECT_ROOT

MESSAGES = int(os.environ.get("I2ES_FAULT_MESSAGES", "300"))


@dataclass(frozen=True)
class Figures:
    sent: int
    acknowledged: int
    delivered: int
    lost: int
    duplicated: int
    rejected: int

    def line(self, what: str) -> str:
        return (
            f"{what}: sent {self.sent}, acknowledged {self.acknowledged}, delivered {self.delivered}, "
            f"lost {self.lost}, duplicated {self.duplicated}, rejected {self.rejected}"
        )


class HubProcess:
    """`i2es gateway run` in a child process, as an operator runs it: started, killed, started again."""

    def __init__(self, site: Site, log: Path, **environment: str) -> None:
        self.site = site
        self.log = log
        self.environment = {**site.hub_environment(), **environment}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "run"],
                cwd=PROJECT_ROOT,
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while b'"hub_started"' not in self.log.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no drain, no clean close; what it held goes back to the queues."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def said(self, event: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if f'"{event}"' in line]


@dataclass
class Exchange:
    """Senders that resend until acknowledged, as a careful national system does; receivers that store each
    delivery and acknowledge it."""

    site: Site
    outgoing: list[Outgoing]
    resend_after: float = 5.0
    acknowledgements: dict[str, Acknowledgement] = field(default_factory=dict)
    delivered: Counter[str] = field(default_factory=Counter)
    arrivals: list[str] = field(default_factory=list)  # MessageIds in the order they arrived
    notices: list[bytes] = field(default_factory=list)
    adapters: dict[str, Adapter] = field(default_factory=dict)
    _receiving: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def of(cls, site: Site, count: int = MESSAGES) -> Exchange:
        factory = ExportAuthorizations(site.signers())
        return cls(site, sign_many(factory, count, pairings(site.senders, site.receivers)))

    def config(self, code: str) -> AdapterConfig:
        return AdapterConfig(
            code, self.site.participant_url(code), self.site.home.participant_signer(code), self.site.anchors()
        )

    async def connect(self, *, receivers: bool = True, only: tuple[str, ...] | None = None) -> None:
        codes = only or (self.site.senders + (self.site.receivers if receivers else ()))
        for code in codes:
            if code not in self.adapters:
                adapter = Adapter(self.config(code))
                await adapter.connect()
                self.adapters[code] = adapter
                self._receiving.append(asyncio.create_task(self._receive(adapter)))

    async def _receive(self, adapter: Adapter) -> None:
        while True:
            delivery = await adapter.next_delivery()
            header = delivery.header
            if header is not None and header.type == "Notice":
                self.notices.append(delivery.raw)
            elif header is not None:
                self.delivered[header.message_id] += 1  # stored: then acknowledged
                self.arrivals.append(header.message_id)
            try:
                await delivery.ack()
            except Exception:  # its channel is gone: the broker delivers it again, counted as a duplicate
                continue

    async def send_all(self, concurrency: int = 32, timeout: float = 300.0) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def send(message: Outgoing) -> None:
            async with gate:
                ack = await self.adapters[message.sender].send_signed(
                    message.body, timeout=timeout, resend_after=self.resend_after
                )
                self.acknowledgements[message.message_id] = ack

        await asyncio.gather(*(send(m) for m in self.outgoing))

    async def through_fault(self, hub: HubProcess, fault: Callable[[], Awaitable[None]]) -> int:
        """Send everything with ``hub`` running, doing ``fault`` once a third is acknowledged; wait for every
        delivery. Returns how many were acknowledged when the fault began."""
        hub.start()
        await self.connect()
        try:
            sending = asyncio.create_task(self.send_all())
            while len(self.acknowledgements) < len(self.outgoing) // 3:
                await asyncio.sleep(0.02)
            at = len(self.acknowledgements)
            await fault()
            await sending
            await self.wait_delivered()
        finally:
            await self.close()
            hub.stop()
        return at

    async def wait_delivered(self, timeout: float = 120.0) -> None:
        """Until every document has arrived at its recipient, or the time is up."""
        expected = {m.message_id for m in self.outgoing}
        deadline = time.monotonic() + timeout
        while not expected <= set(self.delivered) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # a late duplicate, if any, is counted too

    def figures(self) -> Figures:
        expected = {m.message_id for m in self.outgoing}
        return Figures(
            sent=len(self.outgoing),
            acknowledged=len(self.acknowledgements),
            delivered=len(expected & set(self.delivered)),
            lost=len(expected - set(self.delivered)),
            duplicated=sum(n - 1 for n in self.delivered.values() if n > 1),
            rejected=sum(1 for a in self.acknowledgements.values() if not a.accepted),
        )

    async def close(self) -> None:
        for task in self._receiving:
            task.cancel()
        for adapter in self.adapters.values():
            await adapter.close()


BROKER = PROJECT_ROOT / "scripts" / "broker"


class SpareNode:
    """A RabbitMQ node of its own (scripts/broker with another name, state folder and ports), to restart at will
    without disturbing the node the other tests use."""

    def __init__(self, name: str, amqp_port: int, folder: Path) -> None:
        self.amqp_port = amqp_port
        self.management_port = amqp_port + 10000
        config = folder / "rabbitmq.conf"
        text = (PROJECT_ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
        text = text.replace(":5672", f":{amqp_port}").replace("port = 15672", f"port = {self.management_port}")
        config.write_text(text)
        self.env = {
            **os.environ,
            "I2ES_BROKER_DIR": str(PROJECT_ROOT / ".run" / name),
            "I2ES_BROKER_CONFIG": str(config),
            "I2ES_BROKER_NODE": f"{name}@localhost",
            "I2ES_BROKER_DIST_PORT": str(amqp_port + 20000),
            "I2ES_BROKER_AMQP_PORT": str(amqp_port),
            "I2ES_BROKER_MGMT_PORT": str(self.management_port),
        }

    @property
    def settings_fields(self) -> dict[str, str]:
        return {
            "broker_url": f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/",
            "management_url": f"http://127.0.0.1:{self.management_port}",
        }

    def run(self, command: str) -> None:
        subprocess.run([str(BROKER), command], env=self.env, check=True, capture_output=True)
