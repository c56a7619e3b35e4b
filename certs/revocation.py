"""Certificate revocation lists, signed by the issuing CA, in the forms OpenSSL and RabbitMQ read."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import crypto

from certs.authority import CertificateAuthority

CRL_LIFETIME = timedelta(days=7)

# RFC 5280 names, as `openssl ca -crl_reason` writes them, to the reasons cryptography knows.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}


def build_crl(
    authority: CertificateAuthority, revoked: Iterable[tuple[int, datetime, str]], now: datetime, number: int
) -> x509.CertificateRevocationList:
    """A CRL of the issuing CA listing every revoked serial with its date and reason."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.issuing.subject)
        .last_update(now)
        .next_update(now + CRL_LIFETIME)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.issuing_key.public_key()), critical=False
        )
    )
    for serial, revoked_at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        flag = REASONS.get(reason, x509.ReasonFlags.unspecified)
        if flag is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(authority.issuing_key, hashes.SHA384())


def write_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, path: Path, hash_dir: Path) -> None:
    """Write the CRL as PEM, and again under its issuer's OpenSSL subject hash (``<hash>.r0``) for TLS servers."""
    pem = crl.public_bytes(serialization.Encoding.PEM)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    hash_dir.mkdir(parents=True, exist_ok=True)
    # The name OpenSSL's c_rehash gives it, which Erlang's ssl_crl_hash_dir looks up. Only pyOpenSSL exposes
    # OpenSSL's subject hash (a SHA-1 over a canonical form of the name); its X509 API is deprecated, not gone.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        issuer_hash = crypto.X509.from_cryptography(issuer).get_subject().hash()
    (hash_dir / f"{issuer_hash:08x}.r0").write_bytes(pem)
