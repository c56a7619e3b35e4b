"""Assemble a running hub from settings: policies, trust, ledger, registry and signer, built once."""

from __future__ import annotations

from datetime import UTC, datetime

from aio_pika.abc import AbstractRobustConnection
from cryptography.hazmat.primitives.serialization import Encoding

from certs.pkcs11 import TokenConfig, TokenSigner
from certs.signer import Signer
from certs.trust import TrustStore
from gateway.broker.service import HubService
from gateway.home import Home
from gateway.hub import Hub, Outbox
from gateway.ledger.store import ledger_for
from gateway.opening import LocalOpener, Opener, WorkerOpener, WorkerSetup
from gateway.pipeline import Checks
from gateway.reading import ReadingPolicy
from gateway.registry import Registry
from gateway.rules.substances import Catalogue
from gateway.settings import Settings
from gateway.signature import SignaturePolicy


def token_config(settings: Settings) -> TokenConfig:
    return TokenConfig(settings.pkcs11_module, settings.pkcs11_token, settings.pkcs11_pin, settings.pkcs11_key_label)


def utc_now() -> datetime:
    return datetime.now(UTC)


class HubParts:
    """The long-lived pieces of one hub process."""

    def __init__(self, settings: Settings) -> None:
        home = Home(settings.home)
        if not home.is_initialized():
            raise RuntimeError(f"the hub in {home.root} is not set up: run `i2es init` first")
        self.settings = settings
        self.ledger = ledger_for(settings)
        self.registry = Registry(settings.ledger_path)
        self.signer: Signer = home.hub_signer()
        if settings.signer == "pkcs11":
            self.signer = TokenSigner.open(token_config(settings), home.hub_token_chain)
        self.checks = Checks(
            reading=ReadingPolicy.load(settings.schema_dir, settings.max_message_bytes),
            trust=TrustStore(tuple(home.anchors()), revocations=self.registry),
            directory=self.registry,
            history=self.ledger,
            replay_window=settings.replay_window,
            future_skew=settings.future_skew,
            trade=self.ledger.trade,
            catalogue=Catalogue.load(),
            signature=SignaturePolicy(backend=settings.dsig_backend),
        )
        # Built here, started by the service (HubService.run): commands that only sign start no process.
        self.opener: Opener = LocalOpener(self.checks)
        if settings.workers:
            setup = WorkerSetup(
                schema_dir=settings.schema_dir,
                max_message_bytes=settings.max_message_bytes,
                anchors=tuple(a.public_bytes(Encoding.DER) for a in self.checks.trust.anchors),
                registry_path=settings.ledger_path,
                signature=self.checks.signature,
            )
            self.opener = WorkerOpener(setup, settings.workers, self.checks)

    def make_hub(self, outbox: Outbox) -> Hub:
        return Hub(
            checks=self.checks,
            ledger=self.ledger,
            directory=self.registry,
            signer=self.signer,
            outbox=outbox,
            clock=utc_now,
            trade=self.ledger.trade,
            certificates=self.registry,
            opener=self.opener,
        )

    def participant_codes(self) -> list[str]:
        return [p.code for p in self.registry.participants()]

    def service(self, connection: AbstractRobustConnection) -> HubService:
        """The broker consumer that runs this hub."""
        settings = self.settings
        self.ledger.checkpoint_in_background()
        return HubService(
            self.make_hub,
            connection,
            settings.prefetch,
            settings.schedule_seconds,
            participants=self.participant_codes,
            ledger_retry_seconds=settings.ledger_retry_seconds,
            batch_max=settings.batch_max,
            shard=settings.shard,
            heartbeat_seconds=settings.heartbeat_seconds,
        )

    def close(self) -> None:
        if isinstance(self.signer, TokenSigner):
            self.signer.close()
        self.opener.close()
        self.ledger.close()
        self.registry.close()
