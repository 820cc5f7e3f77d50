"""What the report draws of a run's memory: the processes at the peak of summed PSS,
split into private and shared, summed PSS over time and, where the server had a cgroup,
its working set, limit and OOM kills beside it, with a sentence where the two differ."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runners.results.criteria import WORKING_SET_GAP
from runners.results.figures import MIB
from runners.results.record import CgroupMemory, Memory, MemorySample

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


# --- the cgroup beside PSS ------------------------------------------------------------------


def working_set_series(memory: Memory | None) -> list[tuple[float, float]]:
    """(t seconds, the cgroup's working set MiB) over the run, downsampled; [] without a
    cgroup."""
    samples = sorted(memory.samples if memory is not None else (), key=lambda s: float(s.t))
    points = [
        (round(float(s.t), 2), round(s.working_set / MIB, 2))
        for s in samples
        if s.working_set is not None
    ]
    return downsample(points, MAX_SERIES_POINTS)


def oom_marks(memory: Memory | None) -> list[tuple[float, float]]:
    """(t seconds, working set MiB) of each sample whose cgroup counted new OOM kills."""
    samples = sorted(memory.samples if memory is not None else (), key=lambda s: float(s.t))
    marks = []
    before: int | None = None
    for sample in samples:
        kills = sample.oom_kills
        if kills is None:
            continue
        if before is not None and kills > before:
            marks.append((round(float(sample.t), 2), round((sample.working_set or 0) / MIB, 2)))
        before = kills
    return marks


@dataclass(frozen=True)
class WorkingSetGap:
    """Why a cgroup's working set and the tree's summed PSS differ: each part's share of
    the difference, in bytes (positive: in the working set, not in PSS)."""

    working_set: int
    pss: int
    parts: dict[str, int]

    @property
    def difference(self) -> int:
        return self.working_set - self.pss

    @property
    def share(self) -> float:
        return self.difference / self.pss if self.pss else 0.0

    @property
    def main(self) -> str:
        """The part that explains most of the difference (in its direction)."""
        sign = 1 if self.difference >= 0 else -1
        return max(self.parts, key=lambda name: sign * self.parts[name])


GAP_WHY = {
    ("kernel", 1): "kernel memory charged to the cgroup (slab, sockets, page tables, stacks), "
    "which no process's PSS counts",
    ("page cache", 1): "page cache the server read (files, the database), charged to the "
    "cgroup but mapped by no process",
    ("page cache", -1): "mapped files (the interpreter, libraries) whose pages were charged "
    "to the cgroup that first read them, not to this one: PSS counts them, the cgroup does not",
    ("anonymous", 1): "anonymous memory charged to the cgroup that no live process maps (a "
    "killed worker's pages not yet freed)",
    ("anonymous", -1): "anonymous pages shared with processes outside the cgroup, charged "
    "where they were first touched",
    ("shared memory", 1): "shared memory (tmpfs, shm) charged to the cgroup beyond its PSS",
    ("shared memory", -1): "shared memory charged to another cgroup",
}


UNEXPLAINED = "no part of the cgroup's counters explains it (the usage counter is batched per CPU)"


def working_set_gap(cgroup: CgroupMemory) -> WorkingSetGap:
    """The parts of working set - PSS at the sample where the working set peaked."""
    cached = cgroup.file_bytes - cgroup.shmem_bytes - cgroup.inactive_file_bytes
    return WorkingSetGap(
        working_set=cgroup.working_set_peak_bytes,
        pss=cgroup.pss_bytes,
        parts={
            "kernel": cgroup.kernel_bytes or 0,
            "page cache": cached - cgroup.pss_file_bytes,
            "anonymous": cgroup.anon_bytes - cgroup.pss_anon_bytes,
            "shared memory": cgroup.shmem_bytes - cgroup.pss_shmem_bytes,
        },
    )


def working_set_sentence(label: str, memory: Memory | None) -> str | None:
    """One sentence when the cgroup's working set and summed PSS differ by more than
    ``WORKING_SET_GAP`` (at the working set's peak), naming the part that explains it."""
    cgroup = memory.cgroup if memory is not None else None
    if cgroup is None or not cgroup.pss_bytes:
        return None
    gap = working_set_gap(cgroup)
    if abs(gap.share) <= WORKING_SET_GAP:
        return None
    main = gap.main
    direction = 1 if gap.difference >= 0 else -1
    return (
        f"{label}: working set {gap.working_set / MIB:.0f} MiB is {abs(gap.share):.0%} "
        f"{'above' if direction > 0 else 'below'} summed PSS {gap.pss / MIB:.0f} MiB; most of "
        f"the difference is {main} ({gap.parts[main] / MIB:+.0f} MiB): "
        f"{GAP_WHY.get((main, direction), UNEXPLAINED)}."
    )
