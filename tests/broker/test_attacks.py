"""The attack catalogue (tests/data/attacks) sent through the real hub, every attack freshly signed with DE's key.

Each attack is answered with one signed acknowledgement naming the reason code that index.csv gives
(a positive control: ACCEPTED and routed unchanged); nothing refused reaches the recipient; and
after the whole catalogue the hub still accepts and routes a normal message.
"""

from __future__ import annotations

import csv
import re
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters import Adapter
from certs.authority import Profile
from certs.signer import FileSigner
from tests.data.attacks import generate
from tests.support.hub import RunningHub
from tests.support.pki import header_of, signed

with generate.INDEX.open(encoding="utf-8", newline="") as index:
    ROWS = list(csv.DictReader(index))

# Every attack, the 1 MiB ones included, is answered at once; a hub that hangs or dies fails here.
ANSWER_WITHIN = 10.0


def name_of(row: dict[str, str]) -> str:
    return row["file"].removesuffix(".xml")


def properties_of(data: bytes) -> tuple[str, str]:
    """The AMQP message_id and type a sender would set, read from the text where it can be."""
    message_id = re.search(rb"<MessageId>([^<]*)</MessageId>", data)
    type_ = re.search(rb"<Type>([^<]*)</Type>", data)
    return (
        message_id[1].decode() if message_id else str(uuid.uuid4()),
        type_[1].decode() if type_ else "ExportAuthorization",
    )


async def assert_not_routed(recipient: Adapter) -> None:
    with pytest.raises(TimeoutError):
        await recipient.next_delivery(timeout=0.5)


@pytest.fixture(scope="module")
def keys(hub: RunningHub) -> generate.Keys:
    """DE's signing key and chain as the hub issued them, and an RSA key the hub's CA certifies for DE."""
    authority = hub.home.authority()
    key = rsa.generate_private_key(65537, 2048)
    certificate = authority.issue(key.public_key(), "DE", "BfArM", Profile.SIGNING, datetime.now(UTC))
    return generate.Keys(hub.home.participant_signer("DE"), FileSigner(key, (certificate, authority.issuing)))


def test_the_sample_files_and_the_index_are_what_the_generator_writes() -> None:
    keys = generate.fixed_keys()
    assert [row["file"] for row in ROWS] == [f"{name}.xml" for name in generate.ATTACKS]
    for row in ROWS:
        attack = generate.ATTACKS[name_of(row)]
        assert (row["expected"], row["description"]) == (attack.expected, attack.description)
        sample = (generate.HERE / row["file"]).read_bytes()
        assert sample == generate.sample(attack.name, keys), f"{row['file']}: run python -m {generate.__name__}"


@pytest.mark.parametrize("row", ROWS, ids=[name_of(row) for row in ROWS])
async def test_every_attack_is_answered_with_its_reason_code_and_never_routed(
    hub: RunningHub, adapters: dict[str, Adapter], keys: generate.Keys, row: dict[str, str]
) -> None:
    # The shared adapters rather than the de/ch fixtures, which drain every queue for about two
    # seconds after each case: over sixty cases that would triple the module's time. Nothing may be
    # left behind anyway (a refused attack must reach no one), and the tests below use de/ch.
    de, ch = adapters["DE"], adapters["CH"]
    data = generate.build(name_of(row), keys, datetime.now(UTC), max_bytes=hub.settings.max_message_bytes)
    message_id, type_ = properties_of(data)
    ack = await de.publish(data, message_id=message_id, type=type_, timeout=ANSWER_WITHIN)
    if row["expected"] == generate.ACCEPTED:
        assert (ack.status, ack.reasons) == ("ACCEPTED", ())
        delivery = await ch.next_delivery(timeout=10)
        assert delivery.raw == data
        await delivery.ack()
    else:
        assert ack.status == "REJECTED"
        assert [code for code, _ in ack.reasons] == [row["expected"]], ack.reasons
        await assert_not_routed(ch)


async def test_a_utf8_byte_order_mark_is_allowed_and_a_valid_message_with_one_is_accepted(
    hub: RunningHub, de: Adapter, ch: Adapter
) -> None:
    # XML 1.0 (section 4.3.3) lets a UTF-8 document start with a byte order mark: not an attack.
    data = b"\xef\xbb\xbf" + signed("ExportAuthorization", hub.home.participant_signer("DE"))
    header = header_of(data)
    ack = await de.publish(data, message_id=header.message_id, type=header.type)
    assert (ack.status, ack.reasons) == ("ACCEPTED", ())
    delivery = await ch.next_delivery(timeout=10)
    assert delivery.raw == data
    await delivery.ack()


async def test_after_the_whole_catalogue_the_hub_still_accepts_and_routes_a_signed_message(
    hub: RunningHub, de: Adapter, ch: Adapter
) -> None:
    data = signed("ExportAuthorization", hub.home.participant_signer("DE"))
    ack = await de.send_signed(data)
    assert ack.accepted
    delivery = await ch.next_delivery(timeout=10)
    assert delivery.raw == data
    await delivery.ack()
