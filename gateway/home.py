"""The hub's state folder (``$I2ES_HOME``): where each key, certificate and database lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from certs.authority import CertificateAuthority
from certs.keys import read_certificates
from certs.signer import FileSigner


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def anchors_path(self) -> Path:
        """The hub's trust anchors, the root first: what `i2es ca show` prints."""
        return self.ca_dir / "anchors.pem"

    @property
    def crl_path(self) -> Path:
        """The issuing CA's current CRL (PEM): what `i2es crl` prints."""
        return self.ca_dir / "crl.pem"

    @property
    def crl_dir(self) -> Path:
        """The CRL again under its issuer's hash, for a TLS server's CRL check (RabbitMQ)."""
        return self.ca_dir / "crl.d"

    @property
    def hub_dir(self) -> Path:
        return self.root / "hub"

    def participant_dir(self, code: str) -> Path:
        return self.root / "participants" / code

    def signing_key(self, code: str) -> Path:
        return self.participant_dir(code) / "signing.key"

    def signing_chain(self, code: str) -> Path:
        return self.participant_dir(code) / "signing.pem"

    def password_file(self, code: str) -> Path:
        return self.participant_dir(code) / "broker-password"

    def is_initialized(self) -> bool:
        return (self.ca_dir / "issuing.key").exists() and (self.hub_dir / "signing.key").exists()

    def authority(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.ca_dir)

    def anchors(self) -> list[x509.Certificate]:
        return read_certificates(self.anchors_path)

    @property
    def hub_token_chain(self) -> Path:
        """The certificate chain of the hub's signing key kept in a PKCS#11 token."""
        return self.hub_dir / "pkcs11.pem"

    def hub_signer(self) -> FileSigner:
        return FileSigner.load(self.hub_dir / "signing.key", self.hub_dir / "signing.pem")

    def participant_signer(self, code: str) -> FileSigner:
        key, chain = self.signing_key(code), self.signing_chain(code)
        if not key.exists():
            raise FileNotFoundError(f"no signing key for {code} in {key.parent}: run `i2es participant add {code}`")
        return FileSigner.load(key, chain)

    def participant_password(self, code: str) -> str:
        path = self.password_file(code)
        if not path.exists():
            raise FileNotFoundError(f"no broker password for {code} in {path}")
        return path.read_text().strip()
