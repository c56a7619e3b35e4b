"""The hub's certificate authority: a root, an issuing CA under it, and the certificates it issues.

The root signs only the issuing CA; the issuing CA signs the hub's and the participants'
certificates. Serials are random 128-bit numbers. CA keys are ECDSA P-384, end-entity keys P-256.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.keys import (
    PrivateKey,
    common_name,
    generate_key,
    key_problem,
    read_certificates,
    read_private_key,
    write_certificates,
    write_private_key,
)

ROOT_LIFETIME = timedelta(days=20 * 365)
ISSUING_LIFETIME = timedelta(days=10 * 365)
END_ENTITY_LIFETIME = timedelta(days=2 * 365)
# Clocks differ between machines: a certificate is valid a little before it is issued.
BACKDATE = timedelta(minutes=5)


class CsrRefused(ValueError):
    """A certificate signing request the CA will not sign, with the reason."""


class Profile(enum.StrEnum):
    SIGNING = "signing"
    TLS_CLIENT = "tls"
    TLS_SERVER = "server"


CA_KEY_TYPES = ("p384", "rsa3072", "rsa4096")


def ca_key(key_type: str) -> PrivateKey:
    """A CA key: ECDSA P-384 by default, RSA of 3072 or 4096 bits on request."""
    if key_type == "p384":
        return generate_key(ec.SECP384R1())
    if key_type in ("rsa3072", "rsa4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise ValueError(f"unknown CA key type {key_type!r}: use one of {', '.join(CA_KEY_TYPES)}")


def random_serial() -> int:
    # 128 random bits (RFC 5280 allows up to 20 octets); never zero, which is not a valid serial.
    return secrets.randbits(128) or 1


def _name(common: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _ca_certificate(
    subject: x509.Name,
    public_key: CertificateIssuerPublicKeyTypes,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    now: datetime,
    lifetime: timedelta,
    path_length: int | None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(issuer_key, hashes.SHA384())
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """The issuing CA's key and certificate, with the root above it."""

    root: x509.Certificate
    issuing: x509.Certificate
    issuing_key: PrivateKey

    @property
    def anchors(self) -> list[x509.Certificate]:
        """What `i2es ca show` prints: the root first, then the issuing CA."""
        return [self.root, self.issuing]

    @classmethod
    def create(
        cls, organization: str, now: datetime, key_type: str = "p384"
    ) -> tuple[CertificateAuthority, PrivateKey]:
        """A new root and issuing CA. Returns the CA and the root's key (to be kept offline)."""
        root_key = ca_key(key_type)
        root_name = _name(f"{organization} Root CA", organization)
        root = _ca_certificate(root_name, root_key.public_key(), root_name, root_key, now, ROOT_LIFETIME, 1)
        issuing_key = ca_key(key_type)
        issuing = _ca_certificate(
            _name(f"{organization} Issuing CA", organization),
            issuing_key.public_key(),
            root_name,
            root_key,
            now,
            ISSUING_LIFETIME,
            0,
        )
        return cls(root=root, issuing=issuing, issuing_key=issuing_key), root_key

    def with_new_issuing(self, root_key: PrivateKey, now: datetime, key_type: str = "p384") -> CertificateAuthority:
        """A new issuing CA under the same root (the root's key comes back from offline for this only)."""
        if root_key.public_key() != self.root.public_key():
            raise ValueError("that key is not the root CA's key")
        issuing_key = ca_key(key_type)
        issuing = _ca_certificate(
            self.issuing.subject, issuing_key.public_key(), self.root.subject, root_key, now, ISSUING_LIFETIME, 0
        )
        return CertificateAuthority(root=self.root, issuing=issuing, issuing_key=issuing_key)

    def save(self, folder: Path, root_key: PrivateKey | None = None) -> None:
        write_certificates(folder / "root.pem", [self.root])
        write_certificates(folder / "issuing.pem", [self.issuing])
        write_private_key(folder / "issuing.key", self.issuing_key)
        if root_key is not None:
            write_private_key(folder / "root.key", root_key)

    @classmethod
    def load(cls, folder: Path) -> CertificateAuthority:
        return cls(
            root=read_certificates(folder / "root.pem")[0],
            issuing=read_certificates(folder / "issuing.pem")[0],
            issuing_key=read_private_key(folder / "issuing.key"),
        )

    def issue(
        self,
        public_key: CertificateIssuerPublicKeyTypes,
        code: str,
        organization: str,
        profile: Profile,
        now: datetime,
        lifetime: timedelta = END_ENTITY_LIFETIME,
        dns_names: tuple[str, ...] = (),
    ) -> x509.Certificate:
        """Issue an end-entity certificate whose CN is the party's code and O its authority's name."""
        problem = key_problem(public_key)
        if problem:
            raise CsrRefused(problem)
        signing = profile is Profile.SIGNING
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(code, organization))
            .issuer_name(self.issuing.subject)
            .public_key(public_key)
            .serial_number(random_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + lifetime, self.issuing.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=signing,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=not signing,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuing_key.public_key()),
                critical=False,
            )
        )
        if profile is Profile.TLS_CLIENT:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        if profile is Profile.TLS_SERVER:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            names = [x509.DNSName(n) for n in dns_names or (code,)]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.issuing_key, hashes.SHA384())

    def issue_from_csr(
        self,
        csr_pem: bytes,
        code: str,
        organization: str,
        profile: Profile,
        now: datetime,
        dns_names: tuple[str, ...] = (),
    ) -> x509.Certificate:
        """Issue from a PKCS#10 request, refusing one whose CN is not ``code`` or whose key is weak."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise CsrRefused("the file is not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise CsrRefused("the request's self-signature does not verify")
        cn = common_name(csr.subject)
        if cn != code:
            raise CsrRefused(f"the request's CN is {cn!r}; it must be the participant code {code!r}")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CsrRefused(key_problem(public_key) or "the request's key type is not accepted")
        return self.issue(public_key, code, organization, profile, now, dns_names=dns_names)
