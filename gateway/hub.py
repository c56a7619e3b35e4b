"""One message's path through the hub: inbound -> examine -> ledger -> route -> acknowledge.

The order is the contract's promise: the outcome is committed to the ledger before anything
leaves the hub, the document is routed (and confirmed by the broker) before the sender hears
that it was accepted, and the inbound delivery is acknowledged by the caller only afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from certs.signer import Signer
from gateway.acknowledgement import sign_acknowledgement, sign_notice
from gateway.envelope import Header
from gateway.ledger.db import Conflict
from gateway.ledger.model import Filing, Finding, Ledger, LedgerEntry, NewEntry, SignedNotice
from gateway.opening import LocalOpener, Opener
from gateway.pipeline import Checks, Directory, Inbound, Opened, Verdict, internal_error, judge
from gateway.registry import CertificateRecord
from gateway.rules.record import CertificateRef, Notice, OnFile

log = structlog.get_logger("i2es.hub")


class DeliveryRefused(Exception):
    """The broker refused a message for a participant (its queue is full): nothing was sent, nothing is lost."""

    def __init__(self, participant: str, reason: str) -> None:
        super().__init__(reason)
        self.participant = participant
        self.reason = reason


class Outbox(Protocol):
    """Where the hub's messages go. Each call returns once the broker has confirmed the message."""

    async def deliver(self, recipient: str, entry: LedgerEntry) -> None: ...

    async def acknowledge(self, participant: str, entry: LedgerEntry, correlation_id: str | None) -> None: ...

    async def dead_letter(self, inbound: Inbound, reason: str) -> None: ...

    async def notify(self, participant: str, message_id: str, body: bytes) -> None: ...


class NoticeBox(Protocol):
    """Where signed notices wait until the broker has confirmed them, and what makes the hub send one."""

    def unsent_notices(self) -> list[tuple[str, str, bytes]]: ...

    def mark_notice_sent(self, message_id: str, now: datetime) -> None: ...

    def overdue_pre_export(self, now: datetime) -> list[OnFile]: ...

    def record_hub_notice(self, notice: SignedNotice, now: datetime) -> None: ...


class ExpiryWatch(Protocol):
    """The certificates the hub issued, and which expiry notices it already sent."""

    def expiring(self, now: datetime, days: int) -> list[CertificateRecord]: ...

    def mark_expiry_noticed(self, serial: str, days: int, now: datetime) -> None: ...


# Participants hear of an expiring certificate this many days ahead, once for each.
EXPIRY_NOTICE_DAYS = (30, 7, 1)


@dataclass(frozen=True)
class Outcome:
    """What happened to one inbound message, for the log and the caller."""

    status: str  # ACCEPTED, DEFERRED (accepted, kept for a full queue), REJECTED, RESENT (a safe resend), DEAD_LETTERED
    entry: LedgerEntry | None
    reasons: tuple[Finding, ...] = ()


@dataclass
class Steps:
    """How long each step of a batch took, in milliseconds, in the order they ran (each message's log line)."""

    ms: dict[str, float] = field(default_factory=dict)
    _since: float = field(default_factory=time.perf_counter)

    def done(self, step: str) -> None:
        """``step`` ended now: it took the time since the previous one ended (or since the batch was taken)."""
        now = time.perf_counter()
        self.ms[step] = round((now - self._since) * 1000, 2)
        self._since = now


@dataclass
class Recorded:
    """A batch whose outcomes are committed, and what is still to be sent for it."""

    inbounds: Sequence[Inbound]
    now: datetime
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # final already: dead letters, conflicts
    recorded: list[tuple[int, Verdict, LedgerEntry]] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)
    steps: Steps = field(default_factory=Steps)


@dataclass
class Hub:
    checks: Checks
    ledger: Ledger
    directory: Directory
    signer: Signer
    outbox: Outbox
    clock: Callable[[], datetime]
    trade: NoticeBox
    certificates: ExpiryWatch
    # Where messages are read and their signatures checked: this process unless given a pool of workers.
    opener: Opener | None = None
    _sending: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    # Recipients whose queue refused a document: what follows for them waits behind it, in ledger order.
    _backlogged: set[str] = field(default_factory=set, repr=False)
    _routing: set[int] = field(default_factory=set, repr=False)  # sequences being published right now
    # Set when a document was held back behind a recipient's backlog: ``route_deferred`` should run soon.
    held_back: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _draining: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)  # one ``route_deferred`` at a time

    def __post_init__(self) -> None:
        self._opener: Opener = self.opener or LocalOpener(self.checks)
        self._count_in_backlog()

    def open_ahead(self, body: bytes) -> None:
        """A message has just arrived: it may be opened (by a worker) before its batch is recorded."""
        self._opener.begin(body, self.clock())

    async def start_opening(self) -> None:
        """Ready to open messages (the worker processes started) before the first one arrives."""
        await self._opener.warm_up()

    async def stop_opening(self) -> None:
        await self._opener.stop()

    def _count_in_backlog(self) -> None:
        """What this hub has to route and has not: it goes out in ledger order, through ``route_deferred``."""
        self._backlogged.update(e.recipient for e in self.ledger.unrouted(mine=True) if e.recipient)

    def adopt(self, alive: set[str]) -> int:
        """Take over what hubs no longer ``alive`` recorded and did not send; their documents wait here, in ledger
        order, for ``route_deferred``. Returns how many rows were taken."""
        taken = self.ledger.peers.adopt(self.ledger.owner, alive)
        if taken:
            log.warning("hub_adopted", rows=taken, action="sending what stopped hubs left")
            self._count_in_backlog()
        return sum(taken.values())

    async def handle(self, inbound: Inbound) -> Outcome:
        return (await self.handle_batch([inbound]))[0]

    async def handle_batch(self, inbounds: Sequence[Inbound]) -> list[Outcome]:
        """Handle several inbound messages as one: ``record`` them, then ``send`` what that decided."""
        return await self.send(await self.record(inbounds))

    async def record(self, inbounds: Sequence[Inbound]) -> Recorded:
        """Check several inbound messages and commit their outcomes together, once (group commit). Nothing is
        published yet but dead letters: ``send`` does that. A caller may record the next batch while the previous
        one is being sent: the ledger already holds it.

        The signatures are checked before the ledger's write lock is taken: several hub processes sharing one
        ledger check theirs at the same time, and take turns only to record.
        """
        done = Recorded(inbounds, self.clock())
        senders: list[int] = []
        for index, inbound in enumerate(inbounds):
            if not inbound.user_id or not self.directory.is_participant(inbound.user_id):
                done.outcomes[index] = await self._dead_letter(inbound)
            else:
                senders.append(index)
        openings = await self._opener.open_all([inbounds[i] for i in senders], done.now)
        opened: dict[int, Opened] = dict(zip(senders, openings, strict=True))
        done.steps.done("open")
        try:
            async with self.ledger.writer_turn():  # waiting for another hub's commit, this one goes on sending
                done.recorded, done.resent = self._record_all(inbounds, opened, done.now)
        except Conflict:
            if len(opened) > 1:  # another hub recorded one of these first: nothing here was; one at a time
                for index in opened:
                    done.outcomes[index] = await self.handle(inbounds[index])
                return done
            # Another hub process accepted the same MessageId a moment ago: answer as a resend would be.
            (index,) = opened
            previous = self.ledger.find_accepted_by_digest(inbounds[index].digest, inbounds[index].user_id or "")
            if previous is None:
                raise
            done.resent = [index]
        routing = [e.sequence for _, v, e in done.recorded if v.accepted and e.recipient]
        self._routing.update(routing)  # from now on: the scheduler's deferred routing leaves them to ``send``
        done.steps.done("record")
        # The commit did not wait for the disk: nothing of it leaves the hub before it is there, and meanwhile the
        # event loop reads the broker's confirms of the batches being sent. A resend may be answered from what
        # another hub committed a moment ago: that is synced too (SQLite: one log for every process).
        try:
            await self.ledger.sync(others=bool(done.resent))
        except BaseException:
            self._routing.difference_update(routing)  # taken again, they are resends of what was committed
            raise
        done.steps.done("sync")
        return done

    async def send(self, done: Recorded) -> list[Outcome]:
        """Publish what ``record`` committed: the documents, in ledger order, and the acknowledgements beside them;
        returns each message's outcome. Batches recorded one after another must be sent in the same order (their
        documents are published in the order ``send`` is called).

        The acknowledgements do not wait for the documents' confirms: the ledger holds each accepted document,
        synced, and delivers what the broker did not confirm (on a resend, or at the next start), so ``ACCEPTED``
        promises the delivery either way. The broker's two confirms then overlap instead of adding up. A document
        a full queue refused is followed by a ``DELIVERY_DEFERRED`` notice, sent after both."""
        inbounds = done.inbounds
        outcomes = done.outcomes
        documents = [entry for _, verdict, entry in done.recorded if verdict.accepted and entry.recipient]
        held = any(e.recipient in self._backlogged for e in documents)  # what ``_route_all`` holds back

        async def deliver() -> set[int]:
            try:
                deferred = {entry.sequence for entry in await self._route_all(documents)}
            finally:
                self._routing.difference_update(e.sequence for e in documents)
                if held:  # out of ``_routing`` now: the next ``route_deferred`` sends them
                    self.held_back.set()
            done.steps.done("deliver")
            return deferred

        async def acknowledge() -> None:
            await asyncio.gather(
                *(self._acknowledge(inbounds[i].user_id or "", e, inbounds[i].message_id) for i, _, e in done.recorded)
            )

        # Both run to their end before a failure is raised: what was published is marked, and nothing is left behind.
        deferred, acknowledged = await asyncio.gather(deliver(), acknowledge(), return_exceptions=True)
        for result in (deferred, acknowledged):
            if isinstance(result, BaseException):
                raise result
        assert isinstance(deferred, set)
        done.steps.done("acknowledge")  # what the acknowledgements took beyond the documents' confirms
        for index, verdict, entry in done.recorded:
            status = "DEFERRED" if entry.sequence in deferred else verdict.status
            outcomes[index] = Outcome(status, entry, verdict.reasons)
        for index in done.resent:
            # Looked up again: the first copy may have been routed above, in this very batch.
            previous = self.ledger.find_accepted_by_digest(inbounds[index].digest, inbounds[index].user_id or "")
            assert previous is not None
            outcomes[index] = await self._resend(previous, inbounds[index])
        if deferred or any(verdict.notices for _, verdict, _ in done.recorded):
            await self.send_notices()
        return [outcomes[i] for i in range(len(inbounds))]

    async def _dead_letter(self, inbound: Inbound) -> Outcome:
        # Nobody the broker vouched for to answer: keep the message, with its reason, for an operator.
        user = inbound.user_id
        reason = (
            "no user_id: the broker did not vouch for a sender"
            if not user
            else f"the broker user {user!r} is not a registered participant"
        )
        await self.outbox.dead_letter(inbound, reason)
        return Outcome("DEAD_LETTERED", None, (Finding("SENDER_MISMATCH", reason),))

    def _record_all(
        self, inbounds: Sequence[Inbound], opened: dict[int, Opened], now: datetime
    ) -> tuple[list[tuple[int, Verdict, LedgerEntry]], list[int]]:
        """In one transaction, in order: judge each message against the ledger as it stands (with the ones
        before it in the batch) and record its outcome. Returns what was recorded and which were resends."""
        recorded: list[tuple[int, Verdict, LedgerEntry]] = []
        resent: list[int] = []
        with self.ledger.group(sync_later=True):
            self.ledger.expect(
                [found.verified.header.message_id for found in opened.values() if found.verified is not None],
                [inbounds[index].digest for index in opened],
            )
            for index, found in opened.items():
                inbound = inbounds[index]
                if self.ledger.find_accepted_by_digest(inbound.digest, inbound.user_id or "") is not None:
                    resent.append(index)
                    continue
                try:
                    verdict = judge(inbound, found, self.checks, now)
                except Exception as error:  # the hub's own fault: record it and say so, the sender may resend
                    log.exception("examine_failed")
                    verdict = Verdict(accepted=False, header=found.claimed, reasons=(internal_error(error),))
                entry = self._record(inbound, verdict, now)
                if verdict.receipt_for is not None and verdict.receipt_status:
                    # With the receipt, in its transaction: its acknowledgement promises both are on file.
                    self.ledger.record_delivery_status(verdict.receipt_for.sequence, verdict.receipt_status, now)
                recorded.append((index, verdict, entry))
        return recorded, resent

    async def _acknowledge(self, user: str, entry: LedgerEntry, correlation_id: str | None) -> None:
        try:
            await self.outbox.acknowledge(user, entry, correlation_id)
        except DeliveryRefused as refused:
            # The sender's own queue is full. The acknowledgement stays in the ledger: the sender gets it, byte
            # for byte, by sending the same message again once it has read its queue.
            log.warning("acknowledgement_refused", to=user, ledger_sequence=entry.sequence, reason=refused.reason)

    async def route_deferred(self) -> int:
        """Send, in ledger order, what a full queue refused (or a stop left unsent); returns how many went."""
        if not self._backlogged:  # what a stop left unrouted was counted in at start
            return 0
        async with self._draining:
            return await self._drain_backlog()

    async def _drain_backlog(self) -> int:
        sent = 0
        refused: set[str] = set()
        while True:
            unrouted = [e for e in self.ledger.unrouted(mine=True) if e.recipient and e.recipient not in refused]
            # A recipient's backlog ends once nothing for it is left unrouted, counting what a batch is sending
            # right now: a document that batch holds back behind the backlog is published here, at the next pass.
            # No await between the query and this: the message path sees a recipient's backlog end at once.
            self._backlogged.intersection_update(refused | {e.recipient for e in unrouted})
            waiting = [e for e in unrouted if e.sequence not in self._routing]
            if not waiting:
                return sent
            for entry in waiting:
                assert entry.recipient is not None
                if entry.recipient in refused:
                    continue
                try:
                    await self._publish_delivery(entry)
                    sent += 1
                except DeliveryRefused:
                    refused.add(entry.recipient)

    async def check_deadlines(self, expiries: bool = True) -> int:
        """The hub's own notices: a pre-export notification unanswered past its deadline (to the exporter), a
        certificate about to expire (to its holder, if ``expiries``: one hub of several sends those); each once.
        Then send what is committed and unsent."""
        now = self.clock()
        for overdue in self.trade.overdue_pre_export(now):
            notification = overdue.authorization
            notice = Notice(
                to=overdue.sender,
                kind="PRE_EXPORT_DEADLINE_PASSED",
                about=notification.reference,
                text=f"{overdue.recipient} has not answered pre-export notification {notification.number} by its "
                f"deadline of {notification.response_deadline.isoformat() if notification.response_deadline else '?'}",
            )
            self.trade.record_hub_notice(self._sign_notice(notice, None, now), now)
        if expiries:
            self._notice_expiring_certificates(now)
        return await self.send_notices()

    def _notice_expiring_certificates(self, now: datetime) -> None:
        noticed: set[str] = set()
        for days in sorted(EXPIRY_NOTICE_DAYS):  # the tightest window first: one notice, not three at once
            for record in self.certificates.expiring(now, days):
                if record.serial not in noticed:
                    left = (record.not_after - now).days
                    notice = Notice(
                        to=record.code,
                        kind="CERTIFICATE_EXPIRING",
                        about=CertificateRef(record.serial, record.not_after),
                        text=f"your {record.profile} certificate {record.serial} expires on "
                        f"{record.not_after.date().isoformat()} ({left} day(s) left): request a new one "
                        "(i2es cert renew) and use both until the old one expires",
                    )
                    self.trade.record_hub_notice(self._sign_notice(notice, None, now), now)
                    noticed.add(record.serial)
                for larger in EXPIRY_NOTICE_DAYS:
                    if larger >= days:
                        self.certificates.mark_expiry_noticed(record.serial, larger, now)

    async def send_notices(self) -> int:
        """Publish the notices committed but not yet sent (also those left by a stop); returns how many."""
        async with self._sending:  # the scheduler and the message path both send
            pending = self.trade.unsent_notices()
            for message_id, to, body in pending:
                await self.outbox.notify(to, message_id, body)
                self.trade.mark_notice_sent(message_id, self.clock())
            return len(pending)

    def _record(self, inbound: Inbound, verdict: Verdict, now: datetime) -> LedgerEntry:
        user = inbound.user_id or ""
        header = verdict.header
        new = NewEntry(
            message_id=header.message_id if header else inbound.message_id,
            broker_user=user,
            sender=header.sender if header else None,
            recipient=header.recipient if header else None,
            type=header.type if header else inbound.type,
            conversation_id=header.conversation_id if header else None,
            ref_to_message_id=header.ref_to_message_id if header else None,
            digest=inbound.digest,
            body=inbound.body,
            status=verdict.status,
            reasons=verdict.reasons,
            warnings=verdict.warnings,
            received_at=now,
            signer_serial=verdict.signer_serial,
        )

        def make_ack(sequence: int) -> tuple[str, bytes]:
            return sign_acknowledgement(
                self.signer,
                to=user,
                ref_to_message_id=verdict.ref_to_message_id(inbound),
                conversation_id=header.conversation_id if header else None,
                status=verdict.status,
                digest=inbound.digest,
                received_at=now,
                sequence=sequence if verdict.accepted else None,
                reasons=verdict.reasons,
                warnings=verdict.warnings,
                now=now,
            )

        filing = Filing(
            document=verdict.document,
            effects=verdict.effects,
            notices=tuple(self._sign_notice(notice, header, now) for notice in verdict.notices),
        )
        return self.ledger.append(new, make_ack, filing)

    def _sign_notice(self, notice: Notice, cause: Header | LedgerEntry | None, now: datetime) -> SignedNotice:
        message_id, body = sign_notice(
            self.signer,
            notice,
            now,
            conversation_id=cause.conversation_id if cause else None,
            ref_to_message_id=cause.message_id if cause else None,
        )
        return SignedNotice(message_id, notice.to, notice.kind, notice.about, body)

    async def _route(self, entry: LedgerEntry) -> bool:
        """Deliver, or keep it for later if the recipient's queue is full (and tell the sender): True if sent."""
        return not await self._route_all([entry])

    async def _route_all(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Publish documents, in ledger order, and wait for the broker's confirms of them all; returns those kept
        for later because a recipient's queue was full (the sender hears of each)."""
        deferred: list[tuple[LedgerEntry, str]] = []
        sending: list[LedgerEntry] = []
        for entry in entries:
            if entry.recipient in self._backlogged:
                deferred.append((entry, f"earlier messages for {entry.recipient} are waiting: its queue was full"))
            else:
                sending.append(entry)
        self._routing.update(e.sequence for e in sending)
        try:
            results = await asyncio.gather(
                *(self.outbox.deliver(e.recipient or "", e) for e in sending), return_exceptions=True
            )
            failure: BaseException | None = None
            for entry, result in zip(sending, results, strict=True):
                if isinstance(result, DeliveryRefused):
                    self._backlogged.add(result.participant)
                    deferred.append((entry, result.reason))
                elif isinstance(result, BaseException):
                    failure = failure or result
            refused = {e.sequence for e, _ in deferred}
            async with self.ledger.writer_turn(durable=False):
                self.ledger.mark_routed_many(
                    [
                        e.sequence
                        for e, r in zip(sending, results, strict=True)
                        if r is None and e.sequence not in refused
                    ],
                    self.clock(),
                )
        finally:
            self._routing.difference_update(e.sequence for e in sending)
        if failure is not None:
            raise failure
        for entry, reason in sorted(deferred, key=lambda d: d[0].sequence):
            self._defer(entry, reason)
        return [entry for entry, _ in deferred]

    def _defer(self, entry: LedgerEntry, reason: str) -> None:
        log.warning("delivery_deferred", recipient=entry.recipient, ledger_sequence=entry.sequence, reason=reason)
        if entry.sender:
            now = self.clock()
            notice = Notice(
                to=entry.sender,
                kind="DELIVERY_DEFERRED",
                about=None,
                text=f"message {entry.message_id} is accepted (ledger #{entry.sequence}) but not yet delivered to "
                f"{entry.recipient}: {reason}. The hub keeps it and delivers it, in order, when there is room.",
            )
            self.trade.record_hub_notice(self._sign_notice(notice, entry, now), now)

    async def _publish_delivery(self, entry: LedgerEntry) -> None:
        assert entry.recipient is not None
        self._routing.add(entry.sequence)
        try:
            await self.outbox.deliver(entry.recipient, entry)
            async with self.ledger.writer_turn(durable=False):
                self.ledger.mark_routed(entry.sequence, self.clock())
        finally:
            self._routing.discard(entry.sequence)

    async def _resend(self, previous: LedgerEntry, inbound: Inbound) -> Outcome:
        while previous.sequence in self._routing:  # the first copy is being published: answer once it is confirmed
            await asyncio.sleep(0.005)
        if previous.routed_at is None:
            previous = self.ledger.get(previous.sequence) or previous
        if (
            previous.routed_at is None
            and previous.owner == self.ledger.owner  # another hub's is routed by that hub (or its adopter)
            and previous.recipient
            and previous.recipient not in self._backlogged  # the scheduler sends those, in order
        ):
            # Accepted and committed, but the hub stopped before the broker confirmed the delivery.
            await self._route(previous)
        await self._acknowledge(previous.broker_user, previous, inbound.message_id)
        return Outcome("RESENT", previous)
