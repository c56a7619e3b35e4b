"""The XML Schemas in schemas/ state the contract's documents (sections 3, 5 and 6) formally.

Every example of the contract validates; each negative case changes one thing in an example
and must fail validation, on the element it changed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import pytest
from lxml import etree

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.xml"))

ENV = "{urn:i2es:envelope:1}"
DOC = "{urn:i2es:authorization:1}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"

SCHEMA = etree.XMLSchema(etree.parse(str(SCHEMAS / "envelope.xsd")))


def example(name: str) -> etree._ElementTree:
    return etree.parse(str(EXAMPLES / name))


def errors(tree: etree._ElementTree) -> str:
    """The schema's error messages for a document, empty when it is valid."""
    SCHEMA.validate(tree)
    return "\n".join(error.message for error in cast(Any, SCHEMA.error_log))  # the stubs lack __iter__


def assert_valid(tree: etree._ElementTree) -> None:
    assert errors(tree) == ""


def assert_invalid(tree: etree._ElementTree, about: str) -> None:
    """Invalid, and the first error names the element (or value) the test changed."""
    assert not SCHEMA.validate(tree)
    assert about in cast(Any, SCHEMA.error_log)[0].message, errors(tree)


def first(tree: etree._ElementTree, tag: str) -> etree._Element:
    element = tree.find(f".//{tag}")
    assert element is not None, tag
    return element


# --- the examples ---------------------------------------------------------------------------


def test_the_examples_are_there() -> None:
    assert EXAMPLE_FILES, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_every_example_of_the_contract_validates(path: Path) -> None:
    assert_valid(etree.parse(str(path)))


def test_a_signed_message_validates_too_the_signature_is_checked_elsewhere() -> None:
    tree = example("ExportAuthorization.xml")
    signature = etree.SubElement(tree.getroot(), f"{DS}Signature")
    etree.SubElement(signature, f"{DS}SignedInfo")
    assert_valid(tree)


# --- the envelope ---------------------------------------------------------------------------


def test_created_at_without_a_time_zone_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    first(tree, f"{ENV}CreatedAt").text = "2026-11-23T10:00:00"
    assert_invalid(tree, "CreatedAt")


def test_a_message_id_that_is_not_a_uuid_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    first(tree, f"{ENV}MessageId").text = "DE-2026-000001"
    assert_invalid(tree, "MessageId")


def test_a_body_with_two_documents_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    body = first(tree, f"{ENV}Body")
    body.append(copy.deepcopy(body[0]))
    assert_invalid(tree, "ExportAuthorization")


def test_a_body_whose_document_is_in_another_namespace_is_invalid() -> None:
    tree = example("Receipt.xml")
    document = first(tree, f"{ENV}Body")[0]
    document.tag = "{urn:example:other}Receipt"
    assert_invalid(tree, "{urn:example:other}Receipt")


# --- items and quantities -------------------------------------------------------------------


def test_a_quantity_written_as_a_float_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    first(tree, f"{DOC}Quantity").text = "1e3"
    assert_invalid(tree, "Quantity")


def test_a_negative_quantity_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    first(tree, f"{DOC}AnhydrousBase").text = "-376.03"
    assert_invalid(tree, "AnhydrousBase")


def test_an_unknown_unit_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    first(tree, f"{DOC}Quantity").set("unit", "lb")
    assert_invalid(tree, "unit")


def test_two_items_with_the_same_line_are_invalid() -> None:
    tree = example("ImportAuthorization.xml")
    second = tree.findall(f".//{DOC}Item")[1]
    second.set("line", "1")
    assert_invalid(tree, "Duplicate")


def test_a_pre_export_notification_item_is_a_1988_precursor() -> None:
    tree = example("PreExportNotification.xml")
    first(tree, f"{DOC}ControlRegime").text = "1961"
    assert_invalid(tree, "ControlRegime")


# --- codes and enumerations -----------------------------------------------------------------


def test_a_lower_case_country_code_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    first(tree, f"{DOC}IssuingCountry").text = "ch"
    assert_invalid(tree, "IssuingCountry")


def test_an_unknown_mode_of_transport_is_invalid() -> None:
    tree = example("ExportAuthorization.xml")
    first(tree, f"{DOC}ModeOfTransport").text = "SHIP"
    assert_invalid(tree, "ModeOfTransport")


# --- the hub's answers ----------------------------------------------------------------------


def reason(code: str, text: str) -> etree._Element:
    element = etree.Element(f"{DOC}Reason", code=code)
    element.text = text
    return element


def test_an_acknowledgement_keeps_its_order_reasons_after_the_ledger_sequence() -> None:
    tree = example("Acknowledgement.xml")
    first(tree, f"{DOC}LedgerSequence").addnext(reason("AUTHORIZATION_EXPIRED", "Expired on 2027-02-21."))
    assert_valid(tree)


def test_an_acknowledgement_with_the_ledger_sequence_after_a_reason_is_invalid() -> None:
    tree = example("Acknowledgement.xml")
    first(tree, f"{DOC}LedgerSequence").addprevious(reason("AUTHORIZATION_EXPIRED", "Expired on 2027-02-21."))
    assert_invalid(tree, "LedgerSequence")


NOTICE_ABOUT_AN_AUTHORIZATION = """\
<Message xmlns="urn:i2es:envelope:1">
  <Header>
    <MessageId>2b4d6f8a-0c1e-4a3b-9d5f-7a9c1e3b5d77</MessageId>
    <From>HUB</From>
    <To>DE</To>
    <Type>Notice</Type>
    <CreatedAt>2026-12-03T14:30:02Z</CreatedAt>
    <ConversationId>9d7e5c3b-1a2f-4b6c-8d9e-0f1a2b3c4d5e</ConversationId>
    <RefToMessageId>c4e8a1b2-5d6f-4a7b-9c0d-1e2f3a4b5c66</RefToMessageId>
  </Header>
  <Body>
    <Notice xmlns="urn:i2es:authorization:1">
      <Kind>QUANTITY_DISCREPANCY</Kind>
      <AuthorizationRef>
        <Type>ExportAuthorization</Type>
        <Number>DE-EXP-2026-018352</Number>
        <IssuingCountry>DE</IssuingCountry>
        <IssueDate>2026-11-23</IssueDate>
      </AuthorizationRef>
      <Text>The endorsement of DE-EXP-2026-018352 reports 480 g imported on line 1; 500 g were authorized.</Text>
      <Details>Line 1, morphine sulfate pentahydrate: authorized 500 g, imported 480 g.</Details>
    </Notice>
  </Body>
</Message>
"""

NOTICE_ABOUT_A_CERTIFICATE = """\
<Message xmlns="urn:i2es:envelope:1">
  <Header>
    <MessageId>8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5f66</MessageId>
    <From>HUB</From>
    <To>CH</To>
    <Type>Notice</Type>
    <CreatedAt>2026-12-01T06:00:00+01:00</CreatedAt>
  </Header>
  <Body>
    <Notice xmlns="urn:i2es:authorization:1">
      <Kind>CERTIFICATE_EXPIRING</Kind>
      <Certificate>
        <Serial>5F3A9C0E1B2D4F6A</Serial>
        <NotAfter>2026-12-31T23:59:59Z</NotAfter>
      </Certificate>
      <Text>Your signing certificate expires on 2026-12-31; ask the hub's operator for a new one.</Text>
    </Notice>
  </Body>
</Message>
"""


@pytest.mark.parametrize(
    "text", [NOTICE_ABOUT_AN_AUTHORIZATION, NOTICE_ABOUT_A_CERTIFICATE], ids=["authorization", "certificate"]
)
def test_a_notice_names_what_it_is_about_and_validates(text: str) -> None:
    assert_valid(etree.ElementTree(etree.fromstring(text.encode())))
