"""A participant hears of an expiring certificate before it expires: a warning on its acks, and Notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters import Adapter
from certs.authority import Profile
from certs.keys import generate_key
from certs.signer import FileSigner
from gateway.envelope import body_document
from gateway.reading import DOCUMENT_NS
from gateway.registry import Registry
from tests.support.hub import RunningHub
from tests.support.pki import signed


def issue_short_lived(hub: RunningHub, code: str, days: int) -> FileSigner:
    authority = hub.home.authority()
    key = generate_key()
    now = datetime.now(UTC)
    certificate = authority.issue(key.public_key(), code, code, Profile.SIGNING, now, timedelta(days=days))
    registry = Registry(hub.settings.ledger_path)
    try:
        registry.record_certificate(certificate, Profile.SIGNING, now)
    finally:
        registry.close()
    return FileSigner(key, (certificate, authority.issuing))


async def test_a_message_signed_with_a_certificate_expiring_within_30_days_is_accepted_with_a_warning(
    hub: RunningHub, de: Adapter, ch: Adapter
) -> None:
    signer = issue_short_lived(hub, "DE", days=20)
    ack = await de.send_signed(signed("Clarification", signer))
    assert ack.accepted
    assert "CERTIFICATE_EXPIRES_SOON" in [code for code, _ in ack.warnings]
    await (await ch.next_delivery(timeout=10)).ack()


async def test_the_hub_sends_one_notice_for_a_certificate_about_to_expire(
    hub: RunningHub, adapters: dict[str, Adapter]
) -> None:
    receiver = adapters["IN"]
    signer = issue_short_lived(hub, "IN", days=5)
    notice = await receiver.next_delivery(timeout=15)  # the hub's scheduler runs every half second in tests
    await notice.ack()
    assert notice.verified is not None and notice.verified.signer_code == "HUB"
    document = body_document(notice.verified.signed)
    assert document.findtext(f"{{{DOCUMENT_NS}}}Kind") == "CERTIFICATE_EXPIRING"
    serial = f"{signer.chain[0].serial_number:x}"
    assert document.findtext(f"{{{DOCUMENT_NS}}}Certificate/{{{DOCUMENT_NS}}}Serial") == serial
    assert "4 day(s) left" in (document.findtext(f"{{{DOCUMENT_NS}}}Text") or "")
    try:
        extra = await receiver.next_delivery(timeout=2)
    except TimeoutError:
        extra = None
    assert extra is None, "the 7- and 30-day notices are not sent again for a certificate already noticed at 7"
