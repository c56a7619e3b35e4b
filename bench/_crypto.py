"""The crypto ceiling: the hub's read, verify and acknowledge steps alone, in one process, on one core.

No broker, no ledger, no rules, no revocation lookup: ``read_message`` (hardened parse and schema),
``verify_envelope`` (signature shape, chain to the anchors from a warmed trust store, XML-DSig) and
``sign_acknowledgement`` (an ACCEPTED acknowledgement with three warnings, like the hub's answers here).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from bench._messages import Outgoing
from certs.signer import Signer
from certs.trust import TrustStore
from gateway.acknowledgement import sign_acknowledgement
from gateway.errors import WarningCode
from gateway.ledger.model import Finding
from gateway.reading import ReadingPolicy, read_message
from gateway.signature import verify_envelope

# The warnings the hub adds to these messages (no import authorization and no estimates on file).
WARNINGS = (
    Finding(WarningCode.REFERENCE_NOT_ON_FILE, "Import authorization CH-IMP-BENCH-000000000000 is not on file; "
            "checked as a paper authorization."),
    Finding(WarningCode.NO_ESTIMATE_ON_FILE, "no estimate or assessment of CH for morphine in 2026"),
    Finding(WarningCode.NO_ESTIMATE_ON_FILE, "no estimate or assessment of CH for codeine in 2026"),
)  # fmt: skip


@dataclass(frozen=True)
class CryptoCeiling:
    messages: int
    read_seconds: float
    verify_seconds: float
    sign_seconds: float

    @property
    def seconds(self) -> float:
        return self.read_seconds + self.verify_seconds + self.sign_seconds

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    def ms(self, seconds: float) -> float:
        return seconds / self.messages * 1000


def measure_crypto(
    messages: Sequence[Outgoing], reading: ReadingPolicy, anchors: tuple[x509.Certificate, ...], hub: Signer
) -> CryptoCeiling:
    trust = TrustStore(anchors)
    now = datetime.now(UTC)
    # Warm the trust store: like a running hub, it has already checked each sender's chain once.
    for sender in {m.sender for m in messages}:
        first = next(m for m in messages if m.sender == sender)
        verify_envelope(read_message(first.body, reading), trust, now)
    read = verify = sign = 0.0
    for sequence, message in enumerate(messages, start=1):
        started = time.perf_counter()
        root = read_message(message.body, reading)
        parsed = time.perf_counter()
        verified = verify_envelope(root, trust, now)
        checked = time.perf_counter()
        sign_acknowledgement(
            hub,
            to=verified.header.sender,
            ref_to_message_id=verified.header.message_id,
            conversation_id=verified.header.conversation_id,
            status="ACCEPTED",
            digest=hashlib.sha256(message.body).hexdigest(),
            received_at=now,
            sequence=sequence,
            reasons=(),
            warnings=WARNINGS,
            now=now,
        )
        signed = time.perf_counter()
        read += parsed - started
        verify += checked - parsed
        sign += signed - checked
    return CryptoCeiling(len(messages), read, verify, sign)
