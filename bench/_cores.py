"""Which CPUs the bench's programs run on: each hub process on a core of its own, the rest on what is left.

On a small machine the hub, the broker and the load generator share the cores. Left to the kernel's scheduler, a
hub woken by a delivery often waits behind one of the broker's scheduler threads or the bench's own event loop
on the core it last ran on; with a core of its own it runs at once. That is also how an operator runs the hub
on a small server (systemd's ``CPUAffinity=``, a container's ``cpuset``; ``docs/operations.md``), so the bench
measures that layout by default, and the layout it used is in its table.

``plan_cores`` is the pure part; ``pin_threads`` and ``pinned`` set the affinity of a running process (every
one of its threads: the broker's scheduler threads are bound to cores one by one) and put it back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CorePlan:
    """One CPU for each hub process, in order, and the CPUs for everything else (the broker, the bench)."""

    hubs: tuple[int, ...]
    rest: frozenset[int]

    def as_json(self) -> dict[str, list[int]]:
        return {"hubs": list(self.hubs), "rest": sorted(self.rest)}


def plan_cores(cpus: Sequence[int], hubs: int) -> CorePlan | None:
    """Each hub the highest CPU not yet given, as long as one is left for the rest; ``None`` if none can be
    spared (the hubs then share all the CPUs with the rest)."""
    ordered = sorted(set(cpus))
    if hubs < 1 or hubs >= len(ordered):
        return None
    own = tuple(reversed(ordered[-hubs:]))
    return CorePlan(hubs=own, rest=frozenset(ordered[:-hubs]))


def cpu_list(cpus: frozenset[int] | Sequence[int]) -> str:
    """``taskset``'s form of a CPU list: ``0``, ``0,2``, ``0-3``."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    start = previous = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == previous + 1:
            previous = cpu
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        if cpu is not None:
            start = previous = cpu
    return ",".join(ranges)


def available_cpus() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def command_on(cpus: frozenset[int] | None, command: Sequence[str]) -> list[str]:
    """``command`` started on ``cpus`` (through ``taskset``, so that the process is on them from its first
    instruction and reads its own affinity when it sizes itself), or as it is when ``cpus`` is ``None``."""
    if cpus is None:
        return list(command)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is not installed: it starts the hub on a core of its own")
    return [taskset, "--cpu-list", cpu_list(cpus), *command]


def thread_ids(pid: int) -> list[int]:
    """The ids of a process's threads, from /proc; a thread that ends meanwhile is simply missing."""
    try:
        return [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]
    except FileNotFoundError:
        return []


def pin_threads(pid: int, cpus: frozenset[int]) -> dict[int, frozenset[int]]:
    """Put every thread of ``pid`` on ``cpus``; returns each thread's CPUs before, to put them back. A process
    of another user (a broker run as a system service) cannot be moved: it is left where it is, and said so."""
    before: dict[int, frozenset[int]] = {}
    for tid in thread_ids(pid):
        try:
            cpus_before = frozenset(os.sched_getaffinity(tid))
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            continue  # the thread ended meanwhile
        except PermissionError:
            print(
                f"process {pid} cannot be moved to CPU {cpu_list(cpus)}: not ours; it keeps its CPUs", file=sys.stderr
            )
            break
        before[tid] = cpus_before
    return before


def restore_threads(before: Mapping[int, frozenset[int]]) -> None:
    """Give each thread back the CPUs ``pin_threads`` found (threads that have ended are skipped)."""
    for tid, cpus in before.items():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned(pids: Sequence[int], cpus: frozenset[int] | None) -> Iterator[None]:
    """Every thread of each of ``pids`` on ``cpus`` inside the block, as before afterwards; nothing if ``None``.

    A thread a pinned thread starts meanwhile inherits its CPUs and keeps them afterwards."""
    if cpus is None:
        yield
        return
    saved: list[dict[int, frozenset[int]]] = []
    try:
        for pid in pids:
            saved.append(pin_threads(pid, cpus))
        yield
    finally:
        for before in reversed(saved):
            restore_threads(before)
