"""Profiles that explain a run's figures: what each process's memory is, what the
workers allocated, where the CPU went and, in a soak, what un-shared the pages.

- Every run: at the end of the measured window (still under load, right after the
  memory sampler stopped) the master, if there is one, and one worker (the lowest
  pid) are split by mapping category from ``/proc/PID/smaps``
  (``runners.sampling.smaps``: heap, libraries, interpreter, stacks, files,
  other). The run records it as ``breakdown``, with the wall time it took.
- ``--memory-profile``: the servers run with the tracemalloc shim
  (``runners.sampling.memprofile.server_env``); at the end of the window every
  worker writes a snapshot, recorded as ``memory_profile``: traced bytes by
  package and by line, object counts by type and, for a pre-fork master that
  preloads the app, what the workers inherited (object counts,
  ``gc.get_freeze_count()``) and per worker the change since the fork.
- ``--profile``: py-spy records the server's processes over the window, pinned
  to the load-generator CPUs (``runners.sampling.cpuprofile``), into
  ``runs/<run>.svg``, recorded as ``cpu_profile``.
- ``--soak``: every process is split by category when the server is ready (the
  state right after the fork, before any request) and at the end; per worker
  and category the run records how many bytes were shared at the start and no
  longer are, and how much private memory grew (``soak_breakdown``).

Either profiler slows the server, so a profiled run is flagged ``profiled`` and
not ranked. The open loop's confirmation window may be retried: each attempt
takes its own profiles and the last attempt's are kept (a memory-profile
snapshot counts objects, which un-shares pages before the next attempt).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runners.results.profiles import (
    Breakdown,
    CategoryShift,
    CpuProfile,
    MappedFile,
    MapUsage,
    MemoryProfile,
    ProcessBreakdown,
    SoakBreakdown,
    WorkerShift,
)
from runners.sampling import cpuprofile, memprofile, smaps
from runners.sampling.memory import ProcessMemory, sample_tree
from runners.serving.server import RunningServer

if TYPE_CHECKING:
    from runners.bench.options import Options

TOP_FILES = 5
"""Mapped files kept per process (largest RSS first)."""
TOP_SITES = 10
"""Allocation sites kept per worker."""
SNAPSHOT_TIMEOUT_S = 20.0
"""How long the workers have to write their snapshots."""


@dataclass(frozen=True)
class ProfilePlan:
    """What a run profiles, decided before its server starts."""

    results_dir: Path
    loadgen_cpus: tuple[int, ...]
    memory_dir: Path | None = None
    flamegraph: Path | None = None

    @classmethod
    def of(cls, options: Options, results_dir: Path, stem: str) -> ProfilePlan:
        runs = results_dir / "runs"
        return cls(
            results_dir=results_dir,
            loadgen_cpus=options.placement.loadgen,
            memory_dir=runs / f"{stem}.memprofile" if options.memory_profile else None,
            flamegraph=runs / f"{stem}.svg" if options.profile else None,
        )

    @property
    def profiled(self) -> bool:
        return self.memory_dir is not None or self.flamegraph is not None

    def server_env(self) -> dict[str, str]:
        """The server's extra environment: the tracing shim under ``--memory-profile``."""
        return memprofile.server_env(self.memory_dir) if self.memory_dir is not None else {}

    def flags(self) -> list[str]:
        return ["profiled"] if self.profiled else []


# --- the smaps breakdown --------------------------------------------------------------------


def _usage(usage: smaps.Usage) -> MapUsage:
    return MapUsage.from_dict(usage.as_dict())


def process_breakdown(
    found: smaps.SmapsBreakdown, proc: ProcessMemory, name: str
) -> ProcessBreakdown:
    return ProcessBreakdown(
        pid=found.pid,
        role=proc.role,
        name=name,
        categories={category: _usage(usage) for category, usage in found.categories.items()},
        total=_usage(found.total),
        threads=found.threads,
        threads_unlocated=found.threads_unlocated,
        read_seconds=round(found.read_seconds, 6),
        files=tuple(
            MappedFile(
                path=f.path,
                category=f.category,
                rss=f.usage.rss,
                pss=f.usage.pss,
                private=f.usage.private,
                shared=f.usage.shared,
            )
            for f in found.files[:TOP_FILES]
        ),
    )


def _named(procs: list[ProcessMemory], names: dict[int, str]) -> list[tuple[ProcessMemory, str]]:
    """Master first, then workers by pid, named ``master``, ``worker 1``... (a pid named
    before keeps its name)."""
    out: list[tuple[ProcessMemory, str]] = []
    workers = sum(1 for name in names.values() if name.startswith("worker"))
    for proc in sorted(procs, key=lambda p: (p.role != "master", p.pid)):
        if proc.pid not in names:
            if proc.role == "master":
                names[proc.pid] = "master"
            else:
                workers += 1
                names[proc.pid] = f"worker {workers}"
        out.append((proc, names[proc.pid]))
    return out


def take_breakdown(
    pid: int,
    at: str,
    *,
    every: bool = False,
    t: float | None = None,
    names: dict[int, str] | None = None,
) -> Breakdown:
    """The server ``pid``'s master and one worker (``every``: all its workers) by category."""
    began = time.perf_counter()
    tree = sample_tree(pid)
    procs = list(tree.server_processes)
    if not every:
        masters = [p for p in procs if p.role == "master"][:1]
        procs = masters + sorted(tree.workers, key=lambda p: p.pid)[:1]
    rows = []
    for proc, name in _named(procs, {} if names is None else names):
        try:
            found = smaps.breakdown(proc.pid)
        except OSError:  # the process ended meanwhile
            continue
        rows.append(process_breakdown(found, proc, name))
    return Breakdown(
        at=at,
        t=None if t is None else round(t, 3),
        seconds=round(time.perf_counter() - began, 6),
        processes=tuple(rows),
    )


def soak_shift(start: Breakdown, end: Breakdown) -> SoakBreakdown:
    """Per worker alive at both moments and per category: shared and private bytes at the
    start and the end, what was un-shared and how much private memory grew."""
    before = {p.pid: p for p in start.processes if p.role == "worker"}
    workers = []
    unshared: dict[str, int] = {}
    for proc in end.processes:
        first = before.get(proc.pid)
        if first is None:
            continue
        categories = {}
        for name, late in proc.categories.items():
            early = first.categories.get(name)
            if early is None:
                continue
            shift = CategoryShift(
                shared_start=early.shared,
                shared_end=late.shared,
                private_start=early.private,
                private_end=late.private,
                unshared=max(0, early.shared - late.shared),
                private_growth=late.private - early.private,
            )
            categories[name] = shift
            unshared[name] = unshared.get(name, 0) + shift.unshared
        workers.append(WorkerShift(pid=proc.pid, name=proc.name or "", categories=categories))
    driver = max(unshared, key=lambda name: unshared[name]) if any(unshared.values()) else None
    return SoakBreakdown(start=start, end=end, workers=tuple(workers), driver=driver)


# --- the hooks ------------------------------------------------------------------------------


class Profiler:
    """One run's profiles: ``runners.bench.probing`` calls ``opened`` and
    ``closed`` around each measured window (and ``soak_started`` before a soak's
    load); ``fields`` is what the run records. A context manager: leaving it stops
    py-spy if a window never closed."""

    def __init__(self, plan: ProfilePlan, server: RunningServer) -> None:
        self.plan = plan
        self.server = server
        self.windows = 0
        self.breakdown: Breakdown | None = None
        self.memory_profile: MemoryProfile | None = None
        self.cpu_profile: CpuProfile | None = None
        self.soak_start: Breakdown | None = None
        self.soak_end: Breakdown | None = None
        self._soak_began: float | None = None
        self._names: dict[int, str] = {}
        self._spy: cpuprofile.PySpyRecording | None = None

    def soak_started(self, began: float) -> None:
        """The server is ready, no request sent yet (``began``: the soak series' origin,
        ``time.monotonic()``)."""
        self._soak_began = began
        self.soak_start = take_breakdown(
            self.server.pid,
            "soak-start",
            every=True,
            t=time.monotonic() - began,
            names=self._names,
        )

    def opened(self) -> None:
        self.windows += 1
        if self.plan.flamegraph is not None:
            self._start_spy(self.plan.flamegraph)

    def closed(self) -> None:
        if self._soak_began is not None:
            end = take_breakdown(
                self.server.pid,
                "soak-end",
                every=True,
                t=time.monotonic() - self._soak_began,
                names=self._names,
            )
            self.soak_end = end
            masters = [p for p in end.processes if p.role == "master"][:1]
            workers = [p for p in end.processes if p.role == "worker"][:1]
            self.breakdown = dataclasses.replace(end, processes=tuple(masters + workers))
        else:
            self.breakdown = take_breakdown(self.server.pid, "window-end")
        self._stop_spy()
        if self.plan.memory_dir is not None:
            self.memory_profile = self._snapshots(self.plan.memory_dir)

    def fields(self) -> dict[str, Any]:
        """The run's profile fields (``dataclasses.replace(run, **fields)``)."""
        soak = None
        if self.soak_start is not None and self.soak_end is not None:
            soak = soak_shift(self.soak_start, self.soak_end)
        return {
            "breakdown": self.breakdown,
            "memory_profile": self.memory_profile,
            "cpu_profile": self.cpu_profile,
            "soak_breakdown": soak,
        }

    # --- py-spy

    def _start_spy(self, output: Path) -> None:
        plan = cpuprofile.CpuProfilePlan(self.server.pid, output, cpus=self.plan.loadgen_cpus)
        spy = cpuprofile.PySpyRecording(plan)
        try:
            spy.start()
        except cpuprofile.ProfileError as exc:
            self.cpu_profile = CpuProfile(
                flamegraph=None, seconds=0.0, error=str(exc).splitlines()[0][:300]
            )
            return
        self._spy = spy

    def _stop_spy(self) -> None:
        spy, self._spy = self._spy, None
        if spy is None:
            return
        result = spy.stop()
        path = None
        if result.output is not None:
            path = result.output.relative_to(self.plan.results_dir).as_posix()
        samples, errors = result.samples or (None, None)
        self.cpu_profile = CpuProfile(
            flamegraph=path,
            seconds=round(result.seconds, 3),
            samples=samples,
            errors=errors,
            rate=spy.plan.rate,
            nonblocking=spy.plan.nonblocking,
            error=None if path else f"py-spy wrote no flame graph (exit {result.returncode})",
        )

    # --- tracemalloc

    def _snapshots(self, directory: Path) -> MemoryProfile:
        label = f"end-{self.windows}"
        tree = sample_tree(self.server.pid)
        helpers = {p.pid for p in tree.processes if p.helper}
        workers = [p.pid for p in tree.workers]
        found = memprofile.snapshots(directory, label, workers, timeout=SNAPSHOT_TIMEOUT_S)
        found = {pid: snap for pid, snap in found.items() if pid not in helpers}
        roles = {p.pid: p.role for p in tree.server_processes}
        summary = memprofile.summarize(found, roles, memprofile.fork_records(directory), TOP_SITES)
        for process in summary["processes"]:
            process["freeze_count_end"] = found[process["pid"]]["gc"]["freeze_count"]
        summary["label"] = label
        summary["missing"] = sorted(set(workers) - set(found))
        return MemoryProfile.from_dict(summary)

    def __enter__(self) -> Profiler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        spy, self._spy = self._spy, None
        if spy is not None:
            spy.stop(timeout=10.0)
