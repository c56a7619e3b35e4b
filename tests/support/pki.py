"""Real keys and certificates for tests: a hub CA, the hub, and participants, made once per session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner

from certs.authority import CertificateAuthority, Profile
from certs.keys import generate_key
from certs.signer import FileSigner
from gateway.envelope import Header, body_document, build_envelope, new_message_id, read_header
from gateway.reading import DOCUMENT_NS, parse_xml
from gateway.signature import sign_envelope

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "examples"


@dataclass(frozen=True)
class Pki:
    authority: CertificateAuthority
    signers: dict[str, FileSigner]

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        return tuple(self.authority.anchors)

    def signer(
        self,
        code: str,
        *,
        lifetime: timedelta = timedelta(days=365),
        now: datetime | None = None,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    ) -> FileSigner:
        key = key or generate_key()
        cert = self.authority.issue(
            key.public_key(),
            code,
            f"{code} authority",
            Profile.SIGNING,
            now or datetime.now(UTC) - timedelta(hours=1),  # test modules fix NOW on import
            lifetime,
        )
        return FileSigner(key, (cert, self.authority.issuing))


def make_pki(codes: tuple[str, ...] = ("HUB", "CH", "DE", "IN")) -> Pki:
    # Valid from a day back: test modules fix their NOW on import, minutes before a long run first asks for this.
    authority, _ = CertificateAuthority.create("Test Hub", datetime.now(UTC) - timedelta(days=1))
    pki = Pki(authority, {})
    for code in codes:
        pki.signers[code] = pki.signer(code)
    return pki


def example(name: str) -> etree._Element:
    return parse_xml((EXAMPLES / f"{name}.xml").read_bytes())


def envelope_of(name: str, **changes: object) -> etree._Element:
    """An example envelope with a fresh MessageId and CreatedAt (and any header field changed).

    An authorization gets a number of its own, so that each test files a new one.
    """
    root = example(name)
    header = read_header(root)
    header = replace(header, message_id=new_message_id(), created_at=datetime.now(UTC))
    header = replace(header, **changes)  # type: ignore[arg-type]
    document = body_document(root)
    number = document.find(f"{{{DOCUMENT_NS}}}Number")
    if number is not None:
        number.text = f"{number.text}-{uuid.uuid4().hex[:8]}"
    return build_envelope(header, document)


def signed(name: str, signer: FileSigner, **changes: object) -> bytes:
    return sign_envelope(envelope_of(name, **changes), signer)


def sign_with(
    message: etree._Element,
    signer: FileSigner,
    *,
    method: str,
    digest: str = DigestAlgorithm.SHA256.value,
    c14n: str = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value,
) -> bytes:
    """Sign with any algorithm signxml knows, even ones the contract forbids (to test refusals)."""

    class AnySigner(XMLSigner):  # type: ignore[misc]
        def check_deprecated_methods(self) -> None:
            pass

    xml_signer = AnySigner(
        signature_algorithm=SignatureMethod(method),
        digest_algorithm=DigestAlgorithm(digest),
        c14n_algorithm=CanonicalizationMethod(c14n),
    )
    xml_signer.namespaces = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
    result = xml_signer.sign(message, key=signer.key, cert=list(signer.chain))
    return bytes(etree.tostring(result, xml_declaration=True, encoding="UTF-8"))


def header_of(data: bytes) -> Header:
    return read_header(parse_xml(data))


def pem_bundle(certificates: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
