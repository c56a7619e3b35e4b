"""A hub of the bench's own: a state folder, a fresh vhost and registered participants, all removed afterwards.

Broker users are not per vhost: the participants' users are shared with any other hub on the same node.
They get the passwords the test session gives them, and each user is put back as it was (or deleted, if
the bench created it) when the bench ends.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from certs.signer import Signer
from gateway.admin import add_participant, initialize, management, vhost_url
from gateway.broker.management import Management
from gateway.home import Home
from gateway.settings import Settings
from tests.support.hub import participant_password

SENDER_CODES = ("DE", "FR", "IT", "NL", "BE", "ES", "PL", "SE")
RECEIVER_CODES = ("CH", "AT", "NO", "IS")


class BenchError(RuntimeError):
    """The bench cannot go on, or saw something the hub must never do; the sentence says which."""


@dataclass(frozen=True)
class Site:
    settings: Settings
    senders: tuple[str, ...]
    receivers: tuple[str, ...]

    @property
    def home(self) -> Home:
        return Home(self.settings.home)

    @property
    def vhost(self) -> str:
        return self.settings.vhost

    def admin_url(self) -> str:
        """The administrator's URL for the bench's vhost."""
        return vhost_url(self.settings)

    def participant_url(self, code: str) -> str:
        return vhost_url(self.settings, code, participant_password(code))

    def signers(self) -> dict[str, Signer]:
        return {code: self.home.participant_signer(code) for code in self.senders}

    def anchors(self) -> tuple[x509.Certificate, ...]:
        return tuple(self.home.anchors())

    def hub_environment(self) -> dict[str, str]:
        """The environment of `i2es gateway run` for this hub: the caller's, with its home and vhost."""
        return {
            **os.environ,
            "I2ES_HOME": str(self.settings.home),
            "I2ES_VHOST": self.settings.vhost,
            "I2ES_LOG_FORMAT": "json",
            "I2ES_BROKER_URL": self.settings.broker_url,
            "I2ES_MANAGEMENT_URL": self.settings.management_url,
            "I2ES_QUEUE_MAX_LENGTH": str(self.settings.queue_max_length),
            "I2ES_SCHEDULE_SECONDS": str(self.settings.schedule_seconds),
            "I2ES_LEDGER_URL": self.settings.ledger_url,
        }


def api(admin: Management, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call to the management API; None for a missing resource."""
    request = urllib.request.Request(
        f"{admin.url}/api/{path}", data=None if body is None else json.dumps(body).encode(), method=method
    )
    token = base64.b64encode(f"{admin.user}:{admin.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=admin.timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return json.loads(payload) if payload else None


_NODE_STATS_TRIES = 20


def broker_facts(settings: Settings) -> dict[str, Any]:
    """The broker's version and the operating-system pid of its node (to read its CPU time)."""
    admin = management(settings)
    overview = admin.overview()
    pid = None
    # A node started moments ago has no statistics yet, its pid among them: give it a few seconds.
    for _ in range(_NODE_STATS_TRIES):
        nodes = api(admin, "GET", "nodes") or []
        node = next((n for n in nodes if n.get("name") == overview.get("node")), nodes[0] if nodes else {})
        pid = node.get("os_pid")
        if pid:
            break
        time.sleep(0.5)
    return {
        "rabbitmq_version": overview.get("rabbitmq_version"),
        "erlang_version": overview.get("erlang_version"),
        "node": overview.get("node"),
        "os_pid": int(pid) if pid and Path(f"/proc/{pid}").exists() else None,
    }


def _save_users(admin: Management, codes: tuple[str, ...]) -> dict[str, dict[str, Any] | None]:
    return {code: api(admin, "GET", f"users/{urllib.parse.quote(code, safe='')}") for code in codes}


def _restore_users(admin: Management, saved: dict[str, dict[str, Any] | None]) -> None:
    for code, user in saved.items():
        path = f"users/{urllib.parse.quote(code, safe='')}"
        if user is None:
            api(admin, "DELETE", path)
        else:
            tags = user.get("tags", [])
            api(admin, "PUT", path, {
                "password_hash": user.get("password_hash", ""),
                "hashing_algorithm": user.get("hashing_algorithm", "rabbit_password_hashing_sha256"),
                "tags": ",".join(tags) if isinstance(tags, list) else tags,
            })  # fmt: skip


@contextmanager
def bench_site(senders: int, receivers: int, parent: Path | None = None, **settings_fields: Any) -> Iterator[Site]:
    """Set up a hub in a new folder and a new vhost ``i2es-bench-<hex>``; remove both afterwards.

    ``settings_fields`` sets other settings of the hub (another broker's URLs, a queue length limit)."""
    if not 1 <= senders <= len(SENDER_CODES) or not 1 <= receivers <= len(RECEIVER_CODES):
        raise BenchError(f"between 1 and {len(SENDER_CODES)} senders and 1 and {len(RECEIVER_CODES)} receivers")
    folder = Path(tempfile.mkdtemp(prefix="i2es-bench-", dir=parent))
    settings = Settings(home=folder, vhost=f"i2es-bench-{secrets.token_hex(4)}", **settings_fields)
    site = Site(settings, SENDER_CODES[:senders], RECEIVER_CODES[:receivers])
    admin = management(settings)
    try:
        admin.overview()
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise BenchError(f"RabbitMQ is not reachable ({exc}); start it with scripts/broker start") from None
    saved = _save_users(admin, site.senders + site.receivers)
    try:
        now = datetime.now(UTC)
        initialize(settings, now)
        for code in site.senders + site.receivers:
            add_participant(settings, code, f"Bench authority {code}", now, password=participant_password(code))
        yield site
    finally:
        admin.delete_vhost(settings.vhost)
        _restore_users(admin, saved)
        shutil.rmtree(folder, ignore_errors=True)
