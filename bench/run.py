"""Throughput and latency of the hub on the real broker, against the two ceilings it cannot beat.

    .venv/bin/python -m bench.run [--messages 3000] [--seconds 20] [--senders 4] [--receivers 2]
                                  [--hubs 1] [--ledger sqlite|postgres] [--quick]

In a vhost of its own (``i2es-bench-<hex>``, deleted afterwards), with signed ExportAuthorizations:

1. broker ceiling: a bare relay (``bench._relay --batch N``, N the hub's batch size, ``I2ES_BATCH_MAX``, 64 by
   default) doing the hub's broker work and nothing else, as the hub does it: it takes what waits (up to N),
   publishes every onward message and reply at once with publisher confirms, then acks the run with one
   multiple ack; 1b (informational) is the same relay taking one message at a time;
2. crypto ceiling: the hub's read, verify and acknowledge steps alone, on one core, no broker; 2b
   (informational) is the same work in a pool of one process per CPU, each with its own warmed trust store;
   2c (informational, after the hub) is the same work one message at a time at one hub's rate in 3b, in CPU
   time a message against back to back: what coming back to work after a pause costs on this machine;
3. the hub as ``i2es gateway run`` runs it, in ``--hubs`` child processes on the same home and vhost (hub k of
   N with ``I2ES_HUB_SHARD=k/N`` and ``I2ES_HUB_NAME=bench-hub-k``): (a) throughput at saturation, with the
   messages each hub handled (from its own log), (b) latency at half that rate, offered open loop (by the
   clock) for ``--seconds``; the hubs' CPU time is their sum;
4. the hub's throughput over the lower of ceilings 1 and 2, and the hub's CPU time per message. Ceilings 1 and
   2 are measured again after the hub's phases, and each counts as the mean of its two runs: on a virtual
   machine the same code runs up to a third faster or slower from one minute to the next.

Then it checks that each message was delivered once, answered once and handled by one hub once (one
``message`` line in all the hubs' logs), and that every answer is the hub's signed acknowledgement.

``--ledger postgres`` keeps the hub's ledger in a new database on the project's PostgreSQL server
(``scripts/postgres start``), dropped afterwards; ``sqlite`` (the default) keeps it in the home folder.

Prints a table and writes it as JSON, with every figure of the table, to bench/results/<UTC timestamp>.json and
bench/results/latest.json. Prints figures and asserts nothing about them; exits with status 1 if the hub
rejects, loses, alters or doubles a message (a second delivery, answer or hub log line for one message).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import sys
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from bench._cores import CorePlan, available_cpus, pinned, plan_cores
from bench._crypto import measure_crypto, measure_crypto_all_cores, measure_crypto_paced
from bench._messages import ExportAuthorizations, Outgoing, pairings, sign_many
from bench._process import ServiceProcess, hub_process, relay_process
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

# How long the receivers and senders keep listening after the last message settled, for late second copies.
DUPLICATE_GRACE = 1.0
LEDGERS = ("sqlite", "postgres")


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
    hubs: int = 1
    ledger: str = "sqlite"
    pin: bool = True

    def core_plan(self) -> CorePlan | None:
        """Where the hubs run in phase 3: a CPU of their own each if asked and the machine can spare them."""
        return plan_cores(available_cpus(), self.hubs) if self.pin else None


def pids(service: str, pid: int, broker: int | None) -> dict[str, int]:
    """The processes whose CPU time a phase reports: the service measured, the bench itself, the broker."""
    named = {service: pid}
    if pid != os.getpid():
        named["bench"] = os.getpid()
    if broker is not None:
        named["broker"] = broker
    return named


def relay_batch_sizes(log: Path) -> dict[str, int]:
    """What the relay said on stopping: messages relayed and in how many batches (warm-up included)."""
    found = re.findall(r"relay_stopped relayed=(\d+) batches=(\d+)", log.read_text(errors="replace"))
    if not found:
        return {}
    relayed, batches = found[-1]
    return {"relayed": int(relayed), "batches": int(batches)}


async def relay_ceiling(
    site: Site, batch: Sequence[Outgoing], options: Options, broker_pid: int | None, relay_batch: int | None
) -> dict[str, Any]:
    """The bare relay's throughput: in batches of up to ``relay_batch`` if given, else one message at a time."""
    url = site.admin_url()
    await declare_queues(url)
    name = f"relay-batch-{relay_batch}" if relay_batch is not None else "relay-one"
    log = site.home.root / f"{name}.log"
    record = Record(read_status=bytes.decode, keep_answers=False)
    with relay_process(url, log, batch=relay_batch) as relay:
        senders, receivers = relay_routes(site)
        traffic = await Traffic.open(senders, receivers, record)
        try:
            warmup = [replace(m, message_id=new_message_id()) for m in batch[: options.warmup]]
            await saturate(traffic, warmup, options.window, options.timeout)
            before = CpuSample.take(pids("relay", relay.pid, broker_pid))
            await saturate(traffic, batch, options.window, options.timeout)
            used = CpuSample.take(pids("relay", relay.pid, broker_pid)).since(before)
            await asyncio.sleep(DUPLICATE_GRACE)
        finally:
            await traffic.close()
    record.check_once()
    keys = [m.message_id for m in batch]
    sizes = relay_batch_sizes(log)
    return {
        **throughput(record, keys),
        "mode": "batch" if relay_batch is not None else "one at a time",
        "batch_max": relay_batch if relay_batch is not None else 1,
        "batches": sizes.get("batches"),
        "mean_batch": sizes["relayed"] / sizes["batches"] if sizes.get("batches") else None,
        "cpu_ms_per_message": cpu_per_message(used, len(keys)),
    }


@dataclass(frozen=True)
class HubSpec:
    """One of the bench's hub processes: its name, its shard and its own log file."""

    name: str
    shard: str
    log: Path

    @classmethod
    def all(cls, site: Site, count: int) -> list[HubSpec]:
        """Hubs 1 to ``count``: ``bench-hub-k`` with shard ``k/count``, logging to ``hub-k.log`` in the home."""
        return [cls(f"bench-hub-{k}", f"{k}/{count}", site.home.root / f"hub-{k}.log") for k in range(1, count + 1)]

    def environment(self, site: Site) -> dict[str, str]:
        """The site's hub environment, with this hub's shard and name."""
        return {**site.hub_environment(), "I2ES_HUB_SHARD": self.shard, "I2ES_HUB_NAME": self.name}


@dataclass
class HubLog:
    """What one hub's log says of each message it handled (its ``message`` lines)."""

    spec: HubSpec
    pid: int
    handle_ms: dict[str, float] = field(default_factory=dict)  # by MessageId
    lines: Counter[str] = field(default_factory=Counter)  # message lines by MessageId
    names: set[str] = field(default_factory=set)  # the "hub" field of those lines
    batch_of: dict[str, int] = field(default_factory=dict)  # the size of the batch it was handled in, by MessageId
    steps_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # its batch's steps (ms), by MessageId

    @classmethod
    def read(cls, spec: HubSpec, pid: int) -> HubLog:
        """The ``message`` lines of the hub's log file, read once the hub has stopped."""
        parsed = cls(spec, pid)
        for event in message_events(spec.log):
            key = str(event.get("message_id"))
            parsed.lines[key] += 1
            if "elapsed_ms" in event:
                parsed.handle_ms[key] = float(event["elapsed_ms"])
            if "hub" in event:
                parsed.names.add(str(event["hub"]))
            parsed.batch_of[key] = max(1, int(event.get("batch") or 1))
            if isinstance(event.get("steps_ms"), dict):
                parsed.steps_ms[key] = {str(step): float(ms) for step, ms in event["steps_ms"].items()}
        return parsed

    def mean_batch(self, keys: Sequence[str]) -> float | None:
        """The mean size of the batches that handled ``keys`` (each batch counted once), None if it handled none."""
        sizes = [self.batch_of[k] for k in keys if k in self.batch_of]
        batches = sum(1 / size for size in sizes)
        return len(sizes) / batches if batches else None

    def summary(self, phases: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """Its name, shard and pid, the messages it handled in all and in each phase (with the mean batch size),
        and the names it logged."""
        return {
            "name": self.spec.name,
            "shard": self.spec.shard,
            "pid": self.pid,
            "messages": sum(self.lines.values()),
            **{phase: sum(1 for k in keys if k in self.lines) for phase, keys in phases.items()},
            "mean_batch": {phase: self.mean_batch(keys) for phase, keys in phases.items()},
            "logged_as": sorted(self.names),
        }


def message_events(log: Path) -> Iterator[dict[str, Any]]:
    """The hub's JSON log lines for handled messages (``"event": "message"``)."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "message":
            yield event


@dataclass
class HubRun:
    """What the hub phases leave: the record, the phases' MessageIds, the CPU figures and the hubs' logs."""

    record: Record
    warmup: list[str]
    saturation: list[str]
    offered: list[str]
    rate: float
    lateness: list[float]
    saturation_cpu: dict[str, float]
    offered_cpu: dict[str, float]
    logs: list[HubLog]
    cores: CorePlan | None = None

    @property
    def handle_ms(self) -> dict[str, float]:
        """Each hub's own time for each message (``elapsed_ms`` of its log line), by MessageId."""
        return {key: ms for log in self.logs for key, ms in log.handle_ms.items()}

    def steps_ms(self, keys: Sequence[str]) -> dict[str, dict[str, float]]:
        """For each step of a batch (``steps_ms`` of the hubs' log lines), its distribution over ``keys``."""
        steps = {key: found for log in self.logs for key, found in log.steps_ms.items()}
        names = list(dict.fromkeys(step for key in keys if key in steps for step in steps[key]))
        return {name: distribution(steps[k][name] for k in keys if name in steps.get(k, {})) for name in names}


class Hubs:
    """The bench's running hub processes, for their pids and their CPU time."""

    def __init__(self, specs: Sequence[HubSpec], processes: Sequence[ServiceProcess], broker: int | None) -> None:
        self.specs = list(specs)
        self.processes = list(processes)
        self.broker = broker

    def sample(self) -> CpuSample:
        """CPU time so far of each hub (by its name, with its workers), of the bench and of the broker, and of the
        machine."""
        named = {spec.name: process.pid for spec, process in zip(self.specs, self.processes, strict=True)}
        hubs = frozenset(named)  # each with its worker processes
        named["bench"] = os.getpid()
        if self.broker is not None:
            named["broker"] = self.broker
        return CpuSample.take(named, trees=hubs)

    def cpu_per_message(self, before: CpuSample, messages: int) -> dict[str, float]:
        """CPU ms per message since ``before``: ``hub`` is all hubs together, and each hub under its name too."""
        use = self.sample().since(before)
        names = {spec.name for spec in self.specs}
        per_hub = {name: seconds for name, seconds in use.processes.items() if name in names}
        rest = {name: seconds for name, seconds in use.processes.items() if name not in names}
        together = replace(use, processes={"hub": sum(per_hub.values()), **rest})
        return {**cpu_per_message(together, messages), **{n: s / messages * 1000 for n, s in per_hub.items()}}


@contextlib.contextmanager
def running_hubs(site: Site, count: int, broker: int | None, cores: CorePlan | None = None) -> Iterator[Hubs]:
    """Start ``count`` hubs one after the other (each ready before the next starts), each on its CPU of ``cores``
    if given, with the broker's threads and this process's on the others meanwhile; stop them all afterwards and
    give the broker and this process their CPUs back."""
    specs = HubSpec.all(site, count)
    own = [frozenset({cpu}) for cpu in cores.hubs] if cores is not None else [None] * count
    others = [os.getpid(), *([broker] if broker is not None else [])]
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(hub_process(spec.environment(site), spec.log, name=spec.name, cpus=cpus))
            for spec, cpus in zip(specs, own, strict=True)
        ]
        stack.enter_context(pinned(others, cores.rest if cores is not None else None))
        yield Hubs(specs, processes, broker)


async def hub_phases(
    site: Site,
    batch: Sequence[Outgoing],
    warmup: Sequence[Outgoing],
    factory: ExportAuthorizations,
    options: Options,
    broker_pid: int | None,
) -> HubRun:
    record = Record(read_status=acknowledgement_status)
    cores = options.core_plan()
    with running_hubs(site, options.hubs, broker_pid, cores) as hubs:
        senders, receivers = hub_routes(site)
        traffic = await Traffic.open(senders, receivers, record)
        try:
            say(f"hub: warm-up with {len(warmup)} messages")
            await saturate(traffic, warmup, options.window, options.timeout)
            say(f"hub: saturation, {len(batch)} messages, at most {options.window} in flight")
            before = hubs.sample()
            await saturate(traffic, batch, options.window, options.timeout)
            saturation_cpu = hubs.cpu_per_message(before, len(batch))
            keys = [m.message_id for m in batch]
            reached = throughput(record, keys)
            rate = min(reached["per_second_answered"], reached["per_second_delivered"]) / 2
            count = max(1, round(rate * options.seconds))
            say(f"hub: signing {count} messages for the open-loop phase")
            offered = sign_many(factory, count, pairings(site.senders, site.receivers))
            say(f"hub: open loop, {rate:.1f} msg/s for {options.seconds:.0f} s")
            before = hubs.sample()
            lateness = await offer(traffic, offered.__getitem__, rate, count)
            await record.settle(options.timeout)
            offered_cpu = hubs.cpu_per_message(before, count)
            await asyncio.sleep(DUPLICATE_GRACE)
        finally:
            await traffic.close()
    return HubRun(
        record=record,
        warmup=[m.message_id for m in warmup],
        saturation=keys,
        offered=[m.message_id for m in offered],
        rate=rate,
        lateness=lateness,
        saturation_cpu=saturation_cpu,
        offered_cpu=offered_cpu,
        logs=[HubLog.read(spec, process.pid) for spec, process in zip(hubs.specs, hubs.processes, strict=True)],
        cores=cores,
    )


def check_once(hub: HubRun) -> dict[str, int]:
    """Every message delivered once, answered once and handled by one hub once (one log line in all the hubs'
    logs); fail on any second copy. Returns the counts of second copies (all zero)."""
    counts = hub.record.check_once()
    lines: Counter[str] = Counter()
    for log in hub.logs:
        lines.update(log.lines)
    keys = hub.warmup + hub.saturation + hub.offered
    twice = [key for key in keys if lines[key] > 1]
    if twice:
        raise BenchError(f"{len(twice)} message(s) were handled more than once by the hubs, e.g. {twice[0]}")
    missing = [key for key in keys if lines[key] == 0]
    if missing:
        raise BenchError(f"no hub logged {len(missing)} message(s) it answered, e.g. {missing[0]}")
    return {**counts, "handled": 0}


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


def ledger_facts(site: Site) -> dict[str, Any]:
    """Which ledger the hub keeps, and where: the file system of the SQLite file, or the PostgreSQL server."""
    url = site.settings.ledger_url
    if url.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(url)
        return {"ledger": "postgres", "ledger_at": f"{parts.hostname}:{parts.port or 5432}{parts.path}"}
    return {"ledger": "sqlite", "ledger_filesystem": filesystem_of(site.settings.ledger_path.parent)}


# How long 2c offers messages at 3b's rate.
PACED_SECONDS = 3.0


def crypto_ceiling(
    site: Site, batch: Sequence[Outgoing], reading: ReadingPolicy, broker_pid: int | None
) -> dict[str, Any]:
    """Ceiling 2: one core, step by step, with the CPU time of each process."""
    crypto_pids = pids("crypto", os.getpid(), broker_pid)
    before = CpuSample.take(crypto_pids)
    crypto = measure_crypto(batch, reading, site.anchors(), site.home.hub_signer())
    return {
        "messages": crypto.messages,
        "per_second": crypto.per_second,
        "ms_per_message": crypto.ms(crypto.seconds),
        "read_ms": crypto.ms(crypto.read_seconds),
        "verify_ms": crypto.ms(crypto.verify_seconds),
        "sign_ms": crypto.ms(crypto.sign_seconds),
        "cpu_ms_per_message": cpu_per_message(CpuSample.take(crypto_pids).since(before), len(batch)),
    }


def crypto_paced(site: Site, batch: Sequence[Outgoing], reading: ReadingPolicy, rate: float) -> dict[str, Any]:
    """2c: the crypto step at one hub's offered rate in 3b, against back to back, in CPU time a message."""
    interval = 1 / rate
    count = min(len(batch), max(50, round(PACED_SECONDS / interval)))
    say(f"2c crypto, one message every {interval * 1000:.1f} ms (a hub's rate in 3b), {count} messages")
    paced = measure_crypto_paced(batch[:count], reading, site.anchors(), site.home.hub_signer(), interval)
    return {**asdict(paced), "slowdown": paced.slowdown}


def crypto_figures(
    site: Site, batch: Sequence[Outgoing], reading: ReadingPolicy, broker_pid: int | None
) -> dict[str, Any]:
    """Ceiling 2 and 2b (all cores, msg/s)."""
    say("2  crypto ceiling, one core")
    ceiling = crypto_ceiling(site, batch, reading, broker_pid)
    say(f"2b crypto, {os.cpu_count()} worker processes")
    settings = site.settings
    parallel = measure_crypto_all_cores(batch, settings.home, settings.schema_dir, settings.max_message_bytes)
    return {
        "crypto_ceiling": ceiling,
        "crypto_all_cores": {
            "messages": parallel.messages,
            "workers": parallel.workers,
            "seconds": parallel.seconds,
            "per_second": parallel.per_second,
        },
    }


def hub_figures(hub: HubRun, options: Options) -> dict[str, Any]:
    """Phases 3a and 3b of the hubs, and what each hub handled, from the records and the hubs' logs."""
    record, handle_ms = hub.record, hub.handle_ms
    phases = {"warmup": hub.warmup, "saturation": hub.saturation, "offered": hub.offered}
    saturation = {
        **throughput(record, hub.saturation),
        "cpu_ms_per_message": hub.saturation_cpu,
        "hub_handle_ms": distribution(handle_ms[k] for k in hub.saturation if k in handle_ms),
    }
    latency = {
        "offered_per_second": hub.rate,
        "seconds": options.seconds,
        "messages": len(hub.offered),
        "delivery_ms": latencies_ms(record.published, record.delivered, hub.offered),
        "acknowledgement_ms": latencies_ms(record.published, record.answered, hub.offered),
        "confirm_ms": latencies_ms(record.published, record.confirmed, hub.offered),
        "hub_handle_ms": distribution(handle_ms[k] for k in hub.offered if k in handle_ms),
        "hub_steps_ms": hub.steps_ms(hub.offered),
        "send_lateness_ms": distribution(seconds * 1000 for seconds in hub.lateness),
        "cpu_ms_per_message": hub.offered_cpu,
    }
    hubs = {
        "count": len(hub.logs),
        "per_hub": [log.summary(phases) for log in hub.logs],
        "cores": hub.cores.as_json() if hub.cores is not None else None,
    }
    return {"hubs": hubs, "hub_saturation": saturation, "hub_latency": latency}


def ceiling_rate(before: Mapping[str, Any], after: Mapping[str, Any] | None, key: str) -> float:
    """A ceiling's msg/s while the hub ran: the mean of its runs before and after the hub's phases."""
    if after is None:
        return float(before[key])
    return (float(before[key]) + float(after[key])) / 2


def ratios(result: Mapping[str, Any]) -> dict[str, Any]:
    """The hub's throughput at saturation over ceiling 1 (the batched relay), ceiling 2 and the lower one; each
    ceiling the mean of its runs before and after the hub, since this machine's speed drifts within minutes."""
    hub = result["hub_saturation"]["per_second_answered"]
    ceilings = {
        "broker": ceiling_rate(result["broker_ceiling"], result.get("broker_ceiling_after"), "per_second_answered"),
        "crypto": ceiling_rate(result["crypto_ceiling"], result.get("crypto_ceiling_after"), "per_second"),
    }
    lower = min(ceilings, key=lambda name: ceilings[name])
    return {
        "ceilings": ceilings,
        "lower_ceiling": lower,
        "hub_over_lower_ceiling": hub / ceilings[lower],
        "hub_over_broker_ceiling": hub / ceilings["broker"],
        "hub_over_crypto_ceiling": hub / ceilings["crypto"],
    }


def measure(site: Site, options: Options) -> dict[str, Any]:
    started_at = datetime.now(UTC).replace(microsecond=0)
    pair = pairings(site.senders, site.receivers)
    factory = ExportAuthorizations(site.signers())
    say(f"signing {options.messages + options.warmup} messages")
    batch = sign_many(factory, options.messages, pair)
    warmup = sign_many(factory, options.warmup, pair)
    reading = ReadingPolicy.load(site.settings.schema_dir, site.settings.max_message_bytes)

    broker = broker_facts(site.settings)
    crypto = crypto_figures(site, batch, reading, broker["os_pid"])
    relay_batch = site.settings.batch_max
    say(f"1  broker ceiling: bare relay, batches of up to {relay_batch}")
    relay = asyncio.run(relay_ceiling(site, batch, options, broker["os_pid"], relay_batch))
    say("1b bare relay, one message at a time")
    relay_one = asyncio.run(relay_ceiling(site, batch, options, broker["os_pid"], None))
    say(f"3  the hub ({options.hubs} process{'es' if options.hubs > 1 else ''})")
    hub = asyncio.run(hub_phases(site, batch, warmup, factory, options, broker["os_pid"]))
    say("2  crypto ceiling again, after the hub")
    crypto_after = crypto_ceiling(site, batch, reading, broker["os_pid"])
    paced = crypto_paced(site, batch, reading, hub.rate / options.hubs)
    say(f"1  broker ceiling again, after the hub: bare relay, batches of up to {relay_batch}")
    relay_after = asyncio.run(relay_ceiling(site, batch, options, broker["os_pid"], relay_batch))
    say("checking that nothing arrived or was handled twice, and every acknowledgement's signature")
    once = check_once(hub)
    answers = check_acknowledgements(hub.record, hub.saturation + hub.offered, reading, site.anchors())

    result: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "rabbitmq": broker["rabbitmq_version"],
            "erlang": broker["erlang_version"],
            **ledger_facts(site),
        },
        "options": asdict(options),
        "senders": list(site.senders),
        "receivers": list(site.receivers),
        "receipts": "none: receivers acknowledge each delivery to the broker without sending a Receipt",
        "message_bytes": sum(len(m.body) for m in batch) / len(batch),
        "broker_ceiling": relay,
        "broker_one_at_a_time": relay_one,
        **crypto,
        "broker_ceiling_after": relay_after,
        "crypto_ceiling_after": crypto_after,
        "crypto_paced": paced,
        **hub_figures(hub, options),
        "duplicates": once,
        "acknowledgements": answers,
    }
    result["ratio"] = ratios(result)
    return result


@contextlib.contextmanager
def ledger_database(kind: str) -> Iterator[str]:
    """``""`` for SQLite in the home folder; for ``postgres``, a new database's URL, dropped afterwards."""
    if kind != "postgres":
        yield ""
        return
    from tests.support.postgres import PostgresError, drop_database, fresh_database

    say("postgres: a new database on the project's server (scripts/postgres start)")
    try:
        url = fresh_database("i2es_bench")
    except PostgresError as error:
        raise BenchError(f"no PostgreSQL server for the ledger: {error}") from None
    try:
        yield url
    finally:
        drop_database(url)


def options_from(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per saturation phase (default 3000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the open-loop phase (default 20)")
    parser.add_argument("--senders", type=int, default=4, help="sending participants (default 4)")
    parser.add_argument("--receivers", type=int, default=2, help="receiving participants (default 2)")
    parser.add_argument("--window", type=int, default=256, help="messages in flight at saturation (default 256)")
    parser.add_argument("--hubs", type=int, default=1, help="hub processes sharing the queues (default 1)")
    parser.add_argument("--ledger", choices=LEDGERS, default="sqlite", help="where the hubs keep the ledger")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the hubs share every CPU with the broker and the bench (default: each hub on a CPU of its own "
        "while one is left for the rest)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 messages and 3 s of open loop: checks that the bench works"
    )
    args = parser.parse_args(argv)
    if args.hubs < 1:
        parser.error("--hubs takes a number of 1 or more")
    shared = {"hubs": args.hubs, "ledger": args.ledger, "pin": args.pin}
    if args.quick:
        return Options(200, 3.0, args.senders, args.receivers, 64, 10, 60.0, quick=True, **shared)
    return Options(
        args.messages, args.seconds, args.senders, args.receivers, args.window, 50, 120.0, quick=False, **shared
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(argv)
    try:
        with (
            ledger_database(options.ledger) as url,
            bench_site(options.senders, options.receivers, ledger_url=url) as site,
        ):
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
