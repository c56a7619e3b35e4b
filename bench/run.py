"""Throughput and latency of the hub on the real broker, against the two ceilings it cannot beat.

    .venv/bin/python -m bench.run [--messages 3000] [--seconds 20] [--senders 4] [--receivers 2] [--quick]

In a vhost of its own (``i2es-bench-<hex>``, deleted afterwards), with signed ExportAuthorizations:

1. broker ceiling: a bare relay (``bench._relay``) doing the hub's broker work and nothing else;
2. crypto ceiling: the hub's read, verify and acknowledge steps alone, on one core, no broker;
3. the hub as ``i2es gateway run`` runs it, in a child process: (a) throughput at saturation,
   (b) latency at half that rate, offered open loop (by the clock) for ``--seconds``;
4. the hub's throughput over the lower ceiling, and the hub's CPU time per message.

Prints a table and writes it as JSON to bench/results/<UTC timestamp>.json and bench/results/latest.json.
Prints figures and asserts nothing about them; exits with status 1 if the hub rejects, loses or alters a message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from bench._crypto import measure_crypto
from bench._messages import ExportAuthorizations, Outgoing, pairings, sign_many
from bench._process import hub_process, relay_process
from bench._procfs import CpuSample, filesystem_of
from bench._relay import declare_queues
from bench._report import (
    cpu_per_message,
    distribution,
    format_table,
    latencies_ms,
    say,
    shown,
    throughput,
    write_results,
)
from bench._site import BenchError, Site, bench_site, broker_facts
from bench._traffic import Record, Traffic, acknowledgement_status, hub_routes, offer, relay_routes, saturate
from certs.trust import TrustStore
from gateway.envelope import HUB, body_document, new_message_id
from gateway.reading import DOCUMENT_NS, ReadingPolicy, read_message
from gateway.signature import verify_envelope

# The relay's second run handles this many messages at once: what the broker gives a consumer that overlaps them.
RELAY_CONCURRENCY = 16


@dataclass(frozen=True)
class Options:
    messages: int
    seconds: float
    senders: int
    receivers: int
    window: int
    warmup: int
    timeout: float
    quick: bool


def pids(service: str, pid: int, broker: int | None) -> dict[str, int]:
    """The processes whose CPU time a phase reports: the service measured, the bench itself, the broker."""
    named = {service: pid}
    if pid != os.getpid():
        named["bench"] = os.getpid()
    if broker is not None:
        named["broker"] = broker
    return named


async def relay_ceiling(
    site: Site, batch: Sequence[Outgoing], options: Options, broker_pid: int | None, concurrency: int
) -> dict[str, Any]:
    url = site.admin_url()
    await declare_queues(url)
    with relay_process(url, concurrency, site.home.root / "relay.log") as relay:
        senders, receivers = relay_routes(site)
        record = Record(read_status=bytes.decode, keep_answers=False)
        traffic = await Traffic.open(senders, receivers, record)
        try:
            warmup = [replace(m, message_id=new_message_id()) for m in batch[: options.warmup]]
            await saturate(traffic, warmup, options.window, options.timeout)
            before = CpuSample.take(pids("relay", relay.pid, broker_pid))
            await saturate(traffic, batch, options.window, options.timeout)
            used = CpuSample.take(pids("relay", relay.pid, broker_pid)).since(before)
        finally:
            await traffic.close()
    keys = [m.message_id for m in batch]
    return {
        **throughput(record, keys),
        "concurrency": concurrency,
        "cpu_ms_per_message": cpu_per_message(used, len(keys)),
    }


@dataclass
class HubRun:
    record: Record
    saturation: list[str]
    offered: list[str]
    rate: float
    lateness: list[float]
    saturation_cpu: dict[str, float]
    offered_cpu: dict[str, float]
    handle_ms: dict[str, float]  # by MessageId, from the hub's log


async def hub_phases(
    site: Site,
    batch: Sequence[Outgoing],
    warmup: Sequence[Outgoing],
    factory: ExportAuthorizations,
    options: Options,
    broker_pid: int | None,
) -> HubRun:
    log = site.home.root / "hub.log"
    record = Record(read_status=acknowledgement_status)
    with hub_process(site.hub_environment(), log) as hub:
        senders, receivers = hub_routes(site)
        traffic = await Traffic.open(senders, receivers, record)
        try:
            say(f"hub: warm-up with {len(warmup)} messages")
            await saturate(traffic, warmup, options.window, options.timeout)
            say(f"hub: saturation, {len(batch)} messages, at most {options.window} in flight")
            before = CpuSample.take(pids("hub", hub.pid, broker_pid))
            await saturate(traffic, batch, options.window, options.timeout)
            saturation_cpu = CpuSample.take(pids("hub", hub.pid, broker_pid)).since(before)
            keys = [m.message_id for m in batch]
            reached = throughput(record, keys)
            rate = min(reached["per_second_answered"], reached["per_second_delivered"]) / 2
            count = max(1, round(rate * options.seconds))
            say(f"hub: signing {count} messages for the open-loop phase")
            offered = sign_many(factory, count, pairings(site.senders, site.receivers))
            say(f"hub: open loop, {rate:.1f} msg/s for {options.seconds:.0f} s")
            before = CpuSample.take(pids("hub", hub.pid, broker_pid))
            lateness = await offer(traffic, offered.__getitem__, rate, count)
            await record.settle(options.timeout)
            offered_cpu = CpuSample.take(pids("hub", hub.pid, broker_pid)).since(before)
        finally:
            await traffic.close()
    return HubRun(
        record=record,
        saturation=keys,
        offered=[m.message_id for m in offered],
        rate=rate,
        lateness=lateness,
        saturation_cpu=cpu_per_message(saturation_cpu, len(keys)),
        offered_cpu=cpu_per_message(offered_cpu, count),
        handle_ms=hub_log_timings(log),
    )


def hub_log_timings(log: Path) -> dict[str, float]:
    """The hub's own time for each message (``elapsed_ms`` of its ``message`` log line), by MessageId."""
    timings: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "message" and "elapsed_ms" in event:
            timings[str(event.get("message_id"))] = float(event["elapsed_ms"])
    return timings


def check_acknowledgements(
    record: Record, keys: Sequence[str], reading: ReadingPolicy, anchors: tuple[x509.Certificate, ...]
) -> dict[str, Any]:
    """Every answer is an Acknowledgement signed by HUB for its message; fail on REJECTED, lost or altered ones."""
    trust = TrustStore(anchors)
    now = datetime.now(UTC)
    statuses: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    refused: list[str] = []
    for key in keys:
        verified = verify_envelope(read_message(record.answers[key], reading), trust, now)
        header = verified.header
        if verified.signer_code != HUB or header.type != "Acknowledgement" or header.ref_to_message_id != key:
            raise BenchError(f"the answer to {key} is not the hub's acknowledgement of it: {header}")
        document = body_document(verified.signed)
        status = record.status[key]
        statuses[status] += 1
        warnings.update(w.get("code", "") for w in document.iter(f"{{{DOCUMENT_NS}}}Warning"))
        if status != "ACCEPTED":
            reasons = "; ".join(f"{r.get('code')}: {r.text}" for r in document.iter(f"{{{DOCUMENT_NS}}}Reason"))
            refused.append(f"{key} {status}: {reasons}")
    if refused:
        raise BenchError(f"the hub rejected {len(refused)} message(s), e.g. {refused[0]}")
    if record.altered:
        raise BenchError(f"{len(record.altered)} delivered message(s) differ from those sent, e.g. {record.altered[0]}")
    if record.unexpected:
        raise BenchError(f"unexpected messages arrived: {dict(record.unexpected)}")
    return {"ACCEPTED": statuses["ACCEPTED"], "REJECTED": statuses["REJECTED"], "warnings": dict(warnings)}


def measure(site: Site, options: Options) -> dict[str, Any]:
    started_at = datetime.now(UTC).replace(microsecond=0)
    pair = pairings(site.senders, site.receivers)
    factory = ExportAuthorizations(site.signers())
    say(f"signing {options.messages + options.warmup} messages")
    batch = sign_many(factory, options.messages, pair)
    warmup = sign_many(factory, options.warmup, pair)
    reading = ReadingPolicy.load(site.settings.schema_dir, site.settings.max_message_bytes)

    broker = broker_facts(site.settings)
    say("2  crypto ceiling")
    crypto_pids = pids("crypto", os.getpid(), broker["os_pid"])
    before = CpuSample.take(crypto_pids)
    crypto = measure_crypto(batch, reading, site.anchors(), site.home.hub_signer())
    crypto_cpu = cpu_per_message(CpuSample.take(crypto_pids).since(before), len(batch))
    say("1  broker ceiling: bare relay, one message at a time")
    relay = asyncio.run(relay_ceiling(site, batch, options, broker["os_pid"], concurrency=1))
    say(f"1b bare relay, {RELAY_CONCURRENCY} messages at a time")
    relay_concurrent = asyncio.run(relay_ceiling(site, batch, options, broker["os_pid"], RELAY_CONCURRENCY))
    say("3  the hub")
    hub = asyncio.run(hub_phases(site, batch, warmup, factory, options, broker["os_pid"]))
    say("checking every acknowledgement's signature")
    answers = check_acknowledgements(hub.record, hub.saturation + hub.offered, reading, site.anchors())

    record = hub.record
    saturation = {
        **throughput(record, hub.saturation),
        "cpu_ms_per_message": hub.saturation_cpu,
        "hub_handle_ms": distribution(hub.handle_ms[k] for k in hub.saturation if k in hub.handle_ms),
    }
    latency = {
        "offered_per_second": hub.rate,
        "seconds": options.seconds,
        "messages": len(hub.offered),
        "delivery_ms": latencies_ms(record.published, record.delivered, hub.offered),
        "acknowledgement_ms": latencies_ms(record.published, record.answered, hub.offered),
        "confirm_ms": latencies_ms(record.published, record.confirmed, hub.offered),
        "hub_handle_ms": distribution(hub.handle_ms[k] for k in hub.offered if k in hub.handle_ms),
        "send_lateness_ms": distribution(seconds * 1000 for seconds in hub.lateness),
        "cpu_ms_per_message": hub.offered_cpu,
    }
    ceilings = {"broker": relay["per_second_answered"], "crypto": crypto.per_second}
    lower = min(ceilings, key=lambda name: ceilings[name])
    return {
        "started_at": started_at.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "rabbitmq": broker["rabbitmq_version"],
            "erlang": broker["erlang_version"],
            "ledger_filesystem": filesystem_of(site.home.root),
        },
        "options": asdict(options),
        "senders": list(site.senders),
        "receivers": list(site.receivers),
        "receipts": "none: receivers acknowledge each delivery to the broker without sending a Receipt",
        "message_bytes": sum(len(m.body) for m in batch) / len(batch),
        "broker_ceiling": relay,
        "broker_concurrent_relay": relay_concurrent,
        "crypto_ceiling": {
            "messages": crypto.messages,
            "per_second": crypto.per_second,
            "ms_per_message": crypto.ms(crypto.seconds),
            "read_ms": crypto.ms(crypto.read_seconds),
            "verify_ms": crypto.ms(crypto.verify_seconds),
            "sign_ms": crypto.ms(crypto.sign_seconds),
            "cpu_ms_per_message": crypto_cpu,
        },
        "hub_saturation": saturation,
        "hub_latency": latency,
        "ratio": {
            "lower_ceiling": lower,
            "hub_over_lower_ceiling": saturation["per_second_answered"] / ceilings[lower],
            "hub_over_broker_ceiling": saturation["per_second_answered"] / ceilings["broker"],
            "hub_over_crypto_ceiling": saturation["per_second_answered"] / ceilings["crypto"],
        },
        "acknowledgements": answers,
    }


def options_from(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per saturation phase (default 3000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the open-loop phase (default 20)")
    parser.add_argument("--senders", type=int, default=4, help="sending participants (default 4)")
    parser.add_argument("--receivers", type=int, default=2, help="receiving participants (default 2)")
    parser.add_argument("--window", type=int, default=256, help="messages in flight at saturation (default 256)")
    parser.add_argument(
        "--quick", action="store_true", help="200 messages and 3 s of open loop: checks that the bench works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        return Options(200, 3.0, args.senders, args.receivers, 64, 10, 60.0, quick=True)
    return Options(args.messages, args.seconds, args.senders, args.receivers, args.window, 50, 120.0, quick=False)


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(argv)
    try:
        with bench_site(options.senders, options.receivers) as site:
            result = measure(site, options)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    table = format_table(result)
    result["table"] = table
    path = write_results(result)
    print(table)
    print(f"\nwritten to {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
