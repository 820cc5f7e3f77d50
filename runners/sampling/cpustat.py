"""How busy a set of CPUs was between two moments, everything running on them counted.

``/proc/stat`` keeps, per CPU, the time spent in each state since boot. The
busy share of CPUs ``S`` over an interval is the non-idle time they gained
over the total they gained. Unlike a process's own CPU seconds, it counts
every process on those CPUs: the upstream service beside Locust, a stray
job beside the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """Busy and total clock ticks per CPU, since boot."""

    busy: dict[int, int]
    total: dict[int, int]


def read(path: Path = PROC_STAT) -> CpuTimes:
    busy: dict[int, int] = {}
    total: dict[int, int] = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(v) for v in rest.split()]
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        cpu = int(name[3:])
        total[cpu] = sum(ticks[:8])
        busy[cpu] = total[cpu] - idle
    return CpuTimes(busy, total)


def busy_percent(before: CpuTimes, after: CpuTimes, cpus: Iterable[int]) -> float | None:
    """Percent of the CPUs' time that was busy between ``before`` and ``after``
    (100 = every one of them busy all the time); None if no time passed."""
    busy = total = 0
    for cpu in cpus:
        busy += after.busy.get(cpu, 0) - before.busy.get(cpu, 0)
        total += after.total.get(cpu, 0) - before.total.get(cpu, 0)
    return 100.0 * busy / total if total > 0 else None
