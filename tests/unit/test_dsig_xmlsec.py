"""The xmlsec backend: it accepts what signxml accepts, returns the same signed content, and nothing else.

Most tests call ``verify_with_xmlsec`` directly, without the shape checks of ``inspect_signature``
in front of it, to show that the backend alone lets no unsigned content through.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from copy import deepcopy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from certs.signer import FileSigner
from certs.trust import TrustStore
from gateway.envelope import format_instant, read_header
from gateway.errors import SignatureInvalid, UnsupportedAlgorithm
from gateway.reading import DOCUMENT_NS, DSIG_NS, ENVELOPE_NS, parse_xml
from gateway.signature import SignaturePolicy, VerifiedMessage, sign_envelope, verify_envelope
from tests.support.pki import Pki, envelope_of, sign_with, signed

xmlsec = pytest.importorskip("xmlsec", reason="python-xmlsec is not installed (pip install -e '.[fast]')")

from gateway.dsig_xmlsec import verify_with_xmlsec  # noqa: E402  # needs xmlsec, skipped above without it

DS = f"{{{DSIG_NS}}}"
ENV = f"{{{ENVELOPE_NS}}}"
NOW = datetime.now(UTC)
SIGNXML = SignaturePolicy()
XMLSEC = SignaturePolicy(backend="xmlsec")
TEMPLATE = Path(__file__).resolve().parents[1] / "interop" / "data" / "Clarification.template.xml"


def verified_by(backend: SignaturePolicy, data: bytes, pki: Pki) -> VerifiedMessage:
    return verify_envelope(parse_xml(data), TrustStore(pki.anchors), NOW, backend)


def canonical(element: etree._Element) -> bytes:
    return bytes(etree.tostring(element, method="c14n", exclusive=True))


def serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def rsa_signer(pki: Pki) -> FileSigner:
    return pki.signer("DE", key=rsa.generate_private_key(65537, 2048))


def with_unusual_text(pki: Pki) -> bytes:
    """Escaped characters, non-ASCII text, a carriage return and an unused namespace declaration."""
    root = envelope_of("ExportAuthorization")
    point_of_exit = root.find(f".//{{{DOCUMENT_NS}}}PointOfExit")
    assert point_of_exit is not None
    point_of_exit.text = 'Basel & <Rhein> "Zollamt" für\r Grenzübergang'
    declared = etree.Element(root.tag, nsmap={None: ENVELOPE_NS, "unused": "urn:unused"})  # type: ignore[dict-item]
    declared.extend(list(root))
    return sign_envelope(declared, pki.signers["DE"])


def signed_by_xmlsec_from_the_template(pki: Pki) -> bytes:
    """The interop template (indented, text after the signature), signed by libxmlsec1 rather than signxml."""
    signer = pki.signers["DE"]
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("6f1c2a9e-4b1d-4c55-9a55-0d9f5e1f2b11", str(uuid.uuid4()))
    text = text.replace("2026-11-23T10:00:00Z", format_instant(NOW))
    root = parse_xml(text.encode("utf-8"))
    pem = signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
    for certificate in signer.chain:
        key.load_cert_from_memory(
            certificate.public_bytes(serialization.Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem
        )
    context = xmlsec.SignatureContext()
    context.key = key
    context.sign(root[-1])
    return serialize(root)


MESSAGES = {
    "ecdsa-sha256 by signxml": lambda pki: signed("ExportAuthorization", pki.signers["DE"]),
    "ecdsa-sha384": lambda pki: sign_with(
        envelope_of("ImportAuthorization"),
        pki.signers["DE"],
        method="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        digest="http://www.w3.org/2001/04/xmldsig-more#sha384",
    ),
    "rsa-sha512": lambda pki: sign_with(
        envelope_of("ExportAuthorization"),
        rsa_signer(pki),
        method="http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        digest="http://www.w3.org/2001/04/xmlenc#sha512",
    ),
    "rsa-pss": lambda pki: sign_with(
        envelope_of("ExportAuthorization"),
        rsa_signer(pki),
        method="http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
    ),
    "escaped and non-ascii text": with_unusual_text,
    "signed by libxmlsec1 from the indented template": signed_by_xmlsec_from_the_template,
}


@pytest.mark.parametrize("make", MESSAGES.values(), ids=MESSAGES.keys())
def test_a_message_that_verifies_under_signxml_verifies_under_xmlsec_to_byte_identical_content(
    pki: Pki, make: object
) -> None:
    data = make(pki)  # type: ignore[operator]
    by_signxml, by_xmlsec = verified_by(SIGNXML, data, pki), verified_by(XMLSEC, data, pki)
    assert canonical(by_xmlsec.signed) == canonical(by_signxml.signed)
    assert etree.tostring(by_xmlsec.signed) == etree.tostring(by_signxml.signed)
    assert by_xmlsec.header == by_signxml.header
    assert (by_xmlsec.signer, by_xmlsec.signature_method) == (by_signxml.signer, by_signxml.signature_method)
    assert by_xmlsec.signed.find(f".//{DS}Signature") is None


def test_the_callers_tree_is_left_as_it_was(pki: Pki) -> None:
    root = parse_xml(signed("ExportAuthorization", pki.signers["DE"]))
    before = etree.tostring(root)
    returned = verify_with_xmlsec(root, pki.signers["DE"].chain[0], XMLSEC)
    assert etree.tostring(root) == before
    assert returned.getroottree() is not root.getroottree()


# --------------------------------------------------------------------------------------------
# Tampering and wrapping: the backend on its own, without the shape checks in front of it
# --------------------------------------------------------------------------------------------


def forged_header(header: etree._Element) -> etree._Element:
    forged = deepcopy(header)
    to = forged.find(f"{ENV}To")
    assert to is not None
    to.text = "IN"
    return forged


def original_header_inside_the_signature(root: etree._Element) -> None:
    """A forged Header where the header is read; the signed one in a ds:Object, which enveloped removes (XSW8)."""
    header = root.find(f"{ENV}Header")
    assert header is not None
    root.replace(header, forged_header(header))
    etree.SubElement(root[-1], f"{DS}Object").append(header)


def signed_message_in_an_object_of_a_forged_one(root: etree._Element) -> etree._Element:
    """A forged, unsigned Message whose last child is a ds:Object holding the untouched signed Message."""
    forged = deepcopy(root)
    forged.remove(forged[-1])
    header = forged.find(f"{ENV}Header")
    assert header is not None
    forged.replace(header, forged_header(header))
    # The ds prefix declared on the Object, so that moving the Message keeps its signature's prefix.
    etree.SubElement(forged, f"{DS}Object", nsmap={"ds": DSIG_NS}).append(root)
    return forged


def signed_message_in_the_header_of_a_forged_one(root: etree._Element) -> etree._Element:
    """A forged Message carrying a copy of the genuine signature last, the signed Message hidden in its Header."""
    forged = deepcopy(root)
    header = forged.find(f"{ENV}Header")
    assert header is not None
    forged.replace(header, forged_header(header))
    forged_header_element = forged.find(f"{ENV}Header")
    assert forged_header_element is not None
    forged_header_element.append(root)
    return forged


def test_a_forged_header_shown_while_the_signed_one_hides_in_the_signature_is_refused(pki: Pki) -> None:
    root = parse_xml(signed("ExportAuthorization", pki.signers["DE"]))
    original_header_inside_the_signature(root)
    assert read_header(root).recipient == "IN"  # what a careless reader would route on
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_with_xmlsec(root, pki.signers["DE"].chain[0], XMLSEC)
    with pytest.raises(SignatureInvalid):
        verified_by(XMLSEC, serialize(root), pki)


@pytest.mark.parametrize(
    "wrap", [signed_message_in_an_object_of_a_forged_one, signed_message_in_the_header_of_a_forged_one]
)
def test_a_signed_message_moved_inside_a_forged_one_is_refused(pki: Pki, wrap: object) -> None:
    forged = wrap(parse_xml(signed("ExportAuthorization", pki.signers["DE"])))  # type: ignore[operator]
    assert read_header(forged).recipient == "IN"
    with pytest.raises(SignatureInvalid, match="exactly one ds:Signature"):
        verify_with_xmlsec(forged, pki.signers["DE"].chain[0], XMLSEC)
    with pytest.raises(SignatureInvalid):
        verified_by(XMLSEC, serialize(forged), pki)


def test_the_signed_message_taken_out_of_a_wrapper_yields_only_itself(pki: Pki) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"])
    forged = parse_xml(serialize(signed_message_in_an_object_of_a_forged_one(parse_xml(data))))
    inner = forged[-1][0]
    returned = verify_with_xmlsec(inner, pki.signers["DE"].chain[0], XMLSEC)
    assert read_header(returned).recipient == "CH"
    assert canonical(returned) == canonical(verified_by(SIGNXML, data, pki).signed)


@pytest.mark.parametrize(("old", "new"), [(b">500</", b">5000</"), (b"<To>CH</To>", b"<To>IN</To>")])
def test_a_tampered_message_fails_with_signature_invalid(pki: Pki, old: bytes, new: bytes) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"])
    assert old in data
    tampered = data.replace(old, new)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_with_xmlsec(parse_xml(tampered), pki.signers["DE"].chain[0], XMLSEC)
    with pytest.raises(SignatureInvalid):
        verified_by(XMLSEC, tampered, pki)


def test_the_key_is_the_given_certificates_never_one_from_key_info(pki: Pki) -> None:
    # Signed by CH, with CH's chain in KeyInfo: checked against DE's certificate, it fails.
    data = signed("ExportAuthorization", pki.signers["CH"])
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_with_xmlsec(parse_xml(data), pki.signers["DE"].chain[0], XMLSEC)


def test_a_key_that_does_not_fit_the_signature_method_is_signature_invalid(pki: Pki) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"])  # ECDSA
    with pytest.raises(SignatureInvalid, match="cannot be checked"):
        verify_with_xmlsec(parse_xml(data), rsa_signer(pki).chain[0], XMLSEC)


def test_a_method_outside_the_policy_is_unsupported_even_without_the_shape_checks(pki: Pki) -> None:
    rsa_only = SignaturePolicy(
        backend="xmlsec", signature_methods=frozenset({"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"})
    )
    data = signed("ExportAuthorization", pki.signers["DE"])
    with pytest.raises(UnsupportedAlgorithm):
        verify_with_xmlsec(parse_xml(data), pki.signers["DE"].chain[0], rsa_only)


def test_a_schema_invalid_signature_is_refused_as_signxml_refuses_it(pki: Pki) -> None:
    root = parse_xml(signed("ExportAuthorization", pki.signers["DE"]))
    signature_value = root[-1].find(f"{DS}SignatureValue")
    assert signature_value is not None
    signature_value.set("unexpected", "x")  # outside what is digested, but not XML-DSig
    for backend in (SIGNXML, XMLSEC):
        with pytest.raises(SignatureInvalid):
            verified_by(backend, serialize(root), pki)


# --------------------------------------------------------------------------------------------
# Choosing the backend
# --------------------------------------------------------------------------------------------


def test_an_unknown_backend_is_refused_when_the_policy_is_built() -> None:
    with pytest.raises(ValueError, match="unknown XML-DSig backend"):
        SignaturePolicy(backend="lxml")  # type: ignore[arg-type]


def test_the_default_backend_is_signxml_and_does_not_import_xmlsec() -> None:
    assert SignaturePolicy().backend == "signxml"
    script = (
        "import sys\n"
        "from gateway.signature import DEFAULT_POLICY\n"
        "assert DEFAULT_POLICY.backend == 'signxml'\n"
        "assert 'xmlsec' not in sys.modules and 'gateway.dsig_xmlsec' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2])
