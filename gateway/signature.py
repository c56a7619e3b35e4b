"""XML-DSig for envelopes (section 4): sign, and verify under a strict policy.

Verification first checks the signature's shape by hand, so that each departure from the
contract gets its own reason code, then lets a backend do the cryptography against a
certificate the trust store has already accepted: signxml by default, or libxmlsec1
(``gateway.dsig_xmlsec``, the ``fast`` extra) when the policy names it. Everything downstream
reads only the tree the backend returns: the bytes that were actually signed.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm as CryptographyUnsupported
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import (  # type: ignore[attr-defined]
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import InvalidInput, SignXMLException

from certs.keys import common_name
from certs.signer import Signer
from certs.trust import TrustStore
from gateway.envelope import Header, read_header
from gateway.errors import SchemaInvalid, SignatureInvalid, SignatureMissing, UnsupportedAlgorithm
from gateway.reading import DSIG_NS

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

# Which library checks the signature value: signxml (a dependency) or libxmlsec1 (the fast extra).
DsigBackend = Literal["signxml", "xmlsec"]


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


@dataclass(frozen=True)
class SignaturePolicy:
    """The algorithms section 4 allows, and nothing else; and which library checks the signature value."""

    signature_methods: frozenset[str] = frozenset(
        {
            SignatureMethod.ECDSA_SHA256.value,
            SignatureMethod.ECDSA_SHA384.value,
            SignatureMethod.RSA_SHA256.value,
            SignatureMethod.RSA_SHA512.value,
            SignatureMethod.SHA256_RSA_MGF1.value,
        }
    )
    digest_methods: frozenset[str] = frozenset(
        {DigestAlgorithm.SHA256.value, DigestAlgorithm.SHA384.value, DigestAlgorithm.SHA512.value}
    )
    # exc-c14n only: inclusive c14n pulls in the ancestors' namespace context, which a
    # relaying party can change without touching the signed element.
    c14n_method: str = EXC_C14N
    transforms: tuple[str, ...] = (ENVELOPED, EXC_C14N)
    # "xmlsec" needs python-xmlsec (the fast extra); the shape checks are the same for both.
    backend: DsigBackend = "signxml"

    def __post_init__(self) -> None:
        if self.backend not in get_args(DsigBackend):
            raise ValueError(f"unknown XML-DSig backend {self.backend!r}; choose signxml or xmlsec")
        if self.backend == "xmlsec":  # fail when the policy is built, not at the first message
            try:
                import gateway.dsig_xmlsec  # noqa: F401
            except ModuleNotFoundError as exc:
                raise ImportError(f"the xmlsec backend needs python-xmlsec, the fast extra ({exc})") from None

    def signxml_config(self) -> SignatureConfiguration:
        return SignatureConfiguration(
            require_x509=True,
            location="./",
            expect_references=1,
            signature_methods=frozenset(SignatureMethod(m) for m in self.signature_methods),
            digest_algorithms=frozenset(DigestAlgorithm(d) for d in self.digest_methods),
        )


DEFAULT_POLICY = SignaturePolicy()


@dataclass(frozen=True)
class VerifiedMessage:
    """What verification vouches for: the signed tree (signature removed), its header, its signer."""

    signed: etree._Element
    header: Header
    signer: x509.Certificate
    signature_method: str
    # The certificates the signature carried, the signer's first: enough to check the chain again later.
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def signer_code(self) -> str:
        return common_name(self.signer.subject) or ""


@dataclass(frozen=True)
class _SignatureShape:
    signature_method: str
    chain: tuple[x509.Certificate, ...]


def _only_children(element: etree._Element, names: list[str], what: str) -> list[etree._Element]:
    children = list(element)
    found = [etree.QName(c).localname if etree.QName(c).namespace == DSIG_NS else c.tag for c in children]
    if found != names:
        raise SignatureInvalid(
            f"{what} must hold {', '.join(names)} in that order; it holds {', '.join(map(str, found)) or 'nothing'}"
        )
    return children


def _algorithm(element: etree._Element) -> str:
    return element.get("Algorithm") or ""


def inspect_signature(message: etree._Element, policy: SignaturePolicy = DEFAULT_POLICY) -> _SignatureShape:
    """Check the signature's shape against section 4 and return its method and certificate chain."""
    signatures = list(message.iter(_ds("Signature")))
    if not signatures:
        raise SignatureMissing("the message is not signed: the envelope needs a ds:Signature as its last child")
    if len(signatures) > 1:
        raise SignatureInvalid(f"the message holds {len(signatures)} ds:Signature elements; exactly one is allowed")
    signature = signatures[0]
    if signature.getparent() is not message or message[-1] is not signature:
        raise SignatureInvalid("the ds:Signature must be the last child of Message (enveloped)")
    signed_info, _, key_info = _only_children(signature, ["SignedInfo", "SignatureValue", "KeyInfo"], "ds:Signature")
    if len(signed_info) < 3:
        raise SignatureInvalid("ds:SignedInfo must hold CanonicalizationMethod, SignatureMethod and a Reference")
    c14n, method, *references = list(signed_info)
    if c14n.tag != _ds("CanonicalizationMethod") or method.tag != _ds("SignatureMethod"):
        raise SignatureInvalid("ds:SignedInfo must start with CanonicalizationMethod and SignatureMethod")
    if _algorithm(c14n) != policy.c14n_method:
        raise UnsupportedAlgorithm(
            f"canonicalization {_algorithm(c14n)!r} is not accepted; use exclusive c14n ({policy.c14n_method})"
        )
    if _algorithm(method) not in policy.signature_methods:
        raise UnsupportedAlgorithm(f"signature method {_algorithm(method)!r} is not accepted")
    if len(method):
        raise UnsupportedAlgorithm("ds:SignatureMethod parameters (HMACOutputLength) are not accepted")
    if len(references) != 1 or references[0].tag != _ds("Reference"):
        raise SignatureInvalid(f"ds:SignedInfo must hold exactly one ds:Reference; it holds {len(references)}")
    _check_reference(references[0], policy)
    return _SignatureShape(signature_method=_algorithm(method), chain=_certificates(key_info))


def _check_reference(reference: etree._Element, policy: SignaturePolicy) -> None:
    if reference.get("URI") != "":
        raise SignatureInvalid(
            f'the ds:Reference must have URI="" (the whole message); it has {reference.get("URI")!r}'
        )
    transforms_el, digest_method, _ = _only_children(
        reference, ["Transforms", "DigestMethod", "DigestValue"], "ds:Reference"
    )
    transforms = [_algorithm(t) for t in transforms_el]
    for uri in transforms:
        if uri not in policy.transforms:
            raise UnsupportedAlgorithm(f"transform {uri!r} is not accepted")
    if tuple(transforms) != policy.transforms or any(len(t) for t in transforms_el):
        raise SignatureInvalid("the ds:Reference's transforms must be exactly enveloped-signature then exclusive c14n")
    if _algorithm(digest_method) not in policy.digest_methods:
        raise UnsupportedAlgorithm(f"digest method {_algorithm(digest_method)!r} is not accepted")


_WHITESPACE = re.compile(rb"\s+")


@lru_cache(maxsize=1024)
def _certificate(encoded: bytes) -> x509.Certificate:
    """One ``ds:X509Certificate``'s base64 text, decoded; the same certificates come on every message of a sender,
    so each is decoded once (a failure is not kept: it raises again)."""
    certificate = x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))
    # cryptography parses some fields lazily: read them all now, so a corrupt one fails here.
    _ = (certificate.subject, certificate.issuer, certificate.extensions, certificate.public_key())
    _ = (certificate.not_valid_before_utc, certificate.not_valid_after_utc, certificate.serial_number)
    return certificate


def _certificates(key_info: etree._Element) -> tuple[x509.Certificate, ...]:
    children = list(key_info)
    if len(children) != 1 or children[0].tag != _ds("X509Data"):
        names = ", ".join(etree.QName(c).localname for c in children) or "nothing"
        raise SignatureInvalid(f"ds:KeyInfo must hold exactly one ds:X509Data; it holds {names}")
    encoded = [c.text or "" for c in children[0] if c.tag == _ds("X509Certificate")]
    if not encoded:
        raise SignatureInvalid("ds:X509Data holds no ds:X509Certificate")
    chain = []
    for text in encoded:
        try:
            chain.append(_certificate(_WHITESPACE.sub(b"", text.encode("ascii"))))
        except CryptographyUnsupported as exc:
            raise UnsupportedAlgorithm(f"a certificate's key is of a kind the hub does not accept: {exc}") from None
        except Exception as exc:  # hostile DER fails in many ways: bad version, duplicate extension, ...
            raise SignatureInvalid(
                f"a ds:X509Certificate is not a well-formed base64 DER certificate ({type(exc).__name__})"
            ) from None
    return tuple(chain)


def verify_envelope(
    message: etree._Element, trust: TrustStore, now: datetime, policy: SignaturePolicy = DEFAULT_POLICY
) -> VerifiedMessage:
    """Verify an envelope's signature and its signer's certificate; return only what was signed."""
    signed, shape, signer = _verify(message, trust, now, policy)
    try:
        header = read_header(signed)
    except (ValueError, OverflowError) as exc:
        raise SchemaInvalid(f"the header cannot be read: {exc}") from None
    return VerifiedMessage(signed, header, signer, shape.signature_method, shape.chain)


def verify_signed(
    message: etree._Element, trust: TrustStore, now: datetime, policy: SignaturePolicy = DEFAULT_POLICY
) -> tuple[etree._Element, x509.Certificate, str]:
    """Verify any document signed with the contract's profile; return the signed tree, the signer, the method."""
    signed, shape, signer = _verify(message, trust, now, policy)
    return signed, signer, shape.signature_method


def _verify(
    message: etree._Element, trust: TrustStore, now: datetime, policy: SignaturePolicy
) -> tuple[etree._Element, _SignatureShape, x509.Certificate]:
    shape = inspect_signature(message, policy)
    signer = trust.validate(shape.chain, now)
    if policy.backend == "xmlsec":
        from gateway.dsig_xmlsec import verify_with_xmlsec

        return verify_with_xmlsec(message, signer, policy), shape, signer
    return _verify_with_signxml(message, signer, policy), shape, signer


def _verify_with_signxml(message: etree._Element, signer: x509.Certificate, policy: SignaturePolicy) -> etree._Element:
    """signxml's check of the signature value against ``signer``; return the signed tree it rebuilt."""
    try:
        result = XMLVerifier().verify(message, x509_cert=signer, expect_config=policy.signxml_config())
    except InvalidInput as exc:
        raise SignatureInvalid(f"the signature cannot be checked: {exc}") from None
    except SignXMLException as exc:
        raise SignatureInvalid(f"the signature does not verify: {exc}") from None
    except etree.LxmlError as exc:  # the XML-DSig schema check or canonicalization failed
        raise SignatureInvalid(f"the ds:Signature cannot be processed: {exc}") from None
    except (ValueError, TypeError) as exc:  # e.g. a SignatureValue that is not a valid ECDSA/RSA value
        raise SignatureInvalid(f"the signature cannot be checked: {exc}") from None
    if isinstance(result, list):  # expect_references=1 makes signxml return one result
        raise SignatureInvalid("the signature must hold exactly one reference")
    signed = result.signed_xml
    if signed is None:
        raise SignatureInvalid("the signed content is not an XML element")
    return signed


def signature_method_for(signer: Signer) -> SignatureMethod:
    key = signer.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SignatureMethod.ECDSA_SHA384 if key.curve.name == "secp384r1" else SignatureMethod.ECDSA_SHA256
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    raise TypeError(f"unsupported key {type(key).__name__}")


def sign_envelope(message: etree._Element, signer: Signer) -> bytes:
    """Sign an unsigned envelope (enveloped, exc-c14n, SHA-256) and return its UTF-8 bytes."""
    xml_signer = XMLSigner(
        signature_algorithm=signature_method_for(signer),
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    xml_signer.namespaces = {"ds": DSIG_NS}
    signed = xml_signer.sign(message, key=signer.key, cert=list(signer.chain))
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
