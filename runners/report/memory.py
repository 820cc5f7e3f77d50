"""What the report draws of a run's memory: the processes at the peak of summed PSS,
split into private and shared, and summed PSS over time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runners.results.figures import MIB
from runners.results.record import Memory, MemorySample

JSON = dict[str, Any]

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


def process_rows(sample: MemorySample) -> list[JSON]:
    """The processes of a sample, master first then workers by pid, each with
    its private / shared split in bytes.

    private = USS; charged_shared = PSS - USS (its share of pages it shares);
    other_shared = RSS - PSS (shared pages charged to the other processes).
    """
    procs = sorted(sample.processes, key=lambda p: (p.role != "master", p.pid))
    # (More than MAX_WORKER_ROWS workers: the first ones, then their mean.)
    rows: list[JSON] = []
    worker = 0
    for proc in procs:
        if proc.role == "master":
            name = "master"
        else:
            worker += 1
            name = f"worker {worker}"
        rows.append(
            _memory_row(name, proc.pid, proc.role, proc.rss, proc.pss, proc.uss, proc.shared_bytes)
        )
    workers = [r for r in rows if r["role"] != "master"]
    if len(workers) <= MAX_WORKER_ROWS:
        return rows
    # Many workers look alike: keep the first ones, and one row for the rest.
    kept, rest = workers[: MAX_WORKER_ROWS - 1], workers[MAX_WORKER_ROWS - 1 :]

    def mean(key: str) -> int:
        return round(sum(int(r[key]) for r in rest) / len(rest))

    summary = _memory_row(
        f"workers {len(kept) + 1}–{len(workers)} (mean)",
        None,
        "worker",
        mean("rss"),
        mean("pss"),
        mean("uss"),
        mean("shared"),
    )
    return [r for r in rows if r["role"] == "master"] + kept + [summary]


def _memory_row(
    name: str, pid: int | None, role: str, rss: int, pss: int, uss: int, shared: int
) -> JSON:
    return {
        "name": name,
        "pid": pid,
        "role": role,
        "rss": rss,
        "pss": pss,
        "uss": uss,
        "shared": shared,
        "private": uss,
        "charged_shared": max(pss - uss, 0),
        "other_shared": max(rss - pss, 0),
    }


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
