"""The hub's settings: the one module that reads the environment (prefix ``I2ES_``)."""

from __future__ import annotations

import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.shards import Shard

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _schemas() -> Path:
    """The source tree's schemas, or those `pip install` put under the environment's prefix."""
    source = PROJECT_ROOT / "schemas"
    installed = Path(sys.prefix) / "share" / "i2es" / "schemas"
    return source if source.is_dir() or not installed.is_dir() else installed


def _cores_for_workers() -> int:
    """A worker process for each core the hub may run on but one (its own event loop's). None below four cores:
    there the broker shares them, and copying messages to workers cost more than it saved (docs/performance.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores - 1 if cores >= 4 else 0


class Settings(BaseSettings):
    """Where the hub keeps its state and how it reaches the broker."""

    model_config = SettingsConfigDict(env_prefix="I2ES_", extra="ignore")

    home: Path = Field(default=Path.home() / ".i2es", description="state folder: CA, keys, ledger")
    broker_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        description="AMQP URL of an administrator of the broker (its path, if any, is ignored: see vhost)",
    )
    management_url: str = Field(
        default="http://127.0.0.1:15672", description="RabbitMQ management API, for users and permissions"
    )
    vhost: str = "i2es"
    ledger_url: str = Field(default="", description="ledger location; empty means SQLite in the home folder")
    schema_dir: Path = Field(default_factory=_schemas, description="the XSD folder")
    max_message_bytes: int = 1024 * 1024
    replay_window_seconds: int = 24 * 3600
    future_skew_seconds: int = 300
    delivery_limit: int = 5
    prefetch: int = Field(default=64, description="messages the hub holds from each inbound queue at once")
    batch_max: int = Field(default=64, description="messages the hub records in one ledger commit at most")
    workers: int = Field(
        default_factory=_cores_for_workers, ge=0,
        description="processes that read messages and check signatures; 0: the hub's own process",
    )  # fmt: skip
    queue_max_length: int = Field(default=10_000, description="messages a participant's queue holds at most")
    participant_max_connections: int = 10
    participant_max_channels: int = 64
    ledger_retry_seconds: float = Field(default=2.0, description="pause between tries while the ledger fails")
    ledger_busy_seconds: float = Field(default=10.0, description="how long a write waits for another's lock")
    schedule_seconds: float = Field(default=30.0, description="how often the hub checks deadlines")
    hub_shard: str = Field(default="1/1", description="k/n: this hub is the k-th of n sharing the queues")
    hub_name: str = Field(default="", description="this hub's name among several; empty: host name and shard")
    heartbeat_seconds: float = Field(default=5.0, description="how often a hub tells the others it is alive")
    log_format: str = Field(default="auto", description="json, console or auto (console on a terminal)")
    dsig_backend: Literal["signxml", "xmlsec"] = Field(
        default="signxml", description="what checks signature values: signxml, or xmlsec (the fast extra)"
    )
    signer: str = Field(default="file", description="where the hub's signing key is: file or pkcs11")
    pkcs11_module: Path = Path("/usr/lib/softhsm/libsofthsm2.so")
    pkcs11_token: str = "i2es-hub"  # noqa: S105 - the token's label, not a secret
    pkcs11_pin: str = Field(default="", repr=False)
    pkcs11_key_label: str = "i2es-hub"

    @field_validator("hub_shard")
    @classmethod
    def _shard_is_k_of_n(cls, value: str) -> str:
        return str(Shard.parse(value))

    @property
    def shard(self) -> Shard:
        return Shard.parse(self.hub_shard)

    @property
    def hub_id(self) -> str:
        """The name this hub records as the owner of what it has still to send."""
        return self.hub_name or f"{socket.gethostname()}#{self.shard.index}"

    @property
    def replay_window(self) -> timedelta:
        return timedelta(seconds=self.replay_window_seconds)

    @property
    def future_skew(self) -> timedelta:
        return timedelta(seconds=self.future_skew_seconds)

    @property
    def ledger_path(self) -> Path:
        if self.ledger_url.startswith("sqlite:///"):
            return Path(self.ledger_url.removeprefix("sqlite:///"))
        return self.home / "hub.sqlite"
