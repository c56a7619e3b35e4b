"""Who signs: a private key and the certificate chain that names it (a file key here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509

from certs.keys import PrivateKey, common_name, read_certificates, read_private_key


class Signer(Protocol):
    """A signing key and its chain, the signer's certificate first."""

    @property
    def key(self) -> PrivateKey: ...

    @property
    def chain(self) -> tuple[x509.Certificate, ...]: ...


@dataclass(frozen=True)
class FileSigner:
    """A key kept in a PEM file beside its certificate chain."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    @classmethod
    def load(cls, key_path: Path, chain_path: Path) -> FileSigner:
        return cls(key=read_private_key(key_path), chain=tuple(read_certificates(chain_path)))

    @property
    def code(self) -> str:
        return common_name(self.chain[0].subject) or ""
