"""Coverage-guided fuzzing of the hub's reading and verifying path: every input must end as a verdict.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python -m bench.fuzz_guided --seconds 60

libFuzzer (through atheris) mutates envelopes signed with the attack catalogue's fixed test key and the
catalogue's own samples, and keeps the inputs that reach new code in gateway/, certs/ and signxml (lxml and
cryptography are compiled, so their insides are not instrumented; their calls from those modules are). Every
input goes through ``examine``, the hub's pure checks, at the catalogue's fixed time, so the corpus stays valid
from run to run. Half of the mutations are signed again with the test key (one in four changes a single text or
attribute value in the tree), so that changed content also gets past the signature to the header, freshness and
trade checks.

An exception out of ``examine``, or an accepted message whose plain reading differs from what was signed, is a
finding: the input is written to the artifacts folder (bench/results/fuzz/) and the run goes on. The fuzzer runs
in a worker process, so a crash in native code, a hang (10 s for one input) or running out of memory is reported
too, from libFuzzer's own artifact. Exit status 1 if anything was found, 2 if atheris is missing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

# The hub's modules are imported by the worker only, inside atheris.instrument_imports: a module imported
# before that would run uninstrumented and give libFuzzer no coverage to follow.
INSTRUMENTED = ["gateway", "certs", "signxml"]
ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ROOT / "tests" / "data" / "attacks"
ARTIFACTS = Path(__file__).resolve().parent / "results" / "fuzz"
INSTALL = "atheris is not installed; install it with: .venv/bin/pip install -e '.[fuzz]'"

MAX_LEN = 128 * 1024  # the larger samples (up to 1 MiB) test one size comparison and would slow every mutation
TIMEOUT_SECONDS = 10  # one input taking longer is a finding: a sender could stall the hub with it
# Of every four mutations: one changes one value in the tree and signs again, one changes bytes and signs again
# (when they still parse), two change bytes only.
MUTATION_KINDS = 4
SENDER, RECIPIENT = "DE", "CH"  # the catalogue's test key is DE's; its messages go to CH
# The envelopes bench/fuzz.py starts from (plus one unsigned), and their outcome on an empty ledger.
ENVELOPES = {"ExportAuthorization": "ACCEPTED", "Cancellation": "UNKNOWN_REFERENCE", "Clarification": "ACCEPTED"}
NATIVE_ARTIFACTS = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")

_MESSAGE_ID = re.compile(rb"<MessageId>([^<]*)</MessageId>")
_TYPE = re.compile(rb"<Type>([^<]*)</Type>")
_STATS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")
_SEED = re.compile(r"^INFO: Seed: (\d+)")
# Tokens for libFuzzer's dictionary, taken from the seeds: tags, attributes with their values, instants and
# their date, time and zone apart (libFuzzer drops entries over 64 bytes).
_TOKENS = (
    re.compile(rb'</?[A-Za-z_][\w:.-]*>?|[\w:]+="[^"<>]{0,50}"'),
    re.compile(rb"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)?"),
    re.compile(rb"\d{4}-\d\d-\d\d|T\d\d:\d\d:\d\d(\.\d+)?|(?<=\d)(Z|[+-]\d\d:\d\d)(?=<)"),
)
_QUIET = re.compile(r"^#\d+\s+(NEW|REDUCE)\b|^INFO: Instrumenting |^WARNING: Failed to find function \"__sanitizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="stop after this long (default 60 s unless --runs is given)")
    parser.add_argument("--runs", type=int, help="stop after this many executions")
    parser.add_argument("--corpus", type=Path, help="keep the corpus in this folder (default: a new one per run)")
    parser.add_argument(
        "--artifacts", type=Path, default=ARTIFACTS, help="where findings are written (default bench/results/fuzz/)"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # the worker's folder, set by the supervisor
    args = parser.parse_args(argv)
    if args.seconds is None and args.runs is None:
        args.seconds = 60.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("atheris") is None:
        print(INSTALL, file=sys.stderr)
        return 2
    if args.worker is not None:
        return _work(args)
    return _supervise(args)


# --------------------------------------------------------------------------------------------
# The supervisor: runs the worker, reads libFuzzer's log, prints the summary
# --------------------------------------------------------------------------------------------


@dataclass
class _Log:
    """What libFuzzer's status lines say: coverage, features and corpus size at the start and at the end."""

    seed: str | None = None
    first: tuple[int, int, int, str] | None = None
    last: tuple[int, int, int, str] | None = None

    def read(self, line: str) -> None:
        if seed := _SEED.match(line):
            self.seed = seed[1]
        if stats := _STATS.match(line):
            figures = (int(stats[3]), int(stats[4]), int(stats[5]), stats[6])
            self.first = self.first or figures
            self.last = figures


def _supervise(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="i2es-fuzz-"))
    corpus = args.corpus or work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    before = set(args.artifacts.iterdir())
    command = [sys.executable, "-m", __spec__.name, "--worker", str(work), "--corpus", str(corpus)]
    command += ["--artifacts", str(args.artifacts)]
    command += ["--seconds", str(args.seconds)] if args.seconds is not None else []
    command += ["--runs", str(args.runs)] if args.runs is not None else []
    log = _Log()
    with (
        (work / "libfuzzer.log").open("w", encoding="utf-8") as file,
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as worker,
    ):
        assert worker.stdout is not None
        try:
            for line in worker.stdout:
                file.write(line)
                log.read(line)
                if not _QUIET.match(line):
                    sys.stderr.write(line)
        except KeyboardInterrupt:  # the worker got the same signal and stops; report what it did
            worker.wait()
    report = _read_report(work / "report.json")
    native = sorted(p for p in set(args.artifacts.iterdir()) - before if p.name.startswith(NATIVE_ARTIFACTS))
    found = _print_summary(report, log, native, worker.returncode)
    if found:
        print(f"libFuzzer's log: {work / 'libfuzzer.log'}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if found else 0


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return report


def _print_summary(report: dict[str, Any], log: _Log, native: list[Path], returncode: int) -> bool:
    """Print what the run did and found; return whether anything was found."""
    executions, seconds = report.get("executions", 0), report.get("seconds", 0.0)
    rate = executions / seconds if seconds else 0.0
    print()
    print(f"executions: {executions} in {seconds:.1f} s ({rate:.0f}/s), libFuzzer seed {log.seed}")
    if seeds := report.get("seeds"):
        print(
            f"seeds: {seeds['samples']} attack samples and {seeds['envelopes']} envelopes "
            f"({seeds['skipped']} samples over {MAX_LEN} bytes left out)"
        )
    if log.first and log.last:
        print(
            f"coverage: {log.last[0]} edges, {log.last[1]} features (from {log.first[0]} and {log.first[1]} "
            f"after the seeds); corpus: {log.last[2]} inputs, {log.last[3]} (from {log.first[2]})"
        )
    outcomes = Counter[str](report.get("outcomes", {}))
    codes = [code for code in outcomes if code != "ACCEPTED"]
    print(f"outcomes: {len(codes)} distinct reason codes, and ACCEPTED")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome:32} {count:9}")
    findings = report.get("findings", [])
    print(f"findings: {len(findings) + len(native)}")
    for finding in findings:
        print(f"  {finding['file']}: {finding['error']} ({finding['count']} inputs)")
    for path in native:
        print(f"  {path}: written by libFuzzer (a crash, hang or memory limit in the worker)")
    interrupted = returncode in (130, -signal.SIGINT)
    stopped_badly = not report.get("finished") and not native and not interrupted
    if interrupted:
        print("  (interrupted: the figures are those of the last report, at most 2 s old)")
    if stopped_badly:
        print(f"  the worker stopped with status {returncode} before the end of the run")
    return bool(findings or native or stopped_badly)


# --------------------------------------------------------------------------------------------
# The worker: builds the checks and the seeds, and runs libFuzzer in this process
# --------------------------------------------------------------------------------------------


@dataclass
class _Finding:
    file: str
    error: str
    count: int = 1


@dataclass
class _Target:
    """The function libFuzzer calls with every input, the mutator it calls for new ones, and their tally."""

    run: Callable[[bytes], tuple[str, str | None]]  # an input -> its outcome, and a problem if it breaks the property
    resign: Callable[[bytes], bytes | None]
    change_value: Callable[[bytes, int], bytes | None]  # an input, a choice of value -> the input signed again
    mutate_bytes: Callable[[bytes, int], bytes]
    report: Path
    artifacts: Path
    runs: int | None
    deadline: float = float("inf")
    started: float = field(default_factory=time.monotonic)
    executions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    findings: dict[str, _Finding] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    _written: float = 0.0

    def __call__(self, data: bytes) -> None:
        now = time.monotonic()
        if now >= self.deadline or (self.runs is not None and self.executions >= self.runs):
            self._stop()
        self.executions += 1
        try:
            outcome, problem = self.run(data)
        except Exception as error:  # the property under test: nothing but a verdict comes out of examine
            self._found(data, error)
            return
        self.outcomes[outcome] += 1
        if problem is not None:
            self._found(data, None, problem)
        if now - self._written > 2.0:  # so that a worker killed by a native crash still leaves its counts
            self._write_report(finished=False)

    def mutate(self, data: bytes, max_size: int, seed: int) -> bytes:
        kind, choice = seed % MUTATION_KINDS, seed // MUTATION_KINDS
        mutated = self.mutate_bytes(data, max_size) if kind else None
        signed = self.change_value(data, choice) if kind == 0 else self.resign(mutated) if kind == 1 else None
        if signed is not None and len(signed) <= max_size:
            return signed
        return mutated if mutated is not None else self.mutate_bytes(data, max_size)

    def _found(self, data: bytes, error: Exception | None, problem: str = "") -> None:
        if error is not None:
            where = traceback.extract_tb(error.__traceback__)[-1]
            problem = f"{type(error).__name__} at {_relative(where.filename)}:{where.lineno}: {error}"
        key = problem.split(": ")[0] if error is not None else problem
        if key in self.findings:
            self.findings[key].count += 1
            return
        path = self.artifacts / f"finding-{hashlib.sha256(data).hexdigest()[:16]}.xml"
        path.write_bytes(data)
        details = "".join(traceback.format_exception(error)) if error is not None else problem + "\n"
        path.with_suffix(".txt").write_text(details, encoding="utf-8")
        self.findings[key] = _Finding(str(path), problem)
        print(f"FINDING: {problem}; input written to {path}", flush=True)
        self._write_report(finished=False)

    def _write_report(self, *, finished: bool) -> None:
        self._written = time.monotonic()
        report = {
            "finished": finished,
            "executions": self.executions,
            "seconds": self._written - self.started,
            "outcomes": dict(self.outcomes),
            "findings": [vars(finding) for finding in self.findings.values()],
            **self.extra,
        }
        self.report.write_text(json.dumps(report), encoding="utf-8")

    def _stop(self) -> None:
        self._write_report(finished=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # libFuzzer has no way back to Python; leaving the process is how a run ends


def _dictionary(inputs: Iterable[bytes]) -> str:
    """libFuzzer's dictionary: XML tokens to insert whole, where single bytes would rarely make one."""
    from bench.fuzz import FRAGMENTS

    tokens = set(FRAGMENTS)
    for data in inputs:
        tokens.update(match[0] for pattern in _TOKENS for match in pattern.finditer(data))
    return "".join(_entry(token) for token in sorted(tokens))


def _entry(token: bytes) -> str:
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token)
    return f'"{text}"\n'


def _relative(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else filename


def _work(args: argparse.Namespace) -> int:
    import atheris

    warnings.simplefilter("ignore")  # cryptography warns about the odd certificates mutation makes
    started = time.monotonic()
    with atheris.instrument_imports(include=INSTRUMENTED):
        target, seeds = _build_target(args)
    seed_folder = args.worker / "seeds"
    seed_folder.mkdir(exist_ok=True)
    # A seed with another outcome than its own means the checks are not set up as the samples assume
    # (trust anchor, time): the fuzzer would then stop at the same early refusal for everything.
    astray = [name for name, seed in seeds.items() if _outcome(target, seed.data) != seed.expected]
    for name, seed in seeds.items():
        (seed_folder / f"{name}.xml").write_bytes(seed.data)
    dictionary = args.worker / "xml.dict"
    dictionary.write_text(_dictionary(seed.data for seed in seeds.values()), encoding="ascii")
    print(f"worker ready in {time.monotonic() - started:.1f} s: {len(seeds)} seeds", flush=True)
    if astray:
        print(f"WARNING: {len(astray)} seeds do not have their expected outcome: {', '.join(astray)}", flush=True)
    target.started = time.monotonic()
    target.deadline = target.started + args.seconds if args.seconds is not None else float("inf")
    libfuzzer = [
        sys.argv[0],
        str(args.corpus),  # the first folder gets the new inputs
        str(seed_folder),
        f"-artifact_prefix={args.artifacts}/",
        f"-max_len={MAX_LEN}",
        "-len_control=0",  # XML needs its full length from the start
        f"-timeout={TIMEOUT_SECONDS}",
        f"-dict={dictionary}",
    ]
    if args.seconds is not None:  # the target stops the run itself; this is in case it cannot
        libfuzzer.append(f"-max_total_time={int(args.seconds) + 60}")
    atheris.Setup(libfuzzer, target, custom_mutator=target.mutate)
    atheris.Fuzz()
    return 0


def _outcome(target: _Target, data: bytes) -> str:
    try:
        return target.run(data)[0]
    except Exception as error:  # the run finds it again and reports it
        return type(error).__name__


@dataclass(frozen=True)
class _Seed:
    data: bytes
    expected: str  # the outcome it must have: a reason code, or ACCEPTED


def _build_target(args: argparse.Namespace) -> tuple[_Target, dict[str, _Seed]]:
    """The checks, the signer and the seeds; called inside instrument_imports so the hub's modules are traced."""
    import atheris
    from lxml import etree

    from certs.trust import TrustStore
    from gateway.envelope import read_header
    from gateway.ledger.store import SqliteLedger
    from gateway.pipeline import Checks, Inbound, examine
    from gateway.reading import DSIG_NS, ReadingPolicy, parse_xml
    from gateway.registry import Registry
    from gateway.rules.substances import Catalogue
    from gateway.settings import PROJECT_ROOT
    from gateway.signature import sign_envelope
    from tests.data.attacks import generate
    from tests.support.pki import envelope_of

    keys = generate.fixed_keys()
    now = generate.FIXED_NOW  # the samples' CreatedAt; the test certificates are valid then
    database = args.worker / "hub.sqlite"
    ledger, registry = SqliteLedger(database), Registry(database)
    for code in (SENDER, RECIPIENT):
        registry.add_participant(code, code, None, now)
    checks = Checks(
        ReadingPolicy.load(PROJECT_ROOT / "schemas", generate.MAX_BYTES),
        TrustStore((keys.signer.chain[-1],), revocations=registry),
        registry, ledger, timedelta(hours=24), timedelta(minutes=5), ledger.trade,
        Catalogue.load(),
    )  # fmt: skip

    def run(data: bytes) -> tuple[str, str | None]:
        message_id, type_ = _MESSAGE_ID.search(data), _TYPE.search(data)
        inbound = Inbound(
            data,
            SENDER,
            message_id[1].decode("utf-8", "replace") if message_id else None,
            type_[1].decode("utf-8", "replace") if type_ else None,
            "application/xml",
            2,
        )
        verdict = examine(inbound, checks, now)
        if not verdict.accepted:
            return verdict.reasons[0].code, None
        if read_header(parse_xml(data)) != verdict.header:
            return "ACCEPTED", "accepted, but a plain reading of the bytes shows another header than the signed one"
        return "ACCEPTED", None

    def without_signature(data: bytes) -> etree._Element:
        root = parse_xml(data)
        for signature in list(root.iter(f"{{{DSIG_NS}}}Signature")):
            parent = signature.getparent()
            if parent is not None:
                parent.remove(signature)
        return root

    def resign(data: bytes) -> bytes | None:
        try:
            return sign_envelope(without_signature(data), keys.signer)
        except Exception:  # a refused construct, or a tree signxml will not sign: keep the plain mutation
            return None

    def change_value(data: bytes, choice: int) -> bytes | None:
        # One element's text or one attribute's value, mutated as bytes: the tree stays well-formed.
        try:
            root = without_signature(data)
            elements = list(root.iter())  # parse_xml refused comments and processing instructions
            element = elements[choice % len(elements)]
            names = list(element.attrib)
            slot = choice // len(elements) % (len(names) + 1)
            old = element.get(names[slot]) if slot < len(names) else element.text
            encoded = (old or "").encode()
            mutated = atheris.Mutate(encoded, 2 * len(encoded) + 16).decode("utf-8", "ignore")
            new = "".join(c for c in mutated if c >= " " or c in "\t\n\r")  # what XML 1.0 can hold
            if slot < len(names):
                element.set(names[slot], new)
            else:
                element.text = new
            return sign_envelope(root, keys.signer)
        except Exception:  # input that does not parse, or a tree signxml will not sign
            return None

    seeds: dict[str, _Seed] = {}
    skipped = 0
    with (ATTACKS / "index.csv").open(encoding="utf-8", newline="") as index:
        for row in csv.DictReader(index):
            data = (ATTACKS / row["file"]).read_bytes()  # signed with the fixed key, dated FIXED_NOW
            if len(data) > MAX_LEN:
                skipped += 1
                continue
            seeds[Path(row["file"]).stem] = _Seed(data, row["expected"])
    samples = len(seeds)
    for name, expected in ENVELOPES.items():
        seeds[f"signed-{name}"] = _Seed(sign_envelope(envelope_of(name, created_at=now), keys.signer), expected)
    unsigned = generate.serialize(envelope_of("ExportAuthorization", created_at=now))
    seeds["unsigned-ExportAuthorization"] = _Seed(unsigned, "SIGNATURE_MISSING")
    target = _Target(
        run=run,
        resign=resign,
        change_value=change_value,
        mutate_bytes=lambda data, size: atheris.Mutate(data, size),  # Fuzz() replaces atheris.Mutate
        report=args.worker / "report.json",
        artifacts=args.artifacts,
        runs=args.runs,
        extra={"seeds": {"samples": samples, "envelopes": len(seeds) - samples, "skipped": skipped}},
    )
    return target, seeds


if __name__ == "__main__":
    raise SystemExit(main())
