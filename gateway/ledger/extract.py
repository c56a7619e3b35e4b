"""A signed extract of the ledger for auditors: entries with their chain hashes, signed by the hub.

The extract is one XML document signed with the contract's signature profile, so `xmlsec1 --verify
--trusted-pem <hub CA>` checks it; `i2es ledger verify --extract FILE` also recomputes its hash chain.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime

from lxml import etree

from gateway.envelope import format_instant
from gateway.ledger.chain import CHAINED_FIELDS, ChainedEntry

LEDGER_NS = "urn:i2es:ledger:1"


def _q(name: str) -> str:
    return f"{{{LEDGER_NS}}}{name}"


def build_extract(
    entries: Sequence[ChainedEntry], bodies: Sequence[bytes], previous_hash: str, now: datetime
) -> etree._Element:
    """The unsigned extract: for each entry its sequence, hash, chained fields and the exact bytes received."""
    root = etree.Element(_q("LedgerExtract"), nsmap={None: LEDGER_NS})  # type: ignore[dict-item]
    root.set("previousHash", previous_hash)
    root.set("exportedAt", format_instant(now))
    for entry, body in zip(entries, bodies, strict=True):
        element = etree.SubElement(root, _q("Entry"), sequence=str(entry.sequence), hash=entry.hash)
        for name in CHAINED_FIELDS:
            value = entry.fields.get(name)
            if value is not None:
                etree.SubElement(element, _q(name)).text = str(value)
        etree.SubElement(element, _q("body")).text = base64.b64encode(body).decode("ascii")
    return root


def read_extract(signed: etree._Element) -> tuple[str, list[ChainedEntry]]:
    """The previous hash and the entries of a verified extract, with the body digests recomputed."""
    entries = []
    for element in signed.iterfind(_q("Entry")):
        fields: dict[str, object] = {name: element.findtext(_q(name)) for name in CHAINED_FIELDS}
        body = base64.b64decode(element.findtext(_q("body")) or "")
        fields["body_sha256"] = hashlib.sha256(body).hexdigest()
        entries.append(ChainedEntry(int(element.get("sequence", "0")), element.get("hash", ""), fields))
    return signed.get("previousHash", ""), entries
