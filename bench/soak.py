"""The hub at a fixed rate for a long time: does its memory grow, does it lose anything?

    .venv/bin/python -m bench.soak --rate R --seconds S [--senders 4] [--receivers 2] [--sample-seconds 10]

Runs ``i2es gateway run`` in a child process on a fresh home and vhost (both removed afterwards) and
offers it R signed ExportAuthorizations a second, open loop, for S seconds; each message is signed just
before its time (the senders' cost, in this process). Prints the hub's resident memory (VmRSS, with its
worker processes') as it goes, and at the end its RSS at the start and the end with the sent, acknowledged and
delivered counts.
Writes them as JSON to bench/results/soak-<UTC timestamp>.json. Exits with status 1 if the hub rejects,
loses or alters a message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench._messages import ExportAuthorizations, pairings, sign_many
from bench._process import hub_process
from bench._procfs import cpu_seconds, rss_kib
from bench._report import distribution, latencies_ms, say, shown, write_results
from bench._site import BenchError, Site, bench_site
from bench._traffic import Record, Traffic, acknowledgement_status, hub_routes, offer, saturate

WARMUP = 20
SETTLE_TIMEOUT = 120.0


async def _sample(pid: int, record: Record, every: float, started: float, samples: list[dict[str, Any]]) -> None:
    while True:
        await asyncio.sleep(every)
        sample = {
            "seconds": round(time.perf_counter() - started, 1),
            "rss_kib": rss_kib(pid, tree=True),
            "sent": len(record.published),
            "acknowledged": len(record.answered),
            "delivered": len(record.delivered),
        }
        samples.append(sample)
        say(
            f"{sample['seconds']:7.0f} s: hub RSS {sample['rss_kib'] / 1024:6.1f} MiB, sent {sample['sent']}, "
            f"acknowledged {sample['acknowledged']}, delivered {sample['delivered']}"
        )


async def soak(site: Site, rate: float, seconds: float, every: float) -> dict[str, Any]:
    factory = ExportAuthorizations(site.signers())
    pair = pairings(site.senders, site.receivers)
    count = max(1, round(rate * seconds))
    started_at = datetime.now(UTC).replace(microsecond=0)
    samples: list[dict[str, Any]] = []
    with hub_process(site.hub_environment(), site.home.root / "hub.log") as hub:
        rss_ready = rss_kib(hub.pid, tree=True)
        senders, receivers = hub_routes(site)
        traffic = await Traffic.open(senders, receivers, Record(acknowledgement_status, keep_answers=False))
        try:
            await saturate(traffic, sign_many(factory, WARMUP, pair), WARMUP, SETTLE_TIMEOUT)
            record = traffic.record = Record(acknowledgement_status, keep_answers=False)
            rss_start = rss_kib(hub.pid, tree=True)
            cpu_start = cpu_seconds(hub.pid, tree=True)
            say(f"soak: {rate:g} msg/s for {seconds:g} s ({count} messages); hub RSS {rss_start / 1024:.1f} MiB")
            started = time.perf_counter()
            sampler = asyncio.create_task(_sample(hub.pid, record, every, started, samples))
            try:
                lateness = await offer(traffic, lambda index: factory.sign(*pair(index)), rate, count)
                offered_seconds = time.perf_counter() - started
                await record.settle(SETTLE_TIMEOUT)
            finally:
                sampler.cancel()
            rss_end = rss_kib(hub.pid, tree=True)
            cpu = cpu_seconds(hub.pid, tree=True) - cpu_start
        finally:
            await traffic.close()
    statuses = Counter(record.status.values())
    return {
        "started_at": started_at.isoformat(),
        "rate": rate,
        "seconds": seconds,
        "offered_seconds": offered_seconds,
        "senders": list(site.senders),
        "receivers": list(site.receivers),
        "sent": len(record.published),
        "acknowledged": len(record.answered),
        "delivered": len(record.delivered),
        "statuses": dict(statuses),
        "altered": len(record.altered),
        "hub_rss_kib": {"ready": rss_ready, "start": rss_start, "end": rss_end},
        "hub_cpu_ms_per_message": cpu / count * 1000,
        "delivery_ms": latencies_ms(record.published, record.delivered, record.published),
        "acknowledgement_ms": latencies_ms(record.published, record.answered, record.published),
        "send_lateness_ms": distribution(value * 1000 for value in lateness),
        "samples": samples,
    }


def summary(result: dict[str, Any]) -> str:
    rss = result["hub_rss_kib"]
    first = result["samples"][0] if result["samples"] else {"seconds": 0, "rss_kib": rss["start"]}
    ack, delivery = result["acknowledgement_ms"], result["delivery_ms"]
    return "\n".join(
        [
            f"soak: {result['rate']:g} msg/s offered for {result['seconds']:g} s "
            f"(published over {result['offered_seconds']:.1f} s), {len(result['senders'])} senders -> "
            f"{len(result['receivers'])} receivers (no receipts)",
            f"sent {result['sent']}, acknowledged {result['acknowledged']} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(result['statuses'].items()))}), "
            f"delivered {result['delivered']}, altered {result['altered']}",
            f"hub RSS (with its workers): {rss['ready'] / 1024:.1f} MiB when ready, "
            f"{rss['start'] / 1024:.1f} MiB at the start "
            f"(after {WARMUP} messages), {rss['end'] / 1024:.1f} MiB at the end; "
            f"{(rss['end'] - first['rss_kib']) / 1024:+.1f} MiB since the first sample at {first['seconds']:.0f} s",
            f"hub CPU {result['hub_cpu_ms_per_message']:.2f} ms per message; latency p50/p99/max: "
            f"delivery {delivery.get('p50', 0):.1f}/{delivery.get('p99', 0):.1f}/{delivery.get('max', 0):.1f} ms, "
            f"acknowledgement {ack.get('p50', 0):.1f}/{ack.get('p99', 0):.1f}/{ack.get('max', 0):.1f} ms",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, required=True, help="messages a second, offered open loop")
    parser.add_argument("--seconds", type=float, required=True, help="how long to offer them")
    parser.add_argument("--senders", type=int, default=4, help="sending participants (default 4)")
    parser.add_argument("--receivers", type=int, default=2, help="receiving participants (default 2)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="how often to print the RSS (default 10)")
    args = parser.parse_args(argv)
    try:
        with bench_site(args.senders, args.receivers) as site:
            result = asyncio.run(soak(site, args.rate, args.seconds, args.sample_seconds))
    except BenchError as error:
        print(f"soak failed: {error}", file=sys.stderr)
        return 1
    path = write_results(result, prefix="soak-")
    print(summary(result))
    print(f"written to {shown(path)}")
    if result["statuses"].get("REJECTED") or result["altered"] or result["delivered"] != result["sent"]:
        print("the hub rejected, altered or failed to deliver messages: see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
