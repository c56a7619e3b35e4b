"""What Linux says about a process and the machine: CPU time and resident memory, read from /proc."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    return stat.rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """The live processes started by ``pid``, and by those, and so on (the hub's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])  # field 4 of proc(5)
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(parent, []).append(int(entry.name))
    found, waiting = [], list(children.get(pid, []))
    while waiting:
        child = waiting.pop()
        found.append(child)
        waiting.extend(children.get(child, []))
    return found


def cpu_seconds(pid: int, tree: bool = False) -> float:
    """User plus system CPU time of a process so far (all its threads); with ``tree``, with its live
    descendants'."""
    total = 0.0
    for one in [pid, *(descendants(pid) if tree else [])]:
        try:
            fields = _stat_fields(one)
        except OSError:
            continue  # a descendant that ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of proc(5)
    return total


def rss_kib(pid: int, tree: bool = False) -> int:
    """Resident set size (VmRSS) of a process, in KiB; with ``tree``, with its live descendants'."""
    total = 0
    for one in [pid, *(descendants(pid) if tree else [])]:
        try:
            lines = Path(f"/proc/{one}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total


def _machine_ticks() -> tuple[int, int, int]:
    """Busy, total and stolen CPU ticks of the whole machine, all cores. Stolen: the time the hypervisor ran
    something else while this virtual machine had work to do (busy counts it)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total, values[7]


@dataclass(frozen=True)
class CpuSample:
    """CPU time of some named processes and of the machine, at one instant."""

    processes: Mapping[str, float]
    machine_busy: int
    machine_total: int
    at: float  # time.monotonic()
    machine_steal: int = 0

    @classmethod
    def take(cls, pids: Mapping[str, int], trees: frozenset[str] = frozenset()) -> CpuSample:
        """``trees``: the names whose CPU time includes their descendants'."""
        busy, total, steal = _machine_ticks()
        processes = {name: cpu_seconds(pid, tree=name in trees) for name, pid in pids.items()}
        return cls(processes, busy, total, time.monotonic(), steal)

    def since(self, earlier: CpuSample) -> CpuUse:
        busy = self.machine_busy - earlier.machine_busy
        total = self.machine_total - earlier.machine_total
        return CpuUse(
            processes={name: seconds - earlier.processes[name] for name, seconds in self.processes.items()},
            seconds=self.at - earlier.at,
            machine_busy_seconds=busy / CLOCK_TICKS,
            machine_busy_fraction=busy / total if total else 0.0,
            steal_seconds=(self.machine_steal - earlier.machine_steal) / CLOCK_TICKS,
        )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds each process used between two samples, and how busy the whole machine was."""

    processes: Mapping[str, float]
    seconds: float  # wall-clock time between the samples
    machine_busy_seconds: float
    machine_busy_fraction: float  # of all cores
    steal_seconds: float = 0.0  # of the busy time: taken by the hypervisor for something else

    @property
    def others_seconds(self) -> float:
        """Busy time of the machine not spent in the named processes nor stolen: other programs and the kernel's
        threads."""
        return max(0.0, self.machine_busy_seconds - self.steal_seconds - sum(self.processes.values()))

    @property
    def steal_cores(self) -> float:
        """The stolen time as a number of cores the machine did not have, on average."""
        return self.steal_seconds / self.seconds if self.seconds else 0.0

    @property
    def others_cores(self) -> float:
        """The same as a number of cores kept busy on average."""
        return self.others_seconds / self.seconds if self.seconds else 0.0


def filesystem_of(path: Path) -> str:
    """The type of the file system that holds ``path`` (ext4, tmpfs, ...): it decides what an fsync costs."""
    resolved = str(path.resolve())
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        mount_point = fields[1]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fields[2]
    return kind
