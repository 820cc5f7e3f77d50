"""What went wrong in a run that still produced figures: workers that died or
were replaced, requests that timed out, processes OOM-killed at the memory limit."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.sampling.memory import TreeSample


@dataclass(frozen=True)
class Incidents:
    """What went wrong in a run that still produced figures: workers that died
    (and those the master started instead), requests that timed out."""

    gone: tuple[int, ...] = ()
    new: tuple[int, ...] = ()
    timeouts: int = 0
    oom_kills: int = 0
    """Processes the kernel OOM-killed in the server's cgroup during the run."""

    @property
    def recovered(self) -> bool:
        return len(self.new) >= len(self.gone)

    def flags(self) -> list[str]:
        flags = []
        if self.gone:
            flags.append("worker-restarted" if self.recovered else "worker-lost")
        if self.timeouts:
            flags.append("timeouts")
        if self.oom_kills:
            flags.append("oom-killed")
        return flags

    def events(self) -> list[str]:
        events = []
        if self.gone:
            gone = ", ".join(map(str, self.gone))
            if self.new:
                new = ", ".join(map(str, self.new))
                state = "recovered" if self.recovered else "not every worker was replaced"
                events.append(f"worker(s) {gone} died; the master started {new} ({state})")
            else:
                events.append(f"worker(s) {gone} died and were not replaced")
        if self.timeouts:
            events.append(f"{self.timeouts} request(s) got no answer within the request timeout")
        if self.oom_kills:
            events.append(
                f"the kernel OOM-killed {self.oom_kills} process(es) at the cgroup's memory limit"
            )
        return events


def worker_changes(
    before: set[int], samples: Sequence[TreeSample], now: set[int] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(workers gone, workers new) between the start of a run and the window's last sample
    (or ``now``: the workers after the window, once a master had time to replace one).
    New are all the workers the master started meanwhile, also those that died in turn
    (OOM kills come in a stream): a master that replaced every one recovered."""
    if not before or not samples:
        return (), ()
    seen = set(before).union(*({p.pid for p in s.workers} for s in samples))
    last = {p.pid for p in samples[-1].workers} if now is None else now
    seen |= last
    return tuple(sorted(seen - last)), tuple(sorted(seen - before))


def timeout_failures(path: Path) -> int:
    """Requests that failed for want of an answer, from Locust's ``*_failures.csv``."""
    try:
        with path.open(newline="") as fh:
            return sum(
                int(row.get("Occurrences") or 0)
                for row in csv.DictReader(fh)
                if "timeout" in (row.get("Error") or "")
            )
    except (OSError, ValueError):
        return 0
