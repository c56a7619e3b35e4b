"""Opening inbound messages (hardened parse, schema, signature and chain) in worker processes.

``open_message`` is the hub's costliest step and needs neither the ledger nor the trade record, so other
processes can do it. ``WorkerOpener`` keeps ``I2ES_WORKERS`` of them (``gateway.workers``), each with its own
schemas, trust anchors, chain cache and revocation lookup (the registry's SQLite file, read for every message as
in the hub itself). What arrives while a backlog waits in the hub is shared among them at once; each returns what
verification vouches for as bytes: the signed tree serialised, the header read from it, the certificates. When
the batch is recorded, the hub checks the chain again with its own trust store, at the batch's time, and parses
the signed bytes with its hardened parser: what the rules read is exactly what a worker verified.

``LocalOpener`` opens in the hub's own process, with its batch: with no workers, and for what arrives while
nothing waits (sooner than another process could be woken for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from certs.trust import TrustStore
from gateway.envelope import Header
from gateway.errors import GatewayError
from gateway.ledger.model import Finding
from gateway.pipeline import Checks, Inbound, Opened, internal_error, open_body, open_message
from gateway.reading import ReadingPolicy, parse_xml
from gateway.registry import Registry
from gateway.signature import SignaturePolicy, VerifiedMessage
from gateway.workers import Worker, WorkerFailed

log = structlog.get_logger("i2es.hub")


class Opener(Protocol):
    """Opens the messages of a batch; the results come in the order of ``inbounds``."""

    async def open_all(self, inbounds: Sequence[Inbound], now: datetime) -> list[Opened]: ...

    def begin(self, body: bytes, now: datetime) -> None:
        """A message has arrived: start opening it, so that it is ready when its batch is recorded."""

    async def warm_up(self) -> None:
        """Be ready before the first message (start the workers)."""

    async def stop(self) -> None:
        """Let go of what it holds (the workers), inside the event loop."""

    def close(self) -> None: ...


@dataclass
class LocalOpener:
    """``open_message`` in the hub's own process, one message after the other."""

    checks: Checks

    async def open_all(self, inbounds: Sequence[Inbound], now: datetime) -> list[Opened]:
        opened: list[Opened] = []
        for inbound in inbounds:
            opened.append(_open_here(inbound, self.checks, now))
            # Between two messages the event loop reads what arrived: the broker's confirms of the batch being
            # sent, which then goes on while this one is checked.
            await asyncio.sleep(0)
        return opened

    def begin(self, body: bytes, now: datetime) -> None:
        pass  # opened with its batch: there is nothing else for this process to do in between

    async def warm_up(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def _open_here(inbound: Inbound, checks: Checks, now: datetime) -> Opened:
    try:
        return open_message(inbound, checks, now)
    except Exception as error:  # the hub's own fault: record it and say so, the sender may resend
        log.exception("examine_failed")
        return Opened(None, None, internal_error(error))


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process builds its checks from: plain values, sent once when it starts."""

    schema_dir: Path
    max_message_bytes: int
    anchors: tuple[bytes, ...]  # DER
    registry_path: Path
    signature: SignaturePolicy


@dataclass(frozen=True)
class Sealed:
    """``Opened`` as bytes, for the way back from a worker."""

    claimed: Header | None
    refusal: Finding | None
    signed: bytes = b""
    chain: tuple[bytes, ...] = ()  # DER, the signer's first
    signature_method: str = ""
    header: Header | None = None


def opening_worker(setup: WorkerSetup) -> Callable[[Sequence[tuple[bytes, datetime]]], list[Sealed]]:
    """In a worker process (``gateway.workers``): build the checks once, return what opens messages."""
    anchors = tuple(x509.load_der_x509_certificate(der) for der in setup.anchors)
    reading = ReadingPolicy.load(setup.schema_dir, setup.max_message_bytes)
    trust = TrustStore(anchors, revocations=Registry(setup.registry_path))

    def handle(requests: Sequence[tuple[bytes, datetime]]) -> list[Sealed]:
        return [seal(body, reading, trust, setup.signature, now) for body, now in requests]

    return handle


def seal(body: bytes, reading: ReadingPolicy, trust: TrustStore, signature: SignaturePolicy, now: datetime) -> Sealed:
    """Open one message and seal what verification vouches for."""
    try:
        opened = open_body(body, reading, trust, now, signature)
    except Exception as error:  # the hub's own fault: the sender hears it may resend
        return Sealed(None, internal_error(error))
    verified = opened.verified
    if verified is None:
        return Sealed(opened.claimed, opened.refusal)
    return Sealed(
        opened.claimed,
        None,
        signed=etree.tostring(verified.signed),
        chain=tuple(c.public_bytes(Encoding.DER) for c in verified.chain),
        signature_method=verified.signature_method,
        header=verified.header,
    )


@functools.lru_cache(maxsize=1024)
def _certificate(der: bytes) -> x509.Certificate:
    """The same few certificates come with every message of a sender: each decoded once."""
    return x509.load_der_x509_certificate(der)


# Messages opened ahead and not (yet) recorded, at most: those a stop or a hand-back returned to their queue.
AHEAD_MAX = 10_000


class WorkerOpener:
    """Worker processes that open messages, each as soon as it arrives, while the hub records and sends.

    A worker's answer is checked again in the hub when the batch is recorded: the signer's chain against the
    hub's own trust store at the batch's time (validity, revocation: a certificate revoked meanwhile is refused),
    and the signed bytes parsed with the hardened parser. If a worker ends, what it had in hand is opened in the
    hub's own process and a new worker is started: a message is never lost to a failed worker.
    """

    def __init__(self, setup: WorkerSetup, workers: int, checks: Checks) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.setup = setup
        self.workers = workers
        self.checks = checks
        self._running: list[Worker] = []
        self._starting: asyncio.Task[None] | None = None
        self._ahead: dict[bytes, asyncio.Future[Sealed]] = {}
        self._queued: list[tuple[bytes, datetime, asyncio.Future[Sealed]]] = []
        self.opened_ahead = 0  # messages a worker opened that the hub then recorded

    @property
    def pids(self) -> list[int]:
        """The process ids of the living workers."""
        return [w.process.pid for w in self._running if not w.failed]

    async def warm_up(self) -> None:
        """Start the workers now (each loads the schemas and anchors once), not at the first message."""
        await self._start_missing()
        log.info("workers_started", pids=self.pids)

    async def _start_missing(self) -> None:
        self._running = [w for w in self._running if not w.failed]
        missing = self.workers - len(self._running)
        if missing > 0:
            target = f"{opening_worker.__module__}:{opening_worker.__name__}"
            started = await asyncio.gather(
                *(Worker.start(target, self.setup) for _ in range(missing)), return_exceptions=True
            )
            self._running += [w for w in started if isinstance(w, Worker)]
            for error in (e for e in started if isinstance(e, BaseException)):
                log.error("worker_start_failed", error=f"{type(error).__name__}: {error}")

    def _restart_soon(self) -> None:
        """Replace ended workers in the background; meanwhile the living ones, or the hub, open messages."""
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start_missing())

    def begin(self, body: bytes, now: datetime) -> None:
        if body in self._ahead:
            return
        if len(self._ahead) >= AHEAD_MAX:
            _forget(self._ahead.pop(next(iter(self._ahead))))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sealed] = loop.create_future()
        self._ahead[body] = future
        if not self._queued:  # what arrives in the same turn of the event loop goes to the workers together
            loop.call_soon(self._dispatch)
        self._queued.append((body, now, future))

    def _dispatch(self) -> None:
        """Share what arrived among the living workers, one request for each (each opens its share in a row)."""
        queued, self._queued = self._queued, []
        living = sorted((w for w in self._running if not w.failed), key=lambda w: w.load)
        if len(living) < self.workers:
            self._restart_soon()
        if not living:
            for _, _, future in queued:
                future.set_exception(WorkerFailed("no worker is running"))
                _forget(future)
            return
        for (start, end), worker in zip(_shares(len(queued), len(living)), living, strict=False):
            futures = [future for _, _, future in queued[start:end]]
            answer = worker.submit([(body, now) for body, now, _ in queued[start:end]])
            answer.add_done_callback(functools.partial(_hand_out, futures=futures))

    async def open_all(self, inbounds: Sequence[Inbound], now: datetime) -> list[Opened]:
        ahead = self._ahead
        pending = [ahead.pop(i.body, None) for i in inbounds]  # the rest is opened here, with its batch
        opened: list[Opened] = []
        for inbound, future in zip(inbounds, pending, strict=True):
            try:
                sealed = await future if future is not None else None
            except WorkerFailed as error:
                log.error("worker_failed", error=str(error), action="opening the message in the hub")
                self._restart_soon()
                sealed = None
            if sealed is None:
                opened.append(_open_here(inbound, self.checks, now))
            else:
                opened.append(self._unseal(sealed, now))
                self.opened_ahead += 1
        return opened

    def _unseal(self, sealed: Sealed, now: datetime) -> Opened:
        """``Opened`` again, in the hub: the chain checked by the hub's trust store, the signed bytes parsed."""
        if sealed.header is None:
            return Opened(sealed.claimed, None, sealed.refusal)
        try:
            chain = tuple(_certificate(der) for der in sealed.chain)
            signer = self.checks.trust.validate(chain, now)
            signed = parse_xml(sealed.signed)
        except GatewayError as error:
            return Opened(sealed.claimed, None, Finding(error.code, error.message))
        except Exception as error:  # the hub's own fault: record it and say so, the sender may resend
            log.exception("examine_failed")
            return Opened(sealed.claimed, None, internal_error(error))
        return Opened(sealed.claimed, VerifiedMessage(signed, sealed.header, signer, sealed.signature_method, chain))

    async def stop(self) -> None:
        """End the workers (each finishes what it has in hand)."""
        for future in self._ahead.values():
            _forget(future)
        self._ahead.clear()
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starting
        running, self._running = self._running, []
        await asyncio.gather(*(w.stop() for w in running), return_exceptions=True)

    def close(self) -> None:
        """After the event loop: no worker outlives the hub."""
        for worker in self._running:
            worker.kill()
        self._running = []


def _hand_out(answer: asyncio.Future[list[Sealed]], *, futures: list[asyncio.Future[Sealed]]) -> None:
    """A worker's answer for a share, to each message's future (or its failure to each)."""
    for index, future in enumerate(futures):
        if future.done():
            continue
        if answer.cancelled():
            future.cancel()
        elif (failure := answer.exception()) is not None:
            future.set_exception(failure)
        else:
            future.set_result(answer.result()[index])


def _shares(count: int, workers: int) -> list[tuple[int, int]]:
    """``count`` items in at most ``workers`` contiguous runs of nearly equal length."""
    runs = min(count, workers)
    size, extra = divmod(count, runs)
    bounds, start = [], 0
    for index in range(runs):
        end = start + size + (1 if index < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def _forget(future: asyncio.Future[Sealed]) -> None:
    """A future nobody will await: its failure, if any, is read so that asyncio does not report it."""
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
