"""Key and certificate files: PEM in, PEM out, and which keys the contract accepts."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

ACCEPTED_CURVES = frozenset({"secp256r1", "secp384r1"})
MIN_RSA_BITS = 2048


def key_problem(public_key: PublicKeyTypes) -> str | None:
    """Why a public key is not one the contract accepts (P-256, P-384, RSA of 2048 bits or more), or None."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ACCEPTED_CURVES:
            return f"the curve {public_key.curve.name} is not accepted (P-256 or P-384)"
        return None
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return f"an RSA key of {public_key.key_size} bits is too weak (2048 or more)"
        return None
    return f"a {type(public_key).__name__} key is not accepted (ECDSA P-256/P-384 or RSA)"


def generate_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def write_private_key(path: Path, key: CertificateIssuerPrivateKeyTypes) -> None:
    """Write a key in PKCS#8 PEM, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def read_private_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{path}: only ECDSA and RSA keys are supported")
    return key


def write_certificates(path: Path, certificates: list[x509.Certificate]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))


def read_certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


def write_pkcs12(
    path: Path, name: str, key: PrivateKey, certificate: x509.Certificate, chain: list[x509.Certificate],
    passphrase: bytes,
) -> None:  # fmt: skip
    """A PKCS#12 keystore (key, certificate, CA chain) for systems that want one, e.g. Java's KeyStore."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    data = pkcs12.serialize_key_and_certificates(name.encode(), key, certificate, chain, encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
