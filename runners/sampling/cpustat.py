"""How busy a set of CPUs was between two moments, everything running on them counted,
and how much of their time the hypervisor took.

``/proc/stat`` keeps, per CPU, the time spent in each state since boot. The
busy share of CPUs ``S`` over an interval is the non-idle time they gained
over the time they had: unlike a process's own CPU seconds, it counts every
process on those CPUs (the upstream service beside Locust, a stray job beside
the server). *Steal* is time the virtual CPU was ready to run but the
hypervisor ran someone else's: it is neither ours nor another process's here,
so it is read apart (``steal``) and left out of both busy time and the time
the CPUs had.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """Busy, stolen and total clock ticks per CPU, since boot (``total`` includes steal)."""

    busy: dict[int, int]
    total: dict[int, int]
    steal: dict[int, int] = field(default_factory=dict)


def read(path: Path = PROC_STAT) -> CpuTimes:
    busy: dict[int, int] = {}
    total: dict[int, int] = {}
    steal: dict[int, int] = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(v) for v in rest.split()]
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        cpu = int(name[3:])
        stolen = ticks[7] if len(ticks) > 7 else 0
        total[cpu] = sum(ticks[:8])
        steal[cpu] = stolen
        busy[cpu] = total[cpu] - idle - stolen
    return CpuTimes(busy, total, steal)


def gained(before: CpuTimes, after: CpuTimes, cpus: Iterable[int]) -> tuple[int, int, int]:
    """(busy, stolen, total) ticks ``cpus`` gained between two reads."""
    busy = steal = total = 0
    for cpu in cpus:
        busy += after.busy.get(cpu, 0) - before.busy.get(cpu, 0)
        steal += after.steal.get(cpu, 0) - before.steal.get(cpu, 0)
        total += after.total.get(cpu, 0) - before.total.get(cpu, 0)
    return busy, steal, total


def busy_percent(before: CpuTimes, after: CpuTimes, cpus: Iterable[int]) -> float | None:
    """Percent of the time the CPUs had (stolen time left out) that was busy between
    ``before`` and ``after`` (100 = every one of them busy all the time); None if no
    time passed."""
    busy, steal, total = gained(before, after, cpus)
    had = total - steal
    return 100.0 * busy / had if had > 0 else None


def steal_share(before: CpuTimes, after: CpuTimes, cpus: Iterable[int]) -> float | None:
    """The share of the CPUs' time the hypervisor took (None if no time passed)."""
    _, steal, total = gained(before, after, cpus)
    return steal / total if total > 0 else None
