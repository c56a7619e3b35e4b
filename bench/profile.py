"""Where the hub's time goes: cProfile over ``Hub.handle`` for many inbound messages, in this process.

    .venv/bin/python -m bench.profile [--messages 1000] [--top 25]

The hub is built as ``i2es gateway run`` builds it (``HubParts`` on a fresh home: the SQLite ledger with its
fsyncs, the registry, the trust store, the hub's key), but its outbox keeps messages in memory instead of
publishing them: no broker round trips, no consumer, no log line per message. Signed ExportAuthorizations
from several senders are handled once unprofiled (for the plain time per message), then others under
cProfile. Prints the top functions by cumulative and by own time, per message.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._messages import ExportAuthorizations, Outgoing, pairings, sign_many
from bench._procfs import CpuSample
from bench._site import BenchError, bench_site
from gateway.hub import Hub
from gateway.ledger.model import LedgerEntry
from gateway.pipeline import Inbound
from gateway.runtime import HubParts
from gateway.settings import PROJECT_ROOT

# pstats' key for a function: file, line, name.
Function = tuple[str, int, str]


@dataclass
class MemoryOutbox:
    """The hub's outbox without a broker: what would be published, counted."""

    delivered: int = 0
    acknowledged: list[bytes] = field(default_factory=list)

    async def deliver(self, recipient: str, entry: LedgerEntry) -> None:
        self.delivered += 1

    async def acknowledge(self, participant: str, entry: LedgerEntry, correlation_id: str | None) -> None:
        self.acknowledged.append(entry.ack)

    async def dead_letter(self, inbound: Inbound, reason: str) -> None:
        raise BenchError(f"the hub dead-lettered a message: {reason}")

    async def notify(self, participant: str, message_id: str, body: bytes) -> None:
        pass


def inbound(message: Outgoing) -> Inbound:
    return Inbound(message.body, message.sender, message.message_id, message.type, "application/xml", 2)


async def handle_all(hub: Hub, messages: Sequence[Outgoing]) -> None:
    for message in messages:
        outcome = await hub.handle(inbound(message))
        if outcome.status != "ACCEPTED":
            raise BenchError(f"the hub answered {outcome.status}: {outcome.reasons}")


def where(function: Function) -> str:
    """A short name: project files relative to the repository, libraries from their package."""
    path, line, name = function
    if path == "~":
        return name
    for root in (str(PROJECT_ROOT) + "/", "site-packages/", "lib/python3.11/"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{path}:{line} {name}"


def is_scaffolding(function: Function) -> bool:
    """The event loop and this module: around every message, part of none."""
    path, _, name = function
    return "asyncio/" in path or path.startswith(str(Path(__file__).parent)) or "_contextvars.Context" in name


def table(stats: pstats.Stats, messages: int, key: int, top: int, title: str) -> list[str]:
    """The ``top`` functions by cumulative (key 3) or own (key 2) time, in ms per message; % of Hub.handle."""
    rows = getattr(stats, "stats", {})  # {function: (primitive calls, calls, own s, cumulative s, callers)}
    rows = {function: row for function, row in rows.items() if not is_scaffolding(function)}
    total = max(row[3] for row in rows.values())
    ordered = sorted(rows.items(), key=lambda item: item[1][key], reverse=True)[:top]
    lines = [title, f"{'cum ms':>8} {'own ms':>8} {'% cum':>6} {'calls':>7}  function"]
    for function, (_, calls, own, cumulative, _) in ordered:
        lines.append(
            f"{cumulative / messages * 1000:8.3f} {own / messages * 1000:8.3f} {cumulative / total * 100:5.1f}% "
            f"{calls / messages:7.1f}  {where(function)}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages profiled (default 1000)")
    parser.add_argument("--top", type=int, default=25, help="rows of each table (default 25)")
    parser.add_argument("--dump", type=Path, help="also write the raw pstats data to this file")
    args = parser.parse_args(argv)
    try:
        with bench_site(senders=4, receivers=2) as site:
            factory = ExportAuthorizations(site.signers())
            pair = pairings(site.senders, site.receivers)
            warmup, plain, profiled = (sign_many(factory, n, pair) for n in (50, args.messages, args.messages))
            parts = HubParts(site.settings)
            try:
                hub = parts.make_hub(MemoryOutbox())
                asyncio.run(handle_all(hub, warmup))
                before = CpuSample.take({"profile": os.getpid()})
                started, cpu_started = time.perf_counter(), time.process_time()
                asyncio.run(handle_all(hub, plain))
                plain_ms = (time.perf_counter() - started) / len(plain) * 1000
                plain_cpu_ms = (time.process_time() - cpu_started) / len(plain) * 1000
                others = CpuSample.take({"profile": os.getpid()}).since(before).others_cores
                profiler = cProfile.Profile()
                profiler.enable()
                asyncio.run(handle_all(hub, profiled))
                profiler.disable()
            finally:
                parts.close()
    except BenchError as error:
        print(f"profile failed: {error}", file=sys.stderr)
        return 1
    stats = pstats.Stats(profiler)
    if args.dump:
        stats.dump_stats(args.dump)
    print(
        f"Hub.handle without the broker, unprofiled, {len(plain)} messages: {plain_ms:.2f} ms per message, "
        f"of which {plain_cpu_ms:.2f} ms on the CPU"
    )
    print(f"other work on the machine meanwhile: {others:.2f} of a core (the broker included)")
    print(f"under cProfile, {len(profiled)} messages; times are per message and inflated by the profiler\n")
    print("\n".join(table(stats, len(profiled), 3, args.top, "by cumulative time")))
    print()
    print("\n".join(table(stats, len(profiled), 2, args.top, "by own time")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
