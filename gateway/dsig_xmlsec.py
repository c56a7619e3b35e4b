"""The cryptographic step of signature verification done by libxmlsec1 (python-xmlsec), the faster backend.

``verify_with_xmlsec`` has the contract of signxml's step in ``gateway.signature.verify_signed``: it takes
a message whose signature's shape has been checked and a signer certificate the trust store has accepted,
and returns the tree of what was signed, the Message without its ds:Signature, parsed afresh from the
canonical bytes whose digest the verified signature covers. Nothing else of the message reaches the caller.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import importlib.resources
from typing import TYPE_CHECKING

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.errors import ReadingError, SchemaInvalid, SignatureInvalid, UnsupportedAlgorithm
from gateway.reading import DSIG_NS, parse_xml, validate

if TYPE_CHECKING:
    from gateway.signature import SignaturePolicy

__all__ = ["verify_with_xmlsec"]

# python-xmlsec works on lxml's own nodes: two different libxml2 builds would read each other's
# structures wrongly, so refuse to load rather than verify with a library that may crash or lie.
if xmlsec.get_libxml_version() != etree.LIBXML_VERSION:
    raise ImportError(
        f"python-xmlsec uses libxml2 {xmlsec.get_libxml_version()} but lxml uses {etree.LIBXML_VERSION}: "
        "install wheels of xmlsec and lxml built on the same libxml2, or use the signxml backend"
    )

_C = xmlsec.constants

# The contract's algorithms as python-xmlsec names them: a policy can only enable what is listed here.
# RSA-PSS (sha256-rsa-MGF1) is missing because python-xmlsec has no constant for it; see _restrict.
_TRANSFORMS = {
    t.href: t
    for t in (
        _C.TransformEnveloped,
        _C.TransformExclC14N,
        _C.TransformSha256,
        _C.TransformSha384,
        _C.TransformSha512,
        _C.TransformEcdsaSha256,
        _C.TransformEcdsaSha384,
        _C.TransformRsaSha256,
        _C.TransformRsaSha512,
    )
}

_DIGESTS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


def verify_with_xmlsec(message: etree._Element, signer: x509.Certificate, policy: SignaturePolicy) -> etree._Element:
    """Verify the message's enveloped signature with the signer's public key; return the signed Message.

    Raises ``SignatureInvalid`` when the signature does not verify or cannot be processed, and
    ``UnsupportedAlgorithm`` when it names an algorithm the policy or this backend does not accept.
    The caller's tree is not changed.
    """
    # Its own document: URI="" then means this Message and nothing around it, and no ID an
    # earlier reader registered can be resolved (the contract has no references by ID).
    document = copy.deepcopy(message)
    signature, signed_info, reference = _enveloped_signature(document)
    _check_schema(signature)
    context = xmlsec.SignatureContext()
    # With the key set, xmlsec never reads KeyInfo: no KeyValue, KeyName or RetrievalMethod is
    # followed; the key is the one of the certificate the trust store accepted, and no other.
    context.key = _key_of(signer.public_key().public_bytes(serialization.Encoding.PEM, _SPKI))
    context.set_enabled_key_data([_C.KeyDataX509])
    digest = _restrict(context, policy, signed_info, reference)
    try:
        context.verify(signature)
    except xmlsec.VerificationError:
        raise SignatureInvalid(
            "the signature does not verify: the message was changed after signing, "
            "or it was not signed with the key of the certificate in ds:KeyInfo"
        ) from None
    except xmlsec.Error as exc:
        raise SignatureInvalid(
            f"the signature cannot be checked ({_reason(exc)}): a malformed ds:SignedInfo or value, "
            "a key that does not fit the signature method, or content that cannot be canonicalized"
        ) from None
    content = _signed_content(document, signature)
    # python-xmlsec does not hand out the bytes it digested, so the bytes returned are bound to the
    # verified signature here: they must have the digest the signed ds:Reference holds.
    if hashlib.new(digest, content).digest() != _digest_value(reference):
        raise SignatureInvalid("the signed content does not match the verified ds:Reference's digest")
    try:
        return parse_xml(content)
    except ReadingError:
        raise SignatureInvalid("the signed content is not an XML element") from None


_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


@functools.lru_cache(maxsize=256)
def _key_of(public_key_pem: bytes) -> xmlsec.Key:
    # Cached by the key's bytes: a context copies the key it is given, so the cached one never changes.
    try:
        return xmlsec.Key.from_memory(public_key_pem, _C.KeyDataFormatPem)
    except xmlsec.Error:
        raise UnsupportedAlgorithm("the signer's public key is of a kind xmlsec cannot load") from None


def _enveloped_signature(
    document: etree._Element,
) -> tuple[etree._Element, etree._Element, etree._Element]:
    """The one ds:Signature, last child of the root, and its SignedInfo and single Reference to URI=""."""
    # What this module returns is safe only under these conditions, so they are checked here too
    # and not only in inspect_signature: the verified signature must be the only one, enveloped in
    # the root, and its one Reference must cover that whole root.
    signatures = list(document.iter(_ds("Signature")))
    if len(signatures) != 1 or document[-1] is not signatures[0]:
        raise SignatureInvalid("the message must hold exactly one ds:Signature, as the last child of Message")
    signature = signatures[0]
    signed_info = signature.find(_ds("SignedInfo"))
    references = [] if signed_info is None else signed_info.findall(_ds("Reference"))
    if signed_info is None or len(references) != 1 or references[0].get("URI") != "":
        raise SignatureInvalid('ds:SignedInfo must hold exactly one ds:Reference, with URI="" (the whole message)')
    return signature, signed_info, references[0]


@functools.cache
def _dsig_schema() -> etree.XMLSchema:
    # The XML-DSig 1.1 schema signxml ships and validates against: xmlsec does not validate, and
    # both backends must refuse the same malformed signatures with the same reason code.
    with importlib.resources.as_file(importlib.resources.files("signxml") / "schemas") as folder:
        return etree.XMLSchema(etree.parse(str(folder / "xmldsig1-schema.xsd")))


def _check_schema(signature: etree._Element) -> None:
    try:
        validate(signature, _dsig_schema())
    except SchemaInvalid as exc:
        raise SignatureInvalid(f"the ds:Signature does not follow the XML-DSig schema: {exc.message}") from None


def _restrict(
    context: xmlsec.SignatureContext,
    policy: SignaturePolicy,
    signed_info: etree._Element,
    reference: etree._Element,
) -> str:
    """Enable in xmlsec only the algorithms the policy allows and the message names; return the digest's name."""
    c14n, method = _algorithm(signed_info, "CanonicalizationMethod"), _algorithm(signed_info, "SignatureMethod")
    digest = _algorithm(reference, "DigestMethod")
    if c14n != policy.c14n_method or method not in policy.signature_methods or digest not in policy.digest_methods:
        raise UnsupportedAlgorithm(f"the algorithms {c14n!r}, {method!r}, {digest!r} are not all accepted")
    reference_algorithms = (*policy.transforms, *policy.digest_methods)
    for uri in reference_algorithms:
        if uri not in _TRANSFORMS or (uri in policy.digest_methods and uri not in _DIGESTS):
            raise UnsupportedAlgorithm(f"the xmlsec backend does not support {uri!r}; use the signxml backend")
    for uri in reference_algorithms:
        context.enable_reference_transform(_TRANSFORMS[uri])
    if method in _TRANSFORMS and c14n in _TRANSFORMS:
        context.enable_signature_transform(_TRANSFORMS[c14n])
        context.enable_signature_transform(_TRANSFORMS[method])
    # Otherwise (RSA-PSS, which python-xmlsec cannot name) the list stays open, as enabling only the
    # c14n would refuse the method: both algorithms were checked against the policy just above.
    return _DIGESTS[digest]


def _algorithm(parent: etree._Element, name: str) -> str:
    element = parent.find(_ds(name))
    return "" if element is None else element.get("Algorithm") or ""


def _digest_value(reference: etree._Element) -> bytes:
    element = reference.find(_ds("DigestValue"))
    # Lenient like xmlsec and signxml: whitespace, CR included, may sit inside the value.
    try:
        return base64.b64decode("".join((element.text or "").split()) if element is not None else "")
    except ValueError:
        raise SignatureInvalid("the ds:DigestValue is not base64") from None


def _signed_content(document: etree._Element, signature: etree._Element) -> bytes:
    """The exclusive canonical form of the root without its signature: what URI="" and the two transforms digest."""
    # The enveloped-signature transform drops the ds:Signature and keeps the text that follows it;
    # lxml would drop that text with the element, so it is moved to where it belongs first.
    if signature.tail:
        previous = signature.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + signature.tail
        else:
            document.text = (document.text or "") + signature.tail
    document.remove(signature)
    return bytes(etree.tostring(document, method="c14n", exclusive=True, with_comments=False))


def _reason(exc: xmlsec.Error) -> str:
    detail = exc.args[-1] if exc.args else ""
    return str(detail) or type(exc).__name__
