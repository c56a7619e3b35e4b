"""What the security team does with the hub's CA: issue, renew and revoke certificates, publish the CRL.

Every action is recorded in the CA audit log with who did it and when.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from certs.authority import CertificateAuthority, CsrRefused, Profile
from certs.keys import common_name, generate_key, write_certificates, write_pkcs12, write_private_key
from certs.revocation import REASONS, build_crl, write_crl
from gateway.broker.management import Management, ManagementError
from gateway.home import Home
from gateway.ledger.store import ledger_for
from gateway.registry import CertificateRecord, Registry, serial_hex
from gateway.settings import Settings

# How often the TLS broker's management API refreshes its list of connections (see gateway/broker/tls.py).
STATISTICS_INTERVAL = 1.5


class SecurityError(RuntimeError):
    """A certificate operation that cannot be carried out, with a sentence saying why."""


def default_actor() -> str:
    """Who is acting: the operating-system user, as the audit log records it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    chain_path: Path
    key_path: Path | None
    p12_path: Path | None


def _home(settings: Settings) -> Home:
    home = Home(settings.home)
    if not home.is_initialized():
        raise SecurityError(f"the hub in {home.root} is not set up: run `i2es init` first")
    return home


def issue(
    settings: Settings,
    code: str,
    profile: Profile,
    now: datetime,
    *,
    actor: str,
    csr: bytes | None = None,
    out: Path | None = None,
    p12: Path | None = None,
    passphrase: str | None = None,
    dns_names: tuple[str, ...] = (),
    action: str = "issue",
) -> Issued:
    """Issue a certificate of ``profile`` to a registered participant, from its CSR or with a new key."""
    home = _home(settings)
    registry = Registry(settings.ledger_path)
    try:
        participant = registry.participant(code)
        if participant is None and code != "HUB":
            raise SecurityError(f"{code!r} is not a registered participant: run `i2es participant add {code}` first")
        organization = participant.name if participant else "I2ES Hub"
        authority = home.authority()
        key_path = None
        if csr is not None:
            if p12 is not None:
                raise SecurityError("--p12 needs the private key: issue without --csr to have the hub make the key")
            try:
                certificate = authority.issue_from_csr(csr, code, organization, profile, now, dns_names)
            except CsrRefused as exc:
                raise SecurityError(f"certificate request refused: {exc}") from None
        else:
            key = generate_key()
            certificate = authority.issue(key.public_key(), code, organization, profile, now, dns_names=dns_names)
            key_path = out.with_suffix(".key") if out else home.participant_dir(code) / f"{profile}.key"
            write_private_key(key_path, key)
            if p12 is not None:
                if not passphrase:
                    raise SecurityError("--p12 needs --passphrase: a keystore is never written unprotected")
                write_pkcs12(p12, code, key, certificate, [authority.issuing, authority.root], passphrase.encode())
        chain_path = out or home.participant_dir(code) / f"{profile}.pem"
        write_certificates(chain_path, [certificate, authority.issuing])
        registry.record_certificate(certificate, profile, now)
        registry.audit(
            actor, action, f"{profile} certificate, valid until {certificate.not_valid_after_utc.isoformat()}", now,
            serial=serial_hex(certificate.serial_number), code=code,
        )  # fmt: skip
    finally:
        registry.close()
    return Issued(certificate, chain_path, key_path, p12)


def renew(
    settings: Settings, serial: str, now: datetime, *, actor: str, csr: bytes | None = None, out: Path | None = None
) -> Issued:
    """A new certificate for the same participant and profile; the old one stays valid until it expires."""
    record = find(settings, serial)
    if record.revoked_at is not None:
        raise SecurityError(f"certificate {record.serial} is revoked: issue a new one instead of renewing it")
    return issue(
        settings, record.code, Profile(record.profile), now, actor=actor, csr=csr, out=out, action="renew",
    )  # fmt: skip


def find(settings: Settings, serial: str) -> CertificateRecord:
    registry = Registry(settings.ledger_path)
    try:
        records = registry.certificates(serial=serial)
    finally:
        registry.close()
    if not records:
        raise SecurityError(f"no certificate with serial {serial} was issued by this hub")
    return records[0]


def certificate_of(settings: Settings, serial: str) -> x509.Certificate:
    registry = Registry(settings.ledger_path)
    try:
        pem = registry.certificate_pem(find(settings, serial).serial)
    finally:
        registry.close()
    assert pem is not None
    return x509.load_pem_x509_certificate(pem.encode())


@dataclass(frozen=True)
class Revoked:
    record: CertificateRecord
    flagged_messages: int
    closed_connections: int


def revoke(settings: Settings, serial: str, reason: str, now: datetime, *, actor: str) -> Revoked:
    """Revoke one certificate: the hub refuses it from the next message on, the CRL lists it, the broker drops
    the participant's connections. ``keyCompromise`` also flags the messages it signed in the ledger."""
    if reason not in REASONS:
        raise SecurityError(f"unknown reason {reason!r}: use one of {', '.join(REASONS)}")
    record = find(settings, serial)
    registry = Registry(settings.ledger_path)
    try:
        if not registry.revoke(record.serial, reason, now):
            raise SecurityError(f"certificate {record.serial} is already revoked")
        registry.audit(actor, "revoke", f"reason {reason}", now, serial=record.serial, code=record.code)
    finally:
        registry.close()
    flagged = 0
    if reason in ("keyCompromise", "cACompromise"):
        ledger = ledger_for(settings)
        try:
            flagged = ledger.flag_signed_by(record.serial, "KEY_COMPROMISE")
        finally:
            ledger.close()
    publish_crl(settings, now, actor=actor)
    closed = _drop_connections(settings, record.code) if record.profile == Profile.TLS_CLIENT else 0
    return Revoked(find(settings, serial), flagged, closed)


def _drop_connections(settings: Settings, user: str) -> int:
    """Close the broker connections of ``user`` made with a certificate; new ones meet the CRL."""
    from gateway.admin import management

    admin: Management = management(settings)
    closed = 0
    try:
        # Three times, a statistics interval apart: the API lists a connection only once its statistics are in.
        for attempt in range(3):
            if attempt:
                time.sleep(STATISTICS_INTERVAL)
            closed += admin.close_connections(user, reason="certificate revoked")
    except ManagementError:
        pass
    return closed


def publish_crl(settings: Settings, now: datetime, *, actor: str) -> x509.CertificateRevocationList:
    """Sign a new CRL with the issuing CA and write it where `i2es crl` and the broker read it."""
    home = _home(settings)
    authority: CertificateAuthority = home.authority()
    registry = Registry(settings.ledger_path)
    try:
        number = registry.next_crl_number()
        crl = build_crl(authority, registry.revoked(), now, number)
        write_crl(crl, authority.issuing, home.crl_path, home.crl_dir)
        registry.audit(actor, "crl", f"CRL number {number}, {len(crl)} revoked certificate(s)", now)
    finally:
        registry.close()
    return crl


def rotate_issuing(settings: Settings, root_key_path: Path, now: datetime, *, actor: str) -> CertificateAuthority:
    """Replace the issuing CA by a new one under the same root; the old one stays a trust anchor until removed."""
    from certs.keys import read_private_key

    home = _home(settings)
    old = home.authority()
    try:
        new = old.with_new_issuing(read_private_key(root_key_path), now)
    except ValueError as exc:
        raise SecurityError(f"{root_key_path}: {exc}") from None
    retired = serial_hex(old.issuing.serial_number)
    write_certificates(home.ca_dir / f"issuing-{retired}.pem", [old.issuing])
    write_private_key(home.ca_dir / f"issuing-{retired}.key", old.issuing_key)
    new.save(home.ca_dir)
    # The root first, then the issuing CAs, newest first: certificates of either still chain.
    write_certificates(home.anchors_path, [new.root, new.issuing, old.issuing])
    registry = Registry(settings.ledger_path)
    try:
        registry.audit(
            actor, "rotate", f"new issuing CA {serial_hex(new.issuing.serial_number)} replaces {retired}", now
        )
    finally:
        registry.close()
    return new


def init_token(settings: Settings, now: datetime, *, actor: str) -> x509.Certificate:
    """Make (or find) the hub's signing key in the PKCS#11 token and issue its certificate."""
    from certs.pkcs11 import ensure_key
    from gateway.runtime import token_config

    home = _home(settings)
    authority = home.authority()
    public = ensure_key(token_config(settings))
    certificate = authority.issue(public, "HUB", "I2ES Hub", Profile.SIGNING, now)
    write_certificates(home.hub_token_chain, [certificate, authority.issuing])
    registry = Registry(settings.ledger_path)
    try:
        registry.record_certificate(certificate, Profile.SIGNING, now)
        registry.audit(
            actor, "issue", f"hub signing certificate for key {settings.pkcs11_key_label!r} in token "
            f"{settings.pkcs11_token!r}", now, serial=serial_hex(certificate.serial_number), code="HUB",
        )  # fmt: skip
    finally:
        registry.close()
    return certificate


def describe(certificate: x509.Certificate) -> dict[str, str]:
    from cryptography.hazmat.primitives import hashes

    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "code": common_name(certificate.subject) or "",
        "serial": serial_hex(certificate.serial_number),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(":"),
        "sha1": certificate.fingerprint(hashes.SHA1()).hex(":"),  # noqa: S303 - shown for tools that key by it
    }
