"""The bench's figures: row 4, the hub over the lower ceiling (each ceiling the mean of its runs before and after the
hub), the machine's busy time split between the processes measured, the others and what the hypervisor took, and
the hub's own steps for each message's batch, from its log, and the crypto step paced at the offered rate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench._crypto import measure_crypto_paced
from bench._messages import Outgoing
from bench._procfs import CLOCK_TICKS, CpuSample
from bench._report import _paced_rows
from bench._traffic import Record
from bench.run import HubLog, HubRun, HubSpec, ratios
from gateway.reading import ReadingPolicy
from gateway.settings import PROJECT_ROOT
from tests.support.pki import Pki, signed


def result(hub: float, broker: tuple[float, float | None], crypto: tuple[float, float | None]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "hub_saturation": {"per_second_answered": hub},
        "broker_ceiling": {"per_second_answered": broker[0]},
        "crypto_ceiling": {"per_second": crypto[0]},
    }
    if broker[1] is not None:
        figures["broker_ceiling_after"] = {"per_second_answered": broker[1]}
    if crypto[1] is not None:
        figures["crypto_ceiling_after"] = {"per_second": crypto[1]}
    return figures


def test_each_ceiling_is_the_mean_of_its_runs_before_and_after_the_hub() -> None:
    ratio = ratios(result(hub=240, broker=(700, 500), crypto=(560, 400)))

    assert ratio["ceilings"] == {"broker": 600, "crypto": 480}
    assert ratio["lower_ceiling"] == "crypto"
    assert ratio["hub_over_lower_ceiling"] == pytest.approx(0.5)
    assert ratio["hub_over_broker_ceiling"] == pytest.approx(0.4)


def test_the_lower_ceiling_is_chosen_from_the_means_not_from_the_first_runs() -> None:
    # Before the hub the broker ceiling is the lower one; over both runs the crypto ceiling is.
    ratio = ratios(result(hub=300, broker=(500, 700), crypto=(520, 560)))

    assert ratio["lower_ceiling"] == "crypto"
    assert ratio["hub_over_lower_ceiling"] == pytest.approx(300 / 540)


def test_a_result_without_runs_after_the_hub_divides_by_the_runs_before() -> None:
    ratio = ratios(result(hub=200, broker=(450, None), crypto=(400, None)))

    assert ratio["ceilings"] == {"broker": 450, "crypto": 400}
    assert ratio["hub_over_lower_ceiling"] == pytest.approx(0.5)


def test_time_the_hypervisor_took_is_counted_apart_from_other_programs() -> None:
    # 10 s on 2 cores: 12 s busy, of which the hub 6 s, the broker 2 s, and 3 s stolen by the hypervisor.
    before = CpuSample({"hub": 100.0, "broker": 50.0}, machine_busy=0, machine_total=0, at=0.0, machine_steal=0)
    ticks = CLOCK_TICKS
    after = CpuSample(
        {"hub": 106.0, "broker": 52.0},
        machine_busy=12 * ticks,
        machine_total=20 * ticks,
        at=10.0,
        machine_steal=3 * ticks,
    )

    use = after.since(before)

    assert use.steal_seconds == pytest.approx(3.0)
    assert use.steal_cores == pytest.approx(0.3)
    assert use.others_seconds == pytest.approx(1.0)  # 12 - 3 stolen - 6 - 2
    assert use.machine_busy_fraction == pytest.approx(0.6)


def test_the_hubs_steps_are_summed_up_over_the_messages_asked_for(tmp_path: Path) -> None:
    first = HubLog(HubSpec("bench-hub-1", "1/2", tmp_path / "hub-1.log"), pid=1)
    second = HubLog(HubSpec("bench-hub-2", "2/2", tmp_path / "hub-2.log"), pid=2)
    first.steps_ms = {"a": {"open": 2.0, "sync": 1.0}, "b": {"open": 4.0, "sync": 3.0}}
    second.steps_ms = {"c": {"open": 6.0, "sync": 5.0}, "warm-up": {"open": 100.0, "sync": 100.0}}
    run = HubRun(Record(read_status=bytes.decode), ["warm-up"], [], ["a", "b", "c"], 1.0, [], {}, {}, [first, second])

    steps = run.steps_ms(run.offered)

    assert list(steps) == ["open", "sync"]
    assert steps["open"]["count"] == 3 and steps["open"]["max"] == 6.0 and steps["open"]["p50"] == 4.0
    assert steps["sync"]["mean"] == pytest.approx(3.0)


def test_the_paced_crypto_step_reports_its_cpu_time_against_back_to_back() -> None:
    paced = {"messages": 50, "interval_ms": 11.76, "back_to_back_ms": 1.8, "paced_ms": 3.15, "slowdown": 1.75}

    (row,) = _paced_rows(paced)

    assert row.startswith("2c crypto, one every 11.8 ms (3b, a hub), CPU")
    assert row.endswith("3.15  back to back 1.80: x1.75")
    assert _paced_rows(None) == []  # a result from before the row existed


def test_the_paced_crypto_step_keeps_to_its_clock(pki: Pki) -> None:
    signer = pki.signers["DE"]
    messages = [
        Outgoing(str(i), "DE", "CH", "ExportAuthorization", signed("ExportAuthorization", signer)) for i in range(5)
    ]
    reading = ReadingPolicy.load(PROJECT_ROOT / "schemas", 1024 * 1024)

    started = time.perf_counter()
    paced = measure_crypto_paced(messages, reading, pki.anchors, pki.signers["HUB"], interval=0.02)
    elapsed = time.perf_counter() - started

    assert paced.messages == 5 and paced.interval_ms == 20
    assert elapsed >= 4 * 0.02  # the last message starts 80 ms after the first of the paced run
    assert paced.back_to_back_ms > 0 and paced.paced_ms > 0
    assert paced.slowdown == paced.paced_ms / paced.back_to_back_ms
