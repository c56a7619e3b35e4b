"""Section 4: what the hub accepts as a signature, and the reason code for everything else.

Every test that verifies runs with both backends (the ``policy`` fixture): signxml and xmlsec must
accept the same messages and refuse the others with the same reason code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from certs.trust import TrustStore
from gateway.errors import ReasonCode
from gateway.reading import DSIG_NS, parse_xml
from gateway.signature import SignaturePolicy, verify_envelope
from tests.support.pki import Pki, envelope_of, make_pki, sign_with, signed

DS = f"{{{DSIG_NS}}}"
NOW = datetime.now(UTC)


def verify(data: bytes, pki: Pki, policy: SignaturePolicy, now: datetime = NOW) -> object:
    return verify_envelope(parse_xml(data), TrustStore(pki.anchors), now, policy)


def reason_of(data: bytes, pki: Pki, policy: SignaturePolicy, trust: TrustStore | None = None) -> ReasonCode:
    from gateway.errors import GatewayError

    with pytest.raises(GatewayError) as caught:
        verify_envelope(parse_xml(data), trust or TrustStore(pki.anchors), NOW, policy)
    return caught.value.code


def edit(data: bytes, change: object) -> bytes:
    root = parse_xml(data)
    change(root)  # type: ignore[operator]
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_message_signed_by_a_registered_participant_verifies_and_names_its_signer(
    pki: Pki, policy: SignaturePolicy
) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"])
    verified = verify_envelope(parse_xml(data), TrustStore(pki.anchors), NOW, policy)
    assert verified.signer_code == "DE"
    assert verified.header.sender == "DE"
    assert verified.signed.find(f"{DS}Signature") is None  # only what was signed


@pytest.mark.parametrize(
    "method",
    [
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    ],
)
def test_every_accepted_ecdsa_method_verifies(pki: Pki, method: str, policy: SignaturePolicy) -> None:
    data = sign_with(envelope_of("ExportAuthorization"), pki.signers["DE"], method=method)
    verify(data, pki, policy)


@pytest.mark.parametrize(
    "method",
    [
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
    ],
)
def test_every_accepted_rsa_method_verifies(pki: Pki, method: str, policy: SignaturePolicy) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    signer = pki.signer("DE", key=rsa.generate_private_key(65537, 2048))
    verify(sign_with(envelope_of("ExportAuthorization"), signer, method=method), pki, policy)


def test_a_message_signed_with_sha1_is_rejected_with_unsupported_algorithm(pki: Pki, policy: SignaturePolicy) -> None:
    data = sign_with(
        envelope_of("ExportAuthorization"),
        pki.signers["DE"],
        method="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        digest="http://www.w3.org/2000/09/xmldsig#sha1",
    )
    assert reason_of(data, pki, policy) is ReasonCode.UNSUPPORTED_ALGORITHM


def test_ecdsa_sha512_is_not_on_the_list_and_is_rejected(pki: Pki, policy: SignaturePolicy) -> None:
    data = sign_with(
        envelope_of("ExportAuthorization"),
        pki.signers["DE"],
        method="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    )
    assert reason_of(data, pki, policy) is ReasonCode.UNSUPPORTED_ALGORITHM


def test_inclusive_c14n_is_rejected_with_unsupported_algorithm(pki: Pki, policy: SignaturePolicy) -> None:
    data = sign_with(
        envelope_of("ExportAuthorization"),
        pki.signers["DE"],
        method="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        c14n="http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    )
    assert reason_of(data, pki, policy) is ReasonCode.UNSUPPORTED_ALGORITHM


def test_an_unsigned_message_is_rejected_with_signature_missing(pki: Pki, policy: SignaturePolicy) -> None:
    data = etree.tostring(envelope_of("ExportAuthorization"))
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_MISSING


def test_a_changed_quantity_breaks_the_signature(pki: Pki, policy: SignaturePolicy) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"]).replace(b">500</", b">5000</")
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


def test_a_second_signature_is_rejected(pki: Pki, policy: SignaturePolicy) -> None:
    def add_second(root: etree._Element) -> None:
        from copy import deepcopy

        root.find("{urn:i2es:envelope:1}Header").append(deepcopy(root[-1]))  # type: ignore[union-attr]

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), add_second)
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


def test_a_signature_that_is_not_the_last_child_is_rejected(pki: Pki, policy: SignaturePolicy) -> None:
    def move_first(root: etree._Element) -> None:
        root.insert(0, root[-1])

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), move_first)
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


def test_a_ds_object_is_refused(pki: Pki, policy: SignaturePolicy) -> None:
    def add_object(root: etree._Element) -> None:
        etree.SubElement(root[-1], f"{DS}Object").text = "extra"

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), add_object)
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


@pytest.mark.parametrize("extra", ["KeyValue", "KeyName", "RetrievalMethod"])
def test_key_info_with_anything_but_x509_data_is_refused(pki: Pki, extra: str, policy: SignaturePolicy) -> None:
    def add(root: etree._Element) -> None:
        etree.SubElement(root[-1].find(f"{DS}KeyInfo"), f"{DS}{extra}")  # type: ignore[arg-type]

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), add)
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


def test_key_info_with_only_a_key_name_is_refused(pki: Pki, policy: SignaturePolicy) -> None:
    def replace(root: etree._Element) -> None:
        key_info = root[-1].find(f"{DS}KeyInfo")
        assert key_info is not None
        key_info.clear()
        etree.SubElement(key_info, f"{DS}KeyName").text = "DE"

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), replace)
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


def test_a_reference_to_an_id_instead_of_the_whole_message_is_refused(pki: Pki, policy: SignaturePolicy) -> None:
    def point_elsewhere(root: etree._Element) -> None:
        root[-1].find(f"{DS}SignedInfo/{DS}Reference").set("URI", "#body")  # type: ignore[union-attr]

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), point_elsewhere)
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


def test_an_xslt_transform_is_rejected_with_unsupported_algorithm(pki: Pki, policy: SignaturePolicy) -> None:
    def add_xslt(root: etree._Element) -> None:
        transforms = root[-1].find(f"{DS}SignedInfo/{DS}Reference/{DS}Transforms")
        etree.SubElement(transforms, f"{DS}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116")  # type: ignore[arg-type]

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), add_xslt)
    assert reason_of(data, pki, policy) is ReasonCode.UNSUPPORTED_ALGORITHM


def test_whitespace_and_carriage_returns_inside_base64_values_are_allowed(pki: Pki, policy: SignaturePolicy) -> None:
    def wrap_base64(root: etree._Element) -> None:
        for element in root[-1].iter(f"{DS}SignatureValue", f"{DS}X509Certificate", f"{DS}DigestValue"):
            text = (element.text or "").replace("\n", "")
            element.text = "\r\n".join(text[i : i + 64] for i in range(0, len(text), 64))

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), wrap_base64)
    assert b"&#13;" in data
    verify(data, pki, policy)


def test_a_certificate_from_another_ca_is_untrusted(pki: Pki, policy: SignaturePolicy) -> None:
    stranger = make_pki(("DE",))
    data = signed("ExportAuthorization", stranger.signers["DE"])
    assert reason_of(data, pki, policy) is ReasonCode.CERTIFICATE_UNTRUSTED


def test_an_expired_certificate_is_rejected_with_certificate_expired(pki: Pki, policy: SignaturePolicy) -> None:
    old = pki.signer("DE", lifetime=timedelta(days=1), now=NOW - timedelta(days=10))
    data = signed("ExportAuthorization", old)
    assert reason_of(data, pki, policy) is ReasonCode.CERTIFICATE_EXPIRED


def test_a_revoked_certificate_is_rejected_with_certificate_revoked(pki: Pki, policy: SignaturePolicy) -> None:
    signer = pki.signer("DE")

    class Revoked:
        def is_revoked(self, serial: int) -> bool:
            return serial == signer.chain[0].serial_number

    data = signed("ExportAuthorization", signer)
    assert (
        reason_of(data, pki, policy, TrustStore(pki.anchors, revocations=Revoked())) is ReasonCode.CERTIFICATE_REVOKED
    )


def test_a_weak_rsa_key_is_refused(pki: Pki) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from certs.authority import CsrRefused

    with pytest.raises(CsrRefused, match="1024"):
        pki.signer("DE", key=rsa.generate_private_key(65537, 1024))


def test_a_certificate_with_a_corrupt_subject_is_signature_invalid_not_a_crash(
    pki: Pki, policy: SignaturePolicy
) -> None:
    import base64

    def corrupt(root: etree._Element) -> None:
        element = root[-1].find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
        assert element is not None
        der = bytearray(base64.b64decode("".join((element.text or "").split())))
        subject = der.find(b"\x31")  # the first SET, inside a Name
        der[subject] = 0x8C  # a context-specific tag where a SET must be
        element.text = base64.b64encode(bytes(der)).decode()

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), corrupt)
    assert reason_of(data, pki, policy) in (ReasonCode.SIGNATURE_INVALID, ReasonCode.CERTIFICATE_UNTRUSTED)


def test_a_signature_value_that_is_not_base64_is_signature_invalid(pki: Pki, policy: SignaturePolicy) -> None:
    def break_base64(root: etree._Element) -> None:
        element = root[-1].find(f"{DS}SignatureValue")
        assert element is not None
        element.text = " " + (element.text or "")[1:]  # a space where a base64 digit was

    data = edit(signed("ExportAuthorization", pki.signers["DE"]), break_base64)
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID


def test_a_relative_namespace_that_breaks_canonicalization_is_signature_invalid(
    pki: Pki, policy: SignaturePolicy
) -> None:
    data = signed("ExportAuthorization", pki.signers["DE"]).replace(
        b"<ds:SignatureMethod ", b"<ds:SignatureMethod xmlns='x' ", 1
    )
    assert reason_of(data, pki, policy) is ReasonCode.SIGNATURE_INVALID
