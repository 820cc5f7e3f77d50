"""The profiles a run can carry: what its memory is (the smaps breakdown), what
allocation tracing saw (``--memory-profile``), where the CPU went (``--profile``), and
what a soak un-shared, per mapping category. Part of the run record
(``runners.results.record``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from runners.results.codec import Record, optional
from runners.vocabulary import Role

# --- profiles: what the memory is, what tracing saw, where the CPU went ---------------------------


@dataclass(frozen=True, kw_only=True)
class MapUsage(Record):
    """Bytes of one mapping category, or of a file, in one process (``runners.sampling.smaps``)."""

    rss: int
    pss: int
    shared_clean: int
    shared_dirty: int
    private_clean: int
    private_dirty: int
    swap: int = optional(0)
    mappings: int = optional(0)
    private: int
    """private_clean + private_dirty (USS)."""
    shared: int
    """shared_clean + shared_dirty."""


@dataclass(frozen=True, kw_only=True)
class MappedFile(Record):
    """One file's mappings summed (a library maps several segments)."""

    path: str
    category: str
    rss: int
    pss: int
    private: int
    shared: int


@dataclass(frozen=True, kw_only=True)
class ProcessBreakdown(Record):
    """One process's memory by mapping category, read from ``/proc/PID/smaps``."""

    pid: int
    role: Role
    name: str | None = optional(None)
    """``master``, ``worker 1``... in a soak's breakdowns (the soak series' names)."""
    categories: dict[str, MapUsage]
    """heap, libraries, interpreter, stacks, files, other: they add up to ``total``."""
    total: MapUsage
    threads: int | None = optional(None)
    threads_unlocated: int | None = optional(None)
    read_seconds: float | None = optional(None)
    files: tuple[MappedFile, ...] = optional(())


@dataclass(frozen=True, kw_only=True)
class Breakdown(Record):
    """Processes of the server split by mapping category at one instant."""

    at: str
    """``window-end`` (the end of the measured window, still under load), ``soak-start``
    (the server ready, before any request) or ``soak-end``."""
    t: float | None = optional(None)
    """Seconds on the soak series' time axis (soak breakdowns only)."""
    seconds: float
    """Wall time the whole breakdown took (every process, thread lookups included)."""
    processes: tuple[ProcessBreakdown, ...]


@dataclass(frozen=True, kw_only=True)
class CategoryShift(Record):
    """One mapping category of one worker between two breakdowns (bytes; end - start)."""

    shared_start: int
    shared_end: int
    private_start: int
    private_end: int
    unshared: int
    """max(0, shared_start - shared_end): pages this worker shared at the start and no
    longer does (copied on write, or dropped)."""
    private_growth: int
    """private_end - private_start: copied pages plus new allocations."""


@dataclass(frozen=True, kw_only=True)
class WorkerShift(Record):
    pid: int
    name: str
    categories: dict[str, CategoryShift]


@dataclass(frozen=True, kw_only=True)
class SoakBreakdown(Record):
    """A soak's breakdowns at its start and end, and per worker and category what moved
    from shared to private (``runners.bench.profiles``)."""

    start: Breakdown
    end: Breakdown
    workers: tuple[WorkerShift, ...]
    driver: str | None = optional(None)
    """The category whose pages were un-shared most (summed over the workers)."""


@dataclass(frozen=True, kw_only=True)
class PackageBytes(Record):
    package: str
    bytes: int
    blocks: int | None = optional(None)


@dataclass(frozen=True, kw_only=True)
class AllocationSite(Record):
    file: str
    line: int
    package: str
    bytes: int
    blocks: int


@dataclass(frozen=True, kw_only=True)
class TypeCount(Record):
    type: str
    count: int


@dataclass(frozen=True, kw_only=True)
class TypeChange(Record):
    type: str
    fork: int | None
    end: int | None
    change: int


@dataclass(frozen=True, kw_only=True)
class ForkRecord(Record):
    """What a pre-fork master held just before its first fork."""

    pid: int
    app_imported: bool
    gc: dict[str, Any]
    objects_total: int
    objects_by_type: tuple[TypeCount, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProfiledProcess(Record):
    """One traced process's snapshot at the end of the window (tracemalloc)."""

    pid: int
    role: Role | Literal["unknown"]
    traced_from: str
    traced_seconds: float | None
    traced_bytes: int
    traced_peak_bytes: int
    tracemalloc_overhead_bytes: int
    freeze_count_at_fork: int | None = None
    freeze_count_end: int | None = optional(None)
    by_package: tuple[PackageBytes, ...] = ()
    by_caller_package: tuple[PackageBytes, ...] = ()
    top_lines: tuple[AllocationSite, ...] = ()
    objects_total: int
    objects_by_type: tuple[TypeCount, ...] = ()
    objects_since_fork: tuple[TypeChange, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class MemoryProfile(Record):
    """``--memory-profile``: what each worker allocated while traced, and what it inherited."""

    frames: int | None
    label: str | None = optional(None)
    fork: tuple[ForkRecord, ...] = ()
    processes: tuple[ProfiledProcess, ...] = ()
    missing: tuple[int, ...] = optional(())
    """Workers that wrote no snapshot in time."""


@dataclass(frozen=True, kw_only=True)
class CpuProfile(Record):
    """``--profile``: a py-spy flame graph of the server's processes over the window."""

    flamegraph: str | None
    """The SVG, relative to the results folder (None: py-spy wrote none)."""
    seconds: float
    samples: int | None = None
    errors: int | None = None
    tool: str = "py-spy"
    rate: int | None = optional(None)
    nonblocking: bool | None = optional(None)
    error: str | None = optional(None)
