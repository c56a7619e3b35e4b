"""Mutation fuzzing of the hub's reading and verifying path: no input may escape as anything but a reason code.

    .venv/bin/python -m bench.fuzz --seconds 60

Mutates signed and unsigned envelopes (flipped bytes, deletions, duplications, spliced XML fragments) and runs
each through ``examine``, the hub's pure checks. Prints the count of each outcome and stops with exit status 1,
writing the input to bench/results/, if anything other than a verdict comes out.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import traceback
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from certs.trust import TrustStore
from gateway.ledger.store import SqliteLedger
from gateway.pipeline import Checks, Inbound, examine
from gateway.reading import ReadingPolicy
from gateway.registry import Registry
from gateway.rules.substances import Catalogue
from gateway.settings import PROJECT_ROOT
from tests.support.pki import envelope_of, header_of, make_pki, signed

FRAGMENTS = [
    b"<!---->", b"<?pi x?>", b"<!DOCTYPE m [<!ENTITY e 'x'>]>", b"&e;", b"&#0;", b"\x00", b"\xff\xfe",
    b"<ds:Signature xmlns:ds='http://www.w3.org/2000/09/xmldsig#'/>", b"<Body/>", b"<Header/>", b" xmlns='x'",
    b"<![CDATA[x]]>", b"1e3", b"-1", b"NaN", b"\r\n", b"=", b"'", b'"', b">", b"<",
]  # fmt: skip


def mutate(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        where = rng.randrange(len(buffer) or 1)
        kind = rng.randrange(4)
        if kind == 0 and buffer:
            buffer[where] = rng.randrange(256)
        elif kind == 1 and buffer:
            del buffer[where : where + rng.randrange(1, 64)]
        elif kind == 2:
            buffer[where:where] = rng.choice(FRAGMENTS)
        else:
            start = rng.randrange(len(buffer) or 1)
            buffer[where:where] = buffer[start : start + rng.randrange(1, 256)]
    return bytes(buffer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # cryptography warns about the odd certificates this makes

    pki = make_pki()
    now = datetime.now(UTC)
    folder = Path(tempfile.mkdtemp())
    ledger, registry = SqliteLedger(folder / "hub.sqlite"), Registry(folder / "hub.sqlite")
    for code in ("CH", "DE"):
        registry.add_participant(code, code, None, now)
    checks = Checks(
        ReadingPolicy.load(PROJECT_ROOT / "schemas", 1 << 20), TrustStore(pki.anchors, revocations=registry),
        registry, ledger, timedelta(hours=24), timedelta(minutes=5), ledger.trade, Catalogue.load(),
    )  # fmt: skip
    from lxml import etree

    seeds = [signed(name, pki.signers["DE"]) for name in ("ExportAuthorization", "Cancellation", "Clarification")]
    seeds.append(etree.tostring(envelope_of("ExportAuthorization"), xml_declaration=True, encoding="UTF-8"))
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    runs = 0
    while time.perf_counter() - started < args.seconds:
        seed = rng.choice(seeds)
        header = header_of(seed)
        data = mutate(seed, rng)
        inbound = Inbound(data, "DE", header.message_id, header.type, "application/xml", 2)
        runs += 1
        try:
            verdict = examine(inbound, checks, now)
        except Exception:
            crash = Path(__file__).parent / "results" / f"fuzz-crash-{args.seed}-{runs}.xml"
            crash.parent.mkdir(exist_ok=True)
            crash.write_bytes(data)
            traceback.print_exc()
            print(f"CRASH after {runs} inputs (seed {args.seed}); input written to {crash}")
            return 1
        if verdict.accepted and verdict.header != header:
            print(f"ACCEPTED A CHANGED MESSAGE after {runs} inputs (seed {args.seed})")
            return 1
        outcomes["ACCEPTED" if verdict.accepted else verdict.reasons[0].code] += 1
    elapsed = time.perf_counter() - started
    print(f"seed {args.seed}: {runs} inputs in {elapsed:.1f} s ({runs / elapsed:.0f}/s), no crash")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome:26} {count:8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
