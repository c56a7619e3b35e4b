"""Figures out of records: percentiles, throughput, the printed table and the JSON file."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._cores import cpu_list
from bench._procfs import CpuUse
from bench._traffic import Record

RESULTS = Path(__file__).resolve().parent / "results"
# Other programs and the kernel's own threads (fsync, writeback) above this many cores: a note under the table.
DISTURBED_CORES = 0.25
# Time the hypervisor gave to something else while this machine had work, above this many cores: a note too.
STOLEN = 0.1
LATENCY_ROWS = (
    ("delivery_ms", "publish -> delivery at the recipient"),
    ("acknowledgement_ms", "publish -> acknowledgement at the sender"),
    ("confirm_ms", "publish -> broker confirm at the sender"),
    ("hub_handle_ms", "the hub's time for its batch (log), by step"),
    ("send_lateness_ms", "sender's lateness against the schedule"),
)


def say(text: str) -> None:
    """Progress, on stderr: the table alone goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def distribution(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1],
    }


def latencies_ms(start: Mapping[str, float], end: Mapping[str, float], keys: Iterable[str]) -> dict[str, float]:
    return distribution((end[key] - start[key]) * 1000 for key in keys if key in end and key in start)


def throughput(record: Record, keys: Sequence[str]) -> dict[str, float]:
    """From the first publish to the last answer at the senders, and to the last delivery at the receivers."""
    first = min(record.published[key] for key in keys)
    to_answer = max(record.answered[key] for key in keys) - first
    delivered = [record.delivered[key] for key in keys if key in record.delivered]
    to_delivery = max(delivered) - first if delivered else math.nan
    return {
        "messages": len(keys),
        "seconds_to_last_answer": to_answer,
        "seconds_to_last_delivery": to_delivery,
        "per_second_answered": len(keys) / to_answer,
        "per_second_delivered": len(delivered) / to_delivery if delivered else 0.0,
    }


def cpu_per_message(use: CpuUse, messages: int) -> dict[str, float]:
    """CPU milliseconds per message of each process, and of whatever else ran on the machine meanwhile."""
    figures = {name: seconds / messages * 1000 for name, seconds in use.processes.items()}
    figures["others"] = use.others_seconds / messages * 1000
    figures["others_cores"] = use.others_cores
    figures["steal_cores"] = use.steal_cores
    figures["machine_busy_fraction"] = use.machine_busy_fraction
    return figures


def _cpu_cells(cpu: Mapping[str, float], service: str) -> str:
    names = (service, "broker", "bench", "others")
    cells = "".join(f"{cpu[name]:8.2f}" if name in cpu else f"{'-':>8}" for name in names)
    steal = cpu.get("steal_cores")
    return (
        f"{cells}{cpu['others_cores']:8.2f}{'-' if steal is None else f'{steal:.2f}':>8}"
        f"{cpu['machine_busy_fraction'] * 100:8.0f}%"
    )


def _ledger(machine: Mapping[str, Any]) -> str:
    if machine.get("ledger") == "postgres":
        return f"ledger in PostgreSQL at {machine['ledger_at']}"
    return f"ledger in SQLite on {machine.get('ledger_filesystem', 'unknown')}"


def _cores(cores: Mapping[str, Any] | None) -> str:
    if not cores:
        return "in 3a and 3b the hubs, the broker and the bench share every CPU"
    hubs = ", ".join(f"hub {k} on CPU {cpu}" for k, cpu in enumerate(cores["hubs"], start=1))
    rest = cpu_list(cores["rest"])
    return f"in 3a and 3b {hubs}, of its own; the broker and the bench on CPU {rest} (--no-pin: all share)"


def _header(result: Mapping[str, Any]) -> list[str]:
    options, machine, hubs = result["options"], result["machine"], result["hubs"]
    shards = ", ".join(f"{h['name']} {h['shard']}" for h in hubs["per_hub"])
    return [
        f"I2ES hub benchmark, {result['started_at']}",
        f"{machine['cpus']} CPUs, Python {machine['python']}, RabbitMQ {machine['rabbitmq']}, {_ledger(machine)}",
        f"{options['messages']} ExportAuthorizations of {result['message_bytes'] / 1024:.1f} KiB, "
        f"{options['senders']} senders ({' '.join(result['senders'])}) -> {options['receivers']} receivers "
        f"({' '.join(result['receivers'])}), at most {options['window']} in flight",
        f"{hubs['count']} hub process{'es' if hubs['count'] > 1 else ''} (I2ES_HUB_SHARD: {shards})",
        _cores(hubs.get("cores")),
        "receivers acknowledge each delivery without sending a receipt: the document path only",
    ]


def _batch_note(mean: float | None) -> str:
    return f", {mean:.1f} a batch on average" if mean else ""


def _throughput_rows(result: Mapping[str, Any]) -> list[str]:
    broker, one, crypto = result["broker_ceiling"], result["broker_one_at_a_time"], result["crypto_ceiling"]
    cores, ratio = result["crypto_all_cores"], result["ratio"]
    saturation = result["hub_saturation"]
    handle = saturation["hub_handle_ms"]
    rows = [
        f"{'':47}{'msg/s':>9}{'ms/msg':>9}",
        f"{'1  broker ceiling: relay, batches of up to ' + str(broker['batch_max']):47}"
        f"{broker['per_second_answered']:9.0f}{'':9}  to last reply ({broker['per_second_delivered']:.0f} "
        f"to last delivery{_batch_note(broker.get('mean_batch'))})",
        f"{'1b bare relay, one message at a time':47}{one['per_second_answered']:9.0f}{'':9}  informational",
        f"{'2  crypto ceiling, one core':47}{crypto['per_second']:9.0f}{crypto['ms_per_message']:9.2f}",
        f"{'     read_message: parse + schema':47}{'':9}{crypto['read_ms']:9.2f}",
        f"{'     verify_envelope: chain + XML-DSig':47}{'':9}{crypto['verify_ms']:9.2f}",
        f"{'     sign_acknowledgement':47}{'':9}{crypto['sign_ms']:9.2f}",
        f"{'2b crypto, all cores (' + str(cores['workers']) + ' processes)':47}{cores['per_second']:9.0f}"
        f"{'':9}  informational",
        f"{'3a hub at saturation, to last acknowledgement':47}{saturation['per_second_answered']:9.0f}"
        f"{1000 / saturation['per_second_answered']:9.2f}",
        f"{'     to last delivery':47}{saturation['per_second_delivered']:9.0f}",
        f"{'     hub CPU per message (all hubs)':47}{'':9}{saturation['cpu_ms_per_message']['hub']:9.2f}",
        f"{'     hub time for the batch, mean (its log)':47}{'':9}{handle.get('mean', math.nan):9.2f}",
    ]
    for hub in result["hubs"]["per_hub"]:
        rows.append(
            f"{'     ' + hub['name'] + ' (shard ' + hub['shard'] + '), messages in 3a':47}{hub['saturation']:9d}"
            f"{'':9}  {hub['messages']} in all (its log){_batch_note(hub['mean_batch'].get('saturation'))} in 3a"
        )
    rows += _after_rows(result)
    rows.append(f"{'4  hub / lower ceiling (' + ratio['lower_ceiling'] + ')':47}{ratio['hub_over_lower_ceiling']:9.2f}")
    return rows


def _after_rows(result: Mapping[str, Any]) -> list[str]:
    """Ceilings 1 and 2 again after the hub, and the mean of both runs that row 4 divides by."""
    broker, crypto = result.get("broker_ceiling_after"), result.get("crypto_ceiling_after")
    if broker is None or crypto is None:
        return []
    ceilings = result["ratio"]["ceilings"]
    return [
        f"{'1  broker ceiling again, after the hub':47}{broker['per_second_answered']:9.0f}{'':9}"
        f"  mean of both runs {ceilings['broker']:.0f}",
        f"{'2  crypto ceiling again, after the hub':47}{crypto['per_second']:9.0f}{crypto['ms_per_message']:9.2f}"
        f"  mean of both runs {ceilings['crypto']:.0f}",
        *_paced_rows(result.get("crypto_paced")),
    ]


def _paced_rows(paced: Mapping[str, Any] | None) -> list[str]:
    """2c: what the same crypto step costs a message when it comes one at a time at 3b's rate."""
    if paced is None:
        return []
    return [
        f"{'2c crypto, one every ' + format(paced['interval_ms'], '.1f') + ' ms (3b, a hub), CPU':47}{'':9}"
        f"{paced['paced_ms']:9.2f}  back to back {paced['back_to_back_ms']:.2f}: x{paced['slowdown']:.2f}",
    ]


CPU_ROWS = (
    ("1", "broker_ceiling", "relay", "  1  relay, batches (service: the relay)"),
    ("1b", "broker_one_at_a_time", "relay", "  1b relay, one at a time"),
    ("2", "crypto_ceiling", "crypto", "  2  crypto ceiling (service: the bench)"),
    ("3a", "hub_saturation", "hub", "  3a hub at saturation (service: the hubs)"),
    ("3b", "hub_latency", "hub", "  3b hub at the offered rate"),
)


def _cpu_rows(result: Mapping[str, Any]) -> list[str]:
    rows = [
        f"{'CPU ms per message':47}{'service':>8}{'broker':>8}{'bench':>8}{'others':>8}{'others':>8}{'stolen':>8}"
        f"{'machine':>9}",
        f"{'':47}{'':32}{'cores':>8}{'cores':>8}{'busy':>9}",
    ]
    rows += [
        f"{label:47}{_cpu_cells(result[key]['cpu_ms_per_message'], service)}" for _, key, service, label in CPU_ROWS
    ]
    disturbed = [
        name for name, key, _, _ in CPU_ROWS if result[key]["cpu_ms_per_message"]["others_cores"] > DISTURBED_CORES
    ]
    if disturbed:
        rows.append(
            f"  other work kept more than {DISTURBED_CORES} of a core busy during {', '.join(disturbed)}: "
            "those figures may be disturbed"
        )
    stolen = [name for name, key, _, _ in CPU_ROWS if result[key]["cpu_ms_per_message"].get("steal_cores", 0) > STOLEN]
    if stolen:
        rows.append(
            f"  the hypervisor took more than {STOLEN} of a core from this machine during {', '.join(stolen)}: "
            "those phases ran on fewer cores than the others"
        )
    if result["machine"].get("ledger") == "postgres":
        rows.append("  others include the PostgreSQL server's processes, which keep the ledger in 3a and 3b")
    return rows


def _latency_rows(latency: Mapping[str, Any]) -> list[str]:
    rows = [
        f"3b open loop: {latency['offered_per_second']:.1f} msg/s offered (half of 3a) for "
        f"{latency['seconds']:.0f} s, {latency['messages']} messages",
        f"{'   ms':47}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}",
    ]
    for key, label in LATENCY_ROWS:
        rows += _distribution_row("   " + label, latency[key])
        if key == "hub_handle_ms":
            for step, figures in latency.get("hub_steps_ms", {}).items():
                rows += _distribution_row(f"     {step}", figures)
    return rows


def _distribution_row(label: str, figures: Mapping[str, float]) -> list[str]:
    if not figures.get("count"):
        return []
    return [f"{label:47}" + "".join(f"{figures[p]:8.1f}" for p in ("p50", "p95", "p99", "max"))]


def _check_rows(result: Mapping[str, Any]) -> list[str]:
    answers, once = result["acknowledgements"], result["duplicates"]
    warnings = ", ".join(f"{code} {count}" for code, count in sorted(answers["warnings"].items()))
    return [
        f"acknowledgements: {answers['ACCEPTED']} ACCEPTED, {answers['REJECTED']} REJECTED, all signed by HUB "
        f"(checked after the timing); warnings: {warnings or 'none'}",
        f"each message delivered, answered and handled once: {once['deliveries']} second deliveries, "
        f"{once['answers']} second answers, {once['handled']} handled twice (the hubs' logs)",
    ]


def format_table(result: Mapping[str, Any]) -> str:
    """The printed table: every figure here is also in ``result`` (the JSON file)."""
    lines = [
        *_header(result),
        "",
        *_throughput_rows(result),
        "",
        *_cpu_rows(result),
        "",
        *_latency_rows(result["hub_latency"]),
        "",
        *_check_rows(result),
    ]
    return "\n".join(lines)


def write_results(result: Mapping[str, Any], prefix: str = "") -> Path:
    """``bench/results/<prefix><UTC timestamp>.json`` and ``<prefix>latest.json``."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.fromisoformat(result["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2, sort_keys=False) + "\n"
    path = RESULTS / f"{prefix}{stamp}.json"
    path.write_text(text)
    (RESULTS / f"{prefix}latest.json").write_text(text)
    return path


def shown(path: Path) -> str:
    """A path as the user would type it from the current folder."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
