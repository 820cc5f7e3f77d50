"""What the report draws of a run's memory: the processes at the peak of summed PSS,
split into private and shared, and summed PSS over time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runners.results.figures import MIB
from runners.results.record import Memory, MemorySample

MAX_SERIES_POINTS = 120
"""Points kept per line in the PSS-over-time chart."""
MAX_WORKER_ROWS = 4
"""Workers shown one by one in the memory-per-process chart; more are summed up
as the first MAX_WORKER_ROWS - 1 and one row with the mean of the others."""


def peak_sample(memory: Memory | None) -> MemorySample | None:
    """The memory sample with the highest summed PSS."""
    samples = memory.samples if memory is not None else ()
    with_processes = [s for s in samples if s.processes]
    if not with_processes:
        return None
    return max(with_processes, key=lambda s: s.pss_total)


@dataclass(frozen=True)
class ProcessShare:
    """One process (or the mean of several workers) at a memory sample, in bytes.

    private = USS; charged_shared = PSS - USS (its share of the pages it shares);
    other_shared = RSS - PSS (shared pages charged to the other processes).
    """

    name: str
    pid: int | None
    role: str
    rss: int
    pss: int
    uss: int
    shared: int

    @property
    def private(self) -> int:
        return self.uss

    @property
    def charged_shared(self) -> int:
        return max(self.pss - self.uss, 0)

    @property
    def other_shared(self) -> int:
        return max(self.rss - self.pss, 0)


def process_rows(sample: MemorySample) -> list[ProcessShare]:
    """The processes of a sample, master first then workers by pid, each with
    its private / shared split (``ProcessShare``).

    More than MAX_WORKER_ROWS workers: the first MAX_WORKER_ROWS - 1, then one row
    with the mean of the others.
    """
    procs = sorted(sample.processes, key=lambda p: (p.role != "master", p.pid))
    rows: list[ProcessShare] = []
    worker = 0
    for proc in procs:
        if proc.role == "master":
            name = "master"
        else:
            worker += 1
            name = f"worker {worker}"
        rows.append(
            ProcessShare(name, proc.pid, proc.role, proc.rss, proc.pss, proc.uss, proc.shared_bytes)
        )
    workers = [r for r in rows if r.role != "master"]
    if len(workers) <= MAX_WORKER_ROWS:
        return rows
    # Many workers look alike: keep the first ones, and one row for the rest.
    kept, rest = workers[: MAX_WORKER_ROWS - 1], workers[MAX_WORKER_ROWS - 1 :]

    def mean(figure: Callable[[ProcessShare], int]) -> int:
        return round(sum(figure(r) for r in rest) / len(rest))

    summary = ProcessShare(
        name=f"workers {len(kept) + 1}–{len(workers)} (mean)",
        pid=None,
        role="worker",
        rss=mean(lambda r: r.rss),
        pss=mean(lambda r: r.pss),
        uss=mean(lambda r: r.uss),
        shared=mean(lambda r: r.shared),
    )
    return [r for r in rows if r.role == "master"] + kept + [summary]


def downsample(points: Sequence[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` points, evenly spaced, keeping the first, last and peak."""
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    keep = {round(i * step) for i in range(limit)}
    keep.add(max(range(len(points)), key=lambda i: points[i][1]))
    return [points[i] for i in sorted(keep)]


def pss_series(memory: Memory | None) -> list[tuple[float, float]]:
    """(t seconds, summed PSS MiB) over the run, downsampled."""
    samples = sorted(memory.samples if memory is not None else (), key=lambda s: float(s.t))
    points = [(round(float(s.t), 2), round(s.pss_total / MIB, 2)) for s in samples]
    return downsample(points, MAX_SERIES_POINTS)
