"""The bench's layout of the cores: each hub on a CPU of its own while one is left for the broker and the bench,
started there, the others' threads moved off it for the hub's phases and given their CPUs back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench._cores import CorePlan, command_on, cpu_list, pinned, plan_cores, thread_ids
from bench._report import _cores
from bench.run import options_from

needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to give one away")


def test_one_hub_on_two_cpus_gets_the_second_and_leaves_the_first_to_the_rest() -> None:
    assert plan_cores([0, 1], hubs=1) == CorePlan(hubs=(1,), rest=frozenset({0}))


def test_each_hub_gets_a_cpu_of_its_own_from_the_top() -> None:
    assert plan_cores([0, 1, 2, 3], hubs=2) == CorePlan(hubs=(3, 2), rest=frozenset({0, 1}))


@pytest.mark.parametrize(("cpus", "hubs"), [([0], 1), ([0, 1], 2), ([0, 1], 3), ([4, 5], 2)])
def test_without_a_cpu_left_for_the_broker_everything_shares(cpus: list[int], hubs: int) -> None:
    assert plan_cores(cpus, hubs) is None


def test_the_cpus_the_process_may_use_are_planned_not_their_count() -> None:
    assert plan_cores([2, 5, 7], hubs=1) == CorePlan(hubs=(7,), rest=frozenset({2, 5}))


@pytest.mark.parametrize(
    ("cpus", "text"), [({0}, "0"), ({0, 2}, "0,2"), ({0, 1, 2, 3}, "0-3"), ({0, 1, 3, 5, 6, 7}, "0-1,3,5-7")]
)
def test_cpu_lists_are_written_as_taskset_reads_them(cpus: set[int], text: str) -> None:
    assert cpu_list(frozenset(cpus)) == text


def test_the_bench_pins_unless_told_not_to() -> None:
    assert options_from([]).pin is True
    assert options_from(["--no-pin"]).pin is False
    assert options_from(["--no-pin"]).core_plan() is None


def test_the_table_says_where_each_program_ran() -> None:
    assert _cores({"hubs": [1], "rest": [0]}) == (
        "in 3a and 3b hub 1 on CPU 1, of its own; the broker and the bench on CPU 0 (--no-pin: all share)"
    )
    assert _cores(None) == "in 3a and 3b the hubs, the broker and the bench share every CPU"


def allowed(tid: int) -> frozenset[int]:
    return frozenset(os.sched_getaffinity(tid))


@needs_two_cpus
def test_a_process_started_on_a_cpu_runs_there_from_its_first_instruction() -> None:
    cpu = max(os.sched_getaffinity(0))
    command = command_on(frozenset({cpu}), [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"])

    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout

    assert out.strip() == f"[{cpu}]"


@pytest.fixture
def threaded_child() -> Iterator[int]:
    """A process with three threads, all on every CPU this one may use."""
    code = "import threading, time\nfor _ in range(2): threading.Thread(target=time.sleep, args=(60,)).start()\n"
    code += "print('ready', flush=True)\ntime.sleep(60)\n"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


@needs_two_cpus
def test_every_thread_of_a_running_process_is_moved_and_given_its_cpus_back(threaded_child: int) -> None:
    everywhere = frozenset(os.sched_getaffinity(0))
    one = frozenset({min(everywhere)})
    threads = thread_ids(threaded_child)
    assert len(threads) == 3
    assert {allowed(tid) for tid in threads} == {everywhere}

    with pinned([threaded_child], one):
        assert {allowed(tid) for tid in threads} == {one}

    assert {allowed(tid) for tid in threads} == {everywhere}


@needs_two_cpus
def test_a_thread_bound_to_one_cpu_gets_that_cpu_back(threaded_child: int) -> None:
    everywhere = sorted(os.sched_getaffinity(0))
    bound, rest = frozenset({everywhere[-1]}), frozenset({everywhere[0]})
    scheduler = thread_ids(threaded_child)[1]
    os.sched_setaffinity(scheduler, bound)  # as an Erlang VM binds its schedulers

    with pinned([threaded_child], rest):
        assert allowed(scheduler) == rest

    assert allowed(scheduler) == bound


def test_no_plan_moves_nothing(threaded_child: int) -> None:
    before = {tid: allowed(tid) for tid in thread_ids(threaded_child)}

    with pinned([threaded_child], None):
        assert {tid: allowed(tid) for tid in thread_ids(threaded_child)} == before


def test_a_process_that_is_not_ours_keeps_its_cpus_and_the_bench_says_so(
    threaded_child: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {tid: allowed(tid) for tid in thread_ids(threaded_child)}

    def refused(tid: int, cpus: frozenset[int]) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", refused)  # as for a broker run by another user
    with pinned([threaded_child], frozenset({0})):
        pass

    assert {tid: allowed(tid) for tid in thread_ids(threaded_child)} == before
    assert f"process {threaded_child} cannot be moved to CPU 0: not ours" in capsys.readouterr().err
