"""Signing keys kept in a hardware token or HSM, through PKCS#11 (python-pkcs11; tested with SoftHSM2).

The private key never leaves the token: ``TokenKey`` offers the one operation signxml needs (``sign``)
and does the ECDSA signature in the token over a digest computed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.utils import Buffer
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from certs.keys import read_certificates

CURVE = "secp256r1"


class TokenError(RuntimeError):
    """The token cannot be opened or holds no such key, with a sentence saying why."""


class TokenKey(ec.EllipticCurvePrivateKey):
    """An EC private key in a PKCS#11 token: it signs, and does nothing that would need the key's bytes."""

    def __init__(self, private: Any, public: ec.EllipticCurvePublicKey) -> None:
        self._private = private
        self._public = public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            raise TypeError("a prehashed digest is not accepted; pass the data")
        digest = hashes.Hash(algorithm)
        digest.update(data)
        raw = self._private.sign(digest.finalize(), mechanism=Mechanism.ECDSA)  # r || s, each half the length
        half = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def _stays_in_the_token(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the key stays in the token: it can only sign")

    exchange = _stays_in_the_token
    private_numbers = _stays_in_the_token
    private_bytes = _stays_in_the_token
    __copy__ = _stays_in_the_token
    __deepcopy__ = _stays_in_the_token


@dataclass(frozen=True)
class TokenConfig:
    module: Path  # the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
    token_label: str
    pin: str
    key_label: str = "i2es-hub"


def _open(config: TokenConfig) -> Any:
    try:
        library = pkcs11.lib(str(config.module))
        token = library.get_token(token_label=config.token_label)
        return token.open(user_pin=config.pin, rw=True)
    except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
        raise TokenError(f"cannot open token {config.token_label!r} with {config.module}: {exc!r}") from None


def _public(session: Any, label: str) -> ec.EllipticCurvePublicKey | None:
    try:
        key = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label)
    except pkcs11.NoSuchKey:
        return None
    public = serialization.load_der_public_key(encode_ec_public_key(key))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def ensure_key(config: TokenConfig) -> ec.EllipticCurvePublicKey:
    """The public half of the token's signing key, generating the pair in the token if it has none."""
    session = _open(config)
    try:
        public = _public(session, config.key_label)
        if public is None:
            parameters = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(CURVE)}, local=True
            )
            parameters.generate_keypair(
                store=True,
                label=config.key_label,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
            public = _public(session, config.key_label)
        assert public is not None
        return public
    finally:
        session.close()


@dataclass
class TokenSigner:
    """A ``Signer`` whose key is in a PKCS#11 token; keeps one session open for the hub's life."""

    key: TokenKey
    chain: tuple[x509.Certificate, ...]
    _session: Any

    @classmethod
    def open(cls, config: TokenConfig, chain_path: Path) -> TokenSigner:
        session = _open(config)
        public = _public(session, config.key_label)
        if public is None:
            session.close()
            raise TokenError(f"token {config.token_label!r} has no key {config.key_label!r}: run `i2es hsm init`")
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=config.key_label)
        chain = tuple(read_certificates(chain_path))
        if chain[0].public_key() != public:
            session.close()
            raise TokenError(f"the certificate in {chain_path} is not for the token's key {config.key_label!r}")
        return cls(TokenKey(private, public), chain, session)

    def close(self) -> None:
        self._session.close()
