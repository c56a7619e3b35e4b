"""Trust decisions on a signer's certificate: chain to the hub's anchors, validity, use, revocation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from certs.keys import key_problem
from gateway.errors import (
    CertificateExpired,
    CertificateRevoked,
    CertificateUntrusted,
    UnsupportedAlgorithm,
)

MAX_CHAIN = 4


class RevocationList(Protocol):
    """Answers whether a certificate serial has been revoked; consulted for every message."""

    def is_revoked(self, serial: int) -> bool: ...


class NoRevocations:
    """For a verifier that has no revocation data (an adapter checking the hub offline)."""

    def is_revoked(self, serial: int) -> bool:
        return False


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class TrustStore:
    """The hub's trust anchors (root, issuing CA) and the revocation list to consult."""

    anchors: tuple[x509.Certificate, ...]
    revocations: RevocationList = field(default_factory=NoRevocations)
    # Verified paths by leaf fingerprint: signature checks on the chain are done once per certificate,
    # validity and revocation on every message.
    _paths: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict, compare=False, repr=False)

    def validate(self, chain: Sequence[x509.Certificate], now: datetime) -> x509.Certificate:
        """Return the signer's certificate (``chain[0]``) if it may sign messages now, else raise."""
        if not chain:
            raise CertificateUntrusted("the signature carries no certificate")
        leaf = chain[0]
        path = self._path(leaf, chain[1:])
        for certificate in path:
            if now < certificate.not_valid_before_utc:
                raise CertificateUntrusted(
                    f"certificate {certificate.subject.rfc4514_string()} is not valid before "
                    f"{certificate.not_valid_before_utc.isoformat()}"
                )
            if now > certificate.not_valid_after_utc:
                raise CertificateExpired(
                    f"certificate {certificate.subject.rfc4514_string()} (serial {certificate.serial_number:x}) "
                    f"expired on {certificate.not_valid_after_utc.isoformat()}"
                )
            if certificate not in self.anchors and self.revocations.is_revoked(certificate.serial_number):
                raise CertificateRevoked(
                    f"certificate {certificate.subject.rfc4514_string()} "
                    f"(serial {certificate.serial_number:x}) has been revoked"
                )
        _check_signing_use(leaf)
        return leaf

    def _path(self, leaf: x509.Certificate, supplied: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
        key = fingerprint(leaf)
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        path = self._build_path(leaf, supplied)
        if len(self._paths) > 10_000:
            self._paths.clear()
        self._paths[key] = path
        return path

    def _build_path(self, leaf: x509.Certificate, supplied: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
        candidates = [*self.anchors, *supplied]
        path = [leaf]
        current = leaf
        while current not in self.anchors:
            if len(path) > MAX_CHAIN:
                raise CertificateUntrusted("the certificate chain is too long")
            issuer = _find_issuer(current, candidates)
            if issuer is None:
                raise CertificateUntrusted(
                    f"certificate {current.subject.rfc4514_string()} (issuer "
                    f"{current.issuer.rfc4514_string()}) does not chain to the hub's trust anchors"
                )
            path.append(issuer)
            current = issuer
        return tuple(path)


def _find_issuer(certificate: x509.Certificate, candidates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != certificate.issuer or not _is_ca(candidate):
            continue
        try:
            certificate.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _check_signing_use(leaf: x509.Certificate) -> None:
    if _is_ca(leaf):
        raise CertificateUntrusted("a CA certificate may not sign messages")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateUntrusted("the signer's certificate has no key usage extension") from None
    if not usage.digital_signature:
        raise CertificateUntrusted("the signer's certificate does not allow digitalSignature")
    problem = key_problem(leaf.public_key())
    if problem:
        raise UnsupportedAlgorithm(f"the signer's key is not accepted: {problem}")
