"""Safe reading of inbound bytes: the only place that parses XML from the outside world.

Order matters: size before parsing, forbidden constructs before anything reads the tree,
schema last. Every failure raises a ``ReadingError`` with the contract's reason code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from lxml import etree

from gateway.errors import ForbiddenXmlConstruct, MalformedXml, MessageTooLarge, SchemaInvalid

ENVELOPE_NS = "urn:i2es:envelope:1"
DOCUMENT_NS = "urn:i2es:authorization:1"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

_UTF8_BOM = b"\xef\xbb\xbf"


def _hardened_parser() -> etree.XMLParser:
    # No DTD, no entity expansion, no network, no huge trees: the classic XML attacks
    # (billion laughs, XXE, quadratic blow-up) need one of these.
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        remove_blank_text=False,
        collect_ids=False,
    )


_PARSER = _hardened_parser()


@dataclass(frozen=True)
class ReadingPolicy:
    """What the hub accepts before it looks at signatures."""

    max_bytes: int
    schema: etree.XMLSchema

    @classmethod
    def load(cls, schema_dir: Path, max_bytes: int) -> ReadingPolicy:
        return cls(max_bytes=max_bytes, schema=load_schema(schema_dir))


def load_schema(schema_dir: Path) -> etree.XMLSchema:
    """Compile the envelope schema (which imports the documents' schema) once."""
    doc = etree.parse(str(schema_dir / "envelope.xsd"), _hardened_parser())
    return etree.XMLSchema(doc)


def parse_xml(data: bytes) -> etree._Element:
    """Parse bytes with the hardened parser and refuse every construct the contract forbids.

    Returns the root element. Does not validate against the schema.
    """
    body = data.removeprefix(_UTF8_BOM)
    # A DTD is refused before the parser sees it, so no entity is ever declared.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ForbiddenXmlConstruct("a DOCTYPE or entity declaration is not allowed")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedXml(f"the document is not valid UTF-8 (byte {exc.start})") from None
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise MalformedXml(f"not well-formed XML: {exc}") from None
    tree = root.getroottree()
    encoding = (tree.docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8"):
        raise MalformedXml(f"the document declares encoding {encoding}; the contract requires UTF-8")
    _refuse_forbidden_nodes(root)
    return root


def _refuse_forbidden_nodes(root: etree._Element) -> None:
    siblings = [*root.itersiblings(preceding=True), *root.itersiblings()]
    for node in [*siblings, *root.iter(etree.Comment, etree.ProcessingInstruction, etree.Entity)]:
        if isinstance(node, etree._Comment):
            # A comment inside signed text (D<!---->E) lets two readers see different values.
            raise ForbiddenXmlConstruct(f"an XML comment is not allowed (line {node.sourceline})")
        if isinstance(node, etree._ProcessingInstruction):
            raise ForbiddenXmlConstruct(f"a processing instruction is not allowed (line {node.sourceline})")
        if isinstance(node, etree._Entity):
            raise ForbiddenXmlConstruct(f"an entity reference is not allowed (line {node.sourceline})")


def validate(root: etree._Element, schema: etree.XMLSchema) -> None:
    """Validate a parsed message against the contract's schema, naming the first error's line and path."""
    if schema.validate(root):
        return
    error = cast(Any, schema.error_log)[0]  # the stubs lack __getitem__; lxml has it
    path = error.path or "/"
    raise SchemaInvalid(f"line {error.line}, {path}: {error.message}")


def read_message(data: bytes, policy: ReadingPolicy) -> etree._Element:
    """Size check, hardened parse, forbidden constructs, schema: the whole reading step."""
    if len(data) > policy.max_bytes:
        raise MessageTooLarge(f"the message has {len(data)} bytes; the hub accepts at most {policy.max_bytes} bytes")
    root = parse_xml(data)
    validate(root, policy.schema)
    return root
