"""An async adapter for a national system: sign and send documents, receive and verify deliveries.

One connection, named for the participant, carries both directions. Acknowledgements that
answer a pending ``send`` resolve it; everything else is yielded by ``deliveries()``, and its
broker delivery is acknowledged only when the caller has stored it (``accept``/``refuse``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from cryptography import x509
from lxml import etree

from certs.keys import read_certificates
from certs.signer import FileSigner, Signer
from certs.trust import TrustStore
from gateway.envelope import (
    BUSINESS_TYPES,
    Header,
    body_document,
    build_envelope,
    document_element,
    new_message_id,
    read_header,
)
from gateway.errors import GatewayError
from gateway.reading import DOCUMENT_NS, ReadingPolicy, parse_xml, read_message
from gateway.settings import PROJECT_ROOT
from gateway.signature import VerifiedMessage, sign_envelope, verify_envelope

INBOUND_EXCHANGE = "i2es.inbound"


def _text(element: etree._Element, name: str) -> str | None:
    child = element.find(f"{{{DOCUMENT_NS}}}{name}")
    return None if child is None or child.text is None else child.text.strip()


@dataclass(frozen=True)
class Acknowledgement:
    """The hub's verified answer to one sent message."""

    status: str
    ref_to_message_id: str | None
    received_digest: str
    received_at: str
    ledger_sequence: int | None
    reasons: tuple[tuple[str, str], ...]
    warnings: tuple[tuple[str, str], ...]
    raw: bytes

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPTED"

    @classmethod
    def from_verified(cls, verified: VerifiedMessage, raw: bytes) -> Acknowledgement:
        document = body_document(verified.signed)
        sequence = _text(document, "LedgerSequence")
        return cls(
            status=_text(document, "Status") or "",
            ref_to_message_id=verified.header.ref_to_message_id,
            received_digest=_text(document, "ReceivedDigest") or "",
            received_at=_text(document, "ReceivedAt") or "",
            ledger_sequence=int(sequence) if sequence else None,
            reasons=tuple((e.get("code", ""), e.text or "") for e in document.iter(f"{{{DOCUMENT_NS}}}Reason")),
            warnings=tuple((e.get("code", ""), e.text or "") for e in document.iter(f"{{{DOCUMENT_NS}}}Warning")),
            raw=raw,
        )


class PublishRefused(RuntimeError):
    """The broker refused the message (the hub's inbound queue for this participant is full): nothing was taken.
    Send the same bytes again later."""


RESENDABLE = (
    PublishRefused,
    TimeoutError,
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
    ConnectionError,
)


class HubRejected(Exception):
    """Raised by ``send(..., check=True)`` when the hub answers REJECTED."""

    def __init__(self, acknowledgement: Acknowledgement) -> None:
        reasons = "; ".join(f"{c}: {t}" for c, t in acknowledgement.reasons)
        super().__init__(f"the hub rejected the message: {reasons}")
        self.acknowledgement = acknowledgement


@dataclass(frozen=True)
class AdapterConfig:
    """Everything a national system needs: who it is, where the hub is, its key, the hub's anchors."""

    code: str
    broker_url: str  # amqp://CODE:password@host:5672/i2es (or amqps:// with a client certificate)
    signer: Signer
    anchors: tuple[x509.Certificate, ...]
    schema_dir: Path = PROJECT_ROOT / "schemas"
    max_message_bytes: int = 1024 * 1024
    prefetch: int = 32

    @classmethod
    def from_files(cls, code: str, broker_url: str, key: Path, chain: Path, anchors: Path) -> AdapterConfig:
        return cls(code, broker_url, FileSigner.load(key, chain), tuple(read_certificates(anchors)))


@dataclass
class Delivery:
    """A message from the hub, verified. Store it, then ``accept()`` (or ``refuse()``)."""

    raw: bytes
    verified: VerifiedMessage | None
    problem: GatewayError | None
    _incoming: AbstractIncomingMessage = field(repr=False)
    _adapter: Adapter = field(repr=False)
    receipt: Acknowledgement | None = None

    @property
    def header(self) -> Header | None:
        return self.verified.header if self.verified else None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def needs_receipt(self) -> bool:
        return self.header is not None and self.header.type in BUSINESS_TYPES

    async def ack(self) -> None:
        """Acknowledge the delivery to the broker without answering it (a document's Receipt can follow later)."""
        await self._incoming.ack()

    async def accept(self) -> Acknowledgement | None:
        """Answer a document with a RECEIVED receipt (and await the hub's acknowledgement), then ack."""
        if self.needs_receipt:
            self.receipt = await self._adapter._send_receipt(self, "RECEIVED", None)
        await self.ack()
        return self.receipt

    async def refuse(self, code: str, reason: str) -> Acknowledgement | None:
        """Answer a document with a REFUSED receipt, then ack the delivery."""
        if self.needs_receipt:
            self.receipt = await self._adapter._send_receipt(self, "REFUSED", (code, reason))
        await self.ack()
        return self.receipt


class Adapter:
    """A participant's connection to the hub."""

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config
        self._reading = ReadingPolicy.load(config.schema_dir, config.max_message_bytes)
        self._trust = TrustStore(config.anchors)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._pending: dict[str, asyncio.Future[Acknowledgement]] = {}
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __aenter__(self) -> Adapter:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.config.broker_url,
            client_properties={"connection_name": f"i2es-adapter-{self.config.code}"},
        )
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self.config.prefetch)
        # A passive declare, which needs no permission: the robust channel restores its consumer after a reconnect.
        queue = await self._channel.get_queue(f"i2es.deliver.{self.config.code}", ensure=True)
        await queue.consume(self._on_message)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def envelope(
        self,
        document: etree._Element,
        to: str,
        *,
        conversation_id: str | None = None,
        ref_to_message_id: str | None = None,
        now: datetime | None = None,
    ) -> bytes:
        """Wrap a document in a new envelope from this participant and sign it."""
        header = Header(
            message_id=new_message_id(),
            sender=self.config.code,
            recipient=to,
            type=etree.QName(document).localname,
            created_at=now or datetime.now(UTC),
            conversation_id=conversation_id,
            ref_to_message_id=ref_to_message_id,
        )
        return sign_envelope(build_envelope(header, document), self.config.signer)

    async def send(
        self,
        document: etree._Element,
        to: str,
        *,
        conversation_id: str | None = None,
        ref_to_message_id: str | None = None,
        timeout: float = 30.0,
        check: bool = False,
    ) -> Acknowledgement:
        """Sign and send one document; return the hub's verified acknowledgement."""
        data = self.envelope(document, to, conversation_id=conversation_id, ref_to_message_id=ref_to_message_id)
        return await self.send_signed(data, timeout=timeout, check=check)

    async def send_signed(
        self, data: bytes, *, timeout: float = 30.0, check: bool = False, resend_after: float | None = None
    ) -> Acknowledgement:
        """Publish an already signed envelope, byte for byte; return the hub's verified acknowledgement."""
        header = read_header(parse_xml(data))
        return await self.publish(
            data, message_id=header.message_id, type=header.type, timeout=timeout, check=check,
            resend_after=resend_after,
        )  # fmt: skip

    async def publish(
        self,
        data: bytes,
        *,
        message_id: str,
        type: str,
        timeout: float = 30.0,
        check: bool = False,
        properties: Mapping[str, Any] | None = None,
        resend_after: float | None = None,
    ) -> Acknowledgement:
        """Publish raw bytes with the contract's properties and wait for the acknowledgement.

        ``properties`` overrides AMQP properties (to see how the hub answers a client that gets them wrong).
        With ``resend_after``, the same bytes are published again whenever no acknowledgement came within that many
        seconds or the publish failed (the broker restarting, a full queue), until ``timeout``: the hub answers a
        resend with the first acknowledgement and never routes the message twice.
        """
        if resend_after is None:
            return await self._publish_once(data, message_id, type, timeout, check, properties)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                return await self._publish_once(data, message_id, type, min(resend_after, left), check, properties)
            except RESENDABLE:
                if asyncio.get_running_loop().time() + 0.2 >= deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _publish_once(
        self,
        data: bytes,
        message_id: str,
        type: str,
        timeout: float,
        check: bool,
        properties: Mapping[str, Any] | None,
    ) -> Acknowledgement:
        if self._channel is None:
            raise RuntimeError("the adapter is not connected")
        future: asyncio.Future[Acknowledgement] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        try:
            exchange = await self._channel.get_exchange(INBOUND_EXCHANGE, ensure=False)
            fields: dict[str, Any] = {
                "message_id": message_id,
                "user_id": self.config.code,
                "content_type": "application/xml",
                "delivery_mode": aio_pika.DeliveryMode.PERSISTENT,
                "type": type,
            }
            fields.update(properties or {})
            try:
                await exchange.publish(aio_pika.Message(data, **fields), routing_key=self.config.code)
            except aio_pika.exceptions.DeliveryError:
                raise PublishRefused(
                    f"the broker refused the message: the hub's inbound queue for {self.config.code} is full; "
                    "send it again later"
                ) from None
            acknowledgement = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(message_id, None)
        if check and not acknowledgement.accepted:
            raise HubRejected(acknowledgement)
        return acknowledgement

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Yield every message the hub delivers that no ``send`` is waiting for."""
        while True:
            yield await self._inbox.get()

    async def next_delivery(self, timeout: float | None = None) -> Delivery:
        return await asyncio.wait_for(self._inbox.get(), timeout)

    def verify(self, data: bytes) -> VerifiedMessage:
        """Read and verify a message from the hub: schema, signature, the signer's chain to the hub CA."""
        return verify_envelope(read_message(data, self._reading), self._trust, datetime.now(UTC))

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        raw = incoming.body
        try:
            verified: VerifiedMessage | None = self.verify(raw)
            problem = None
        except GatewayError as error:
            verified, problem = None, error
        if verified is not None and verified.header.type == "Acknowledgement" and verified.signer_code == "HUB":
            future = self._pending.get(verified.header.ref_to_message_id or "")
            if future is None or future.done():
                future = self._pending.get(incoming.correlation_id or "")
            if future is not None and not future.done():
                future.set_result(Acknowledgement.from_verified(verified, raw))
                await incoming.ack()
                return
        await self._inbox.put(Delivery(raw, verified, problem, incoming, self))

    async def _send_receipt(self, delivery: Delivery, status: str, reason: tuple[str, str] | None) -> Acknowledgement:
        header = delivery.header
        assert header is not None
        document = document_element("Receipt")
        etree.SubElement(document, f"{{{DOCUMENT_NS}}}Status").text = status
        etree.SubElement(document, f"{{{DOCUMENT_NS}}}ReceivedDigest").text = delivery.digest
        if reason is not None:
            element = etree.SubElement(document, f"{{{DOCUMENT_NS}}}Reason", code=reason[0])
            element.text = reason[1]
        return await self.send(
            document,
            header.sender,
            conversation_id=header.conversation_id,
            ref_to_message_id=header.message_id,
        )
