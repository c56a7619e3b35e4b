"""Section 3: safe reading. Size first, then the constructs the contract forbids, then the schema."""

from __future__ import annotations

import pytest

from gateway.errors import ForbiddenXmlConstruct, MalformedXml, MessageTooLarge, ReasonCode, SchemaInvalid
from gateway.reading import ReadingPolicy, parse_xml, read_message
from gateway.settings import PROJECT_ROOT
from tests.support.pki import EXAMPLES

POLICY = ReadingPolicy.load(PROJECT_ROOT / "schemas", 1024 * 1024)
EXAMPLE = (EXAMPLES / "ExportAuthorization.xml").read_bytes()


def test_every_example_of_the_contract_reads_and_validates() -> None:
    for path in sorted(EXAMPLES.glob("*.xml")):
        read_message(path.read_bytes(), POLICY)


def test_a_message_over_the_limit_is_refused_before_it_is_parsed() -> None:
    policy = ReadingPolicy(max_bytes=100, schema=POLICY.schema)
    with pytest.raises(MessageTooLarge) as caught:
        read_message(b"<" * 101, policy)  # not XML at all: the size is checked first
    assert caught.value.code is ReasonCode.MESSAGE_TOO_LARGE


def test_a_doctype_is_a_forbidden_construct() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE Message [<!ENTITY x "y">]><Message xmlns="urn:i2es:envelope:1">&x;</Message>'
    )
    with pytest.raises(ForbiddenXmlConstruct):
        parse_xml(data)


def test_billion_laughs_is_refused_without_expanding_anything() -> None:
    entities = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};&l{i - 1};&l{i - 1};">' for i in range(1, 10))
    data = f'<!DOCTYPE m [<!ENTITY l0 "ha">{entities}]><m>&l9;</m>'.encode()
    with pytest.raises(ForbiddenXmlConstruct):
        parse_xml(data)


def test_a_processing_instruction_is_a_forbidden_construct() -> None:
    data = EXAMPLE.replace(b"<Header>", b"<?evil data?><Header>")
    with pytest.raises(ForbiddenXmlConstruct, match="processing instruction"):
        parse_xml(data)


def test_a_comment_inside_signed_text_is_a_forbidden_construct() -> None:
    data = EXAMPLE.replace(b"<From>DE</From>", b"<From>D<!---->E</From>")
    with pytest.raises(ForbiddenXmlConstruct, match="comment"):
        parse_xml(data)


def test_a_comment_outside_the_root_is_a_forbidden_construct() -> None:
    with pytest.raises(ForbiddenXmlConstruct):
        parse_xml(EXAMPLE + b"<!-- trailing -->")


def test_broken_xml_is_malformed() -> None:
    with pytest.raises(MalformedXml) as caught:
        parse_xml(EXAMPLE[:-20])
    assert caught.value.code is ReasonCode.MALFORMED_XML


def test_invalid_utf8_is_malformed() -> None:
    with pytest.raises(MalformedXml, match="UTF-8"):
        parse_xml(EXAMPLE.replace(b"Pratteln", b"Pratt\xffeln"))


def test_another_declared_encoding_is_malformed() -> None:
    latin = EXAMPLE.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"').replace("ü".encode(), b"u")
    with pytest.raises(MalformedXml, match="UTF-8"):
        parse_xml(latin)


def test_a_nul_byte_is_malformed() -> None:
    with pytest.raises(MalformedXml):
        parse_xml(EXAMPLE.replace(b"Pratteln", b"Pratt\x00eln"))


def test_a_schema_failure_names_the_line_and_path_of_the_first_error() -> None:
    data = EXAMPLE.replace(b'<Quantity unit="g">500</Quantity>', b'<Quantity unit="g">5e2</Quantity>')
    with pytest.raises(SchemaInvalid) as caught:
        read_message(data, POLICY)
    assert caught.value.code is ReasonCode.SCHEMA_INVALID
    assert "line 54" in caught.value.message
    assert "Quantity" in caught.value.message
