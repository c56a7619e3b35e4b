"""What the hub's operator does: set the hub up, register and revoke participants."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aio_pika
from cryptography import x509

from certs.authority import CertificateAuthority, Profile
from certs.keys import generate_key, write_certificates, write_private_key
from gateway.broker.management import Management
from gateway.broker.topology import Topology
from gateway.home import Home
from gateway.ledger.store import open_ledger
from gateway.registry import Registry
from gateway.security import default_actor, revoke
from gateway.settings import Settings

HUB_ORGANIZATION = "I2ES Hub"
PARTICIPANT_CODE = re.compile(r"^[A-Z]{2}$")


class AdminError(RuntimeError):
    """An operator's command that cannot be carried out, with a sentence saying why."""


def vhost_url(settings: Settings, user: str | None = None, password: str | None = None) -> str:
    """The broker URL with the hub's vhost, optionally as another user."""
    parts = urllib.parse.urlsplit(settings.broker_url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password or '', safe='')}@{host}"
    path = "/" + urllib.parse.quote(settings.vhost, safe="")
    # The query carries TLS and login options (cafile, certfile, keyfile, auth=external): keep it.
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def hub_broker_user(settings: Settings) -> str:
    """The broker user the hub connects as: the URL's, or with a certificate login (EXTERNAL) its CN, HUB."""
    parts = urllib.parse.urlsplit(settings.broker_url)
    query = urllib.parse.parse_qs(parts.query)
    if query.get("auth", [""])[0].lower() == "external":
        return "HUB"
    return urllib.parse.unquote(parts.username or "guest")


def management(settings: Settings) -> Management:
    return Management.from_urls(settings.management_url, settings.broker_url)


@dataclass(frozen=True)
class InitReport:
    home: Path
    created_ca: bool
    created_hub_certificate: bool
    vhost: str


def initialize(
    settings: Settings, now: datetime, *, ca_key_type: str = "p384", root_key_out: Path | None = None
) -> InitReport:
    """Create what is missing (CA, hub certificate, ledger, broker topology); keep what exists.

    ``root_key_out`` writes the root CA's key there instead of the state folder, to be taken offline.
    """
    home = Home(settings.home)
    home.root.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root, 0o700)
    created_ca = not (home.ca_dir / "issuing.key").exists()
    if created_ca:
        authority, root_key = CertificateAuthority.create(HUB_ORGANIZATION, now, ca_key_type)
        if root_key_out is not None:
            # The root signs only the issuing CA: the hub never needs its key again.
            write_private_key(root_key_out, root_key)
            authority.save(home.ca_dir)
        else:
            authority.save(home.ca_dir, root_key)
        write_certificates(home.anchors_path, authority.anchors)
    authority = home.authority()
    registry = Registry(settings.ledger_path)
    created_hub = not (home.hub_dir / "signing.key").exists()
    if created_hub:
        key = generate_key()
        certificate = authority.issue(key.public_key(), "HUB", HUB_ORGANIZATION, Profile.SIGNING, now)
        write_private_key(home.hub_dir / "signing.key", key)
        write_certificates(home.hub_dir / "signing.pem", [certificate, authority.issuing])
        registry.record_certificate(certificate, Profile.SIGNING, now)
        registry.audit(default_actor(), "init", "root CA, issuing CA and the hub's signing certificate", now,
                       serial=f"{certificate.serial_number:x}", code="HUB")  # fmt: skip
    registry.close()
    open_ledger(settings.ledger_url, settings.ledger_path).close()  # creates its tables
    admin = management(settings)
    admin.put_vhost(settings.vhost)
    admin.put_permissions(settings.vhost, admin.user, ".*", ".*", ".*")
    hub_user = hub_broker_user(settings)
    if hub_user != admin.user:
        admin.put_user(hub_user, None)  # certificate login only: it has no password
        admin.put_permissions(settings.vhost, hub_user, ".*", ".*", ".*")
    asyncio.run(_declare_hub(settings))
    _grant_registered(settings, home, admin)
    return InitReport(home.root, created_ca, created_hub, settings.vhost)


def _grant_registered(settings: Settings, home: Home, admin: Management) -> None:
    """Give every registered participant its broker user and queue, e.g. on a new broker (TLS, a cluster)."""
    registry = Registry(settings.ledger_path)
    try:
        codes = [p.code for p in registry.participants()]
    finally:
        registry.close()
    topology = Topology.of(settings)
    for code in codes:
        password_file = home.password_file(code)
        password = password_file.read_text().strip() if password_file.exists() else None
        topology.grant_participant(admin, code, password)
        asyncio.run(_declare_participant(settings, code))


async def _declare_hub(settings: Settings) -> None:
    connection = await aio_pika.connect(vhost_url(settings), client_properties={"connection_name": "i2es-admin"})
    async with connection:
        channel = await connection.channel()
        await Topology.of(settings).declare_hub(channel)


async def _declare_participant(settings: Settings, code: str) -> None:
    connection = await aio_pika.connect(vhost_url(settings), client_properties={"connection_name": "i2es-admin"})
    async with connection:
        channel = await connection.channel()
        await Topology.of(settings).declare_participant(channel, code)


@dataclass(frozen=True)
class ParticipantReport:
    code: str
    certificate: x509.Certificate
    certificate_path: Path
    key_path: Path | None
    password_path: Path | None


def add_participant(
    settings: Settings,
    code: str,
    name: str,
    now: datetime,
    *,
    contact: str | None = None,
    csr: bytes | None = None,
    cert_out: Path | None = None,
    password: str | None = None,
    actor: str | None = None,
) -> ParticipantReport:
    """Register a participant, issue its signing certificate, create its broker user and queue."""
    if not PARTICIPANT_CODE.match(code):
        raise AdminError(f"{code!r} is not a participant code: use the ISO 3166-1 alpha-2 code in upper case")
    home = Home(settings.home)
    if not home.is_initialized():
        raise AdminError(f"the hub in {home.root} is not set up: run `i2es init` first")
    registry = Registry(settings.ledger_path)
    try:
        if registry.is_participant(code):
            raise AdminError(f"{code} is already registered; revoke it first to register it anew")
    finally:
        registry.close()
    authority = home.authority()
    key_path: Path | None = None
    if csr is not None:
        if cert_out is None:
            raise AdminError("--csr needs --cert-out FILE: where to write the issued certificate")
        certificate = authority.issue_from_csr(csr, code, name, Profile.SIGNING, now)
        write_certificates(cert_out, [certificate, authority.issuing])
        certificate_path = cert_out
    else:
        key = generate_key()
        certificate = authority.issue(key.public_key(), code, name, Profile.SIGNING, now)
        key_path = home.signing_key(code)
        write_private_key(key_path, key)
        certificate_path = home.signing_chain(code)
        write_certificates(certificate_path, [certificate, authority.issuing])
    folder = home.participant_dir(code)
    folder.mkdir(parents=True, exist_ok=True)
    write_certificates(folder / "hub-ca.pem", authority.anchors)
    password_path = home.password_file(code)
    if password is None:
        password = password_path.read_text().strip() if password_path.exists() else secrets.token_urlsafe(24)
    fd = os.open(password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    # The broker first: if it cannot be reached, nothing is registered and the command can be run again.
    Topology.of(settings).grant_participant(management(settings), code, password)
    asyncio.run(_declare_participant(settings, code))
    registry = Registry(settings.ledger_path)
    try:
        registry.add_participant(code, name, contact, now)
        registry.record_certificate(certificate, Profile.SIGNING, now)
        registry.audit(
            actor or default_actor(), "issue", f"signing certificate, valid until "
            f"{certificate.not_valid_after_utc.isoformat()}", now, serial=f"{certificate.serial_number:x}", code=code,
        )  # fmt: skip
    finally:
        registry.close()
    return ParticipantReport(code, certificate, certificate_path, key_path, password_path)


def revoke_participant(
    settings: Settings, code: str, now: datetime, reason: str = "keyCompromise", actor: str | None = None
) -> int:
    """Revoke every certificate of ``code``: the hub refuses its messages from the next one on."""
    registry = Registry(settings.ledger_path)
    try:
        if not registry.is_participant(code):
            raise AdminError(f"{code!r} is not a registered participant")
        serials = [c.serial for c in registry.certificates(code) if c.revoked_at is None]
    finally:
        registry.close()
    for serial in serials:
        revoke(settings, serial, reason, now, actor=actor or default_actor())
    return len(serials)
