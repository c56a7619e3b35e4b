"""The crypto ceiling: the hub's read, verify and acknowledge steps alone, in one process, on one core.

No broker, no ledger, no rules, no revocation lookup: ``read_message`` (hardened parse and schema),
``verify_envelope`` (signature shape, chain to the anchors from a warmed trust store, XML-DSig) and
``sign_acknowledgement`` (an ACCEPTED acknowledgement with three warnings, like the hub's answers here).

``measure_crypto_all_cores`` does the same work in a pool of worker processes, one per core by default, each
with a trust store of its own that it warms before the clock starts: what the machine gives, not the hub.

``measure_crypto_paced`` does it one message at a time on a clock, as a hub sees messages at a low rate, and
compares the CPU time a message takes that way with back to back: what the machine charges for coming back to
work after a pause, whatever the program.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from threading import BrokenBarrierError
from typing import Any

from cryptography import x509

from bench._messages import Outgoing
from certs.signer import Signer
from certs.trust import TrustStore
from gateway.acknowledgement import sign_acknowledgement
from gateway.errors import WarningCode
from gateway.home import Home
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


def _warm(trust: TrustStore, messages: Sequence[Outgoing], reading: ReadingPolicy, now: datetime) -> None:
    """Like a running hub, have the trust store check each sender's chain once."""
    for sender in {m.sender for m in messages}:
        first = next(m for m in messages if m.sender == sender)
        verify_envelope(read_message(first.body, reading), trust, now)


def _handle(
    message: Outgoing, sequence: int, reading: ReadingPolicy, trust: TrustStore, hub: Signer, now: datetime
) -> tuple[float, float, float]:
    """Read, verify and acknowledge one message; the seconds each of the three steps took."""
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
    return parsed - started, checked - parsed, signed - checked


def measure_crypto(
    messages: Sequence[Outgoing], reading: ReadingPolicy, anchors: tuple[x509.Certificate, ...], hub: Signer
) -> CryptoCeiling:
    """The three steps over ``messages``, one after the other in this process, timed step by step."""
    trust = TrustStore(anchors)
    now = datetime.now(UTC)
    _warm(trust, messages, reading, now)
    read = verify = sign = 0.0
    for sequence, message in enumerate(messages, start=1):
        parsed, checked, signed = _handle(message, sequence, reading, trust, hub, now)
        read += parsed
        verify += checked
        sign += signed
    return CryptoCeiling(len(messages), read, verify, sign)


@dataclass(frozen=True)
class ParallelCrypto:
    """The three steps over the messages, shared by ``workers`` processes: wall-clock seconds, all included."""

    messages: int
    workers: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


@dataclass(frozen=True)
class PacedCrypto:
    """The three steps' CPU time a message (this thread's), back to back and one every ``interval_ms``."""

    messages: int
    interval_ms: float
    back_to_back_ms: float
    paced_ms: float

    @property
    def slowdown(self) -> float:
        return self.paced_ms / self.back_to_back_ms


def measure_crypto_paced(
    messages: Sequence[Outgoing],
    reading: ReadingPolicy,
    anchors: tuple[x509.Certificate, ...],
    hub: Signer,
    interval: float,
) -> PacedCrypto:
    """The three steps over ``messages`` back to back, then again starting one every ``interval`` seconds (open
    loop, like the bench's offered rate), sleeping in between; each time the CPU time this thread used."""
    trust = TrustStore(anchors)
    now = datetime.now(UTC)
    _warm(trust, messages, reading, now)

    def cpu_ms(pace: float) -> float:
        used = 0.0
        due = time.perf_counter()
        for sequence, message in enumerate(messages, start=1):
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            due += pace
            started = time.thread_time()
            _handle(message, sequence, reading, trust, hub, now)
            used += time.thread_time() - started
        return used / len(messages) * 1000

    back_to_back = cpu_ms(0.0)
    return PacedCrypto(len(messages), interval * 1000, back_to_back, cpu_ms(interval))


# One worker process's state, set by _start_worker before it takes any task.
_worker: dict[str, Any] = {}
BARRIER_TIMEOUT = 300.0


def _start_worker(home: Path, schema_dir: Path, max_bytes: int, messages: Sequence[Outgoing], ready: Any) -> None:
    """Load the policy, the anchors and the hub's key, warm a trust store, then wait until every worker has."""
    reading = ReadingPolicy.load(schema_dir, max_bytes)
    now = datetime.now(UTC)
    trust = TrustStore(tuple(Home(home).anchors()))
    _warm(trust, messages, reading, now)
    _worker.update(reading=reading, trust=trust, hub=Home(home).hub_signer(), now=now, messages=messages)
    with contextlib.suppress(BrokenBarrierError):  # a worker that waited too long is ready all the same
        ready.wait(BARRIER_TIMEOUT)


def _ping(_: int) -> int:
    """Nothing: once one worker runs it, every worker is ready (they wait for each other at the start)."""
    return os.getpid()


def _handle_range(bounds: tuple[int, int]) -> int:
    """Handle the worker's copy of messages ``start`` to ``stop``; returns how many."""
    start, stop = bounds
    w = _worker
    for index in range(start, stop):
        _handle(w["messages"][index], index + 1, w["reading"], w["trust"], w["hub"], w["now"])
    return stop - start


def _ranges(count: int, parts: int) -> list[tuple[int, int]]:
    """``range(count)`` cut into ``parts`` consecutive slices of nearly equal size, none empty."""
    size = max(1, -(-count // parts))
    return [(start, min(count, start + size)) for start in range(0, count, size)]


def measure_crypto_all_cores(
    messages: Sequence[Outgoing], home: Path, schema_dir: Path, max_bytes: int, workers: int | None = None
) -> ParallelCrypto:
    """The three steps over ``messages`` in ``workers`` processes (default: one per CPU), timed from the first
    task handed out to the last one done, after every worker has loaded its keys and warmed its trust store."""
    count = workers or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(count)
    initargs = (home, schema_dir, max_bytes, list(messages), ready)
    with context.Pool(count, initializer=_start_worker, initargs=initargs) as pool:
        try:
            pool.map_async(_ping, range(count), chunksize=1).get(BARRIER_TIMEOUT)
        except multiprocessing.TimeoutError:
            raise RuntimeError(f"the crypto workers were not ready within {BARRIER_TIMEOUT:.0f} s") from None
        tasks = _ranges(len(messages), count * 8)
        started = time.perf_counter()
        done = sum(pool.map(_handle_range, tasks, chunksize=1))
        seconds = time.perf_counter() - started
    return ParallelCrypto(done, count, seconds)
