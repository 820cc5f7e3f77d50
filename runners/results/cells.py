"""Cells: the repetitions of one runner x workload x users (x interpreter, Django,
gc mode, and a sweep's worker and thread counts) aggregated. The one aggregation
of the suite: the driver writes its summary into results.json (``cells``, and the
``noisy`` flag of the runs of a noisy cell); the report ranks and compares the same cells.

Runs that differ in interpreter, Django, gc mode or (in a worker sweep) worker
or thread count are different cells, never repeats of one another.

A cell is ranked by its *ranking figure*: capacity per GiB (the capacity
search's rate within the latency target per GiB of peak PSS) for open-loop
runs, requests/s per GiB for closed-loop ones, and by what is known of it, its
*band* (``runners.results.bands``: the capacity search's band, per GiB with each
repeat's PSS peak, the repeats' union; for a figure without one, the range of its
repeats), open above when the figure is a lower bound. It is ``noisy`` when the
coefficient of variation of that figure over its successful repeats exceeds
``NOISY_CV``, or when their requests/s lie further than ``NOISY_SPREAD`` from
their mean (half the max - min range, relative to the mean).

Latency percentiles of a cell come from its repeats' HDR histograms merged
(``runners.results.latency``), never from averaged percentiles; a
version-1 run without a histogram falls back to the mean of its percentiles.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from runners.results import latency as hdr
from runners.results.bands import (
    Band,
    capacity_band,
    capacity_band_per_gib,
    is_lower_bound,
    points,
    union,
)
from runners.results.codec import Record, optional
from runners.results.criteria import NOISY_CV, NOISY_SPREAD
from runners.results.flags import UNRANKED, notes_for, order_flags
from runners.results.record import Latency, PythonInfo, Run, load_key
from runners.vocabulary import GcMode

GC_ORDER: tuple[GcMode, ...] = ("default", "freeze", "off")

# --------------------------------------------------------------------------
# Statistics over repetitions


@dataclass(frozen=True)
class Stat:
    """Mean and range of one figure over the repetitions of a cell."""

    n: int
    mean: float
    min: float
    max: float
    stdev: float | None = None
    """The sample standard deviation (None for one value)."""

    @property
    def spread(self) -> float:
        """Half the max-min range relative to the mean (0 for one value)."""
        if self.n < 2 or self.mean == 0:
            return 0.0
        return (self.max - self.min) / 2 / abs(self.mean)

    @property
    def cv(self) -> float | None:
        """Coefficient of variation: stdev / mean (None for one value)."""
        if self.stdev is None or self.mean == 0:
            return None
        return self.stdev / abs(self.mean)


def stat(values: Iterable[float | int | None]) -> Stat | None:
    """Stat of the values that are not None (None when there are none)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not kept:
        return None
    return Stat(
        n=len(kept),
        mean=statistics.fmean(kept),
        min=min(kept),
        max=max(kept),
        stdev=statistics.stdev(kept) if len(kept) > 1 else None,
    )


# --------------------------------------------------------------------------
# Cells


def python_label(run: Run, fallback: PythonInfo | None) -> str:
    """'CPython 3.11.11' for a run (``fallback``, the environment's, when it has none)."""
    python = run.python or fallback
    return python.label if python is not None else ""


def django_label(run: Run, packages: dict[str, str | None] | None) -> str:
    """Django's version for a run (falling back to the environment's packages)."""
    if run.django:
        return run.django
    packages = packages or {}
    return str(packages.get("django") or packages.get("Django") or "")


CellKey = tuple[str, int, str, str, str, str, tuple[str, ...], tuple[str, ...]]
"""(workload, users, runner, python label, Django version, gc mode, sweep qualifiers,
pod qualifiers)."""


@dataclass(frozen=True)
class Cell:
    """Every repetition of one (runner, workload, users, python, django, gc) cell."""

    runner: str
    workload: str
    users: int
    python: str
    django: str
    family: str
    server: str
    workers: int | None
    threads: int | None
    gc: str
    middleware: str
    runs: tuple[Run, ...]
    """In repetition order."""
    ok_runs: tuple[Run, ...]
    rps: Stat | None
    rps_per_gib: Stat | None
    rps_per_cpu_second: Stat | None
    pss_peak_bytes: Stat | None
    latency: dict[str, Stat | None]
    """Per percentile: ``mean`` is the percentile of the merged histograms (the mean of
    the runs' percentiles for runs without one), ``min``/``max`` the runs' own."""
    requests: int
    failures: int
    """Failed requests of the successful repetitions."""
    flags: tuple[str, ...]
    """Every flag of its runs, plus ``failed`` and ``noisy`` of the cell."""
    load: str = "closed"
    capacity_rps: Stat | None = None
    capacity_per_gib: Stat | None = None
    bound: str | None = None
    """What bounded the capacity of most repeats."""
    sweep: tuple[str, ...] = ()
    """A worker sweep's cell: ``("w4",)``, ``("w1", "t8")`` (``Run.sweep``); () otherwise."""
    capacity_band: Band | None = None
    """The capacity's band in req/s: its repeats' bands merged (``runners.results.bands``)."""
    capacity_band_per_gib: Band | None = None
    """The same per GiB, each repeat's ends over its own PSS peak."""
    lower_bound: bool = False
    """Some repeat's figure is a lower bound: the cell's band is open above (``≥ X``)."""
    pod: tuple[str, ...] = ()
    """Pods of several limits or worker rules: ``("mem256Mi", "rule-host")``
    (``Run.pod_qualifiers``); () otherwise."""

    @property
    def key(self) -> CellKey:
        return (
            self.workload,
            self.users,
            self.runner,
            self.python,
            self.django,
            self.gc,
            self.sweep,
            self.pod,
        )

    @property
    def failed(self) -> bool:
        """No repetition produced figures."""
        return not self.ok_runs

    @property
    def open_loop(self) -> bool:
        return self.load == "open"

    @property
    def ranking(self) -> Stat | None:
        """The figure cells are ranked by: capacity per GiB (open loop), else rps per GiB."""
        return self.capacity_per_gib if self.open_loop else self.rps_per_gib

    @property
    def ranking_band(self) -> Band | None:
        """What is known of the ranking figure: the capacity's band per GiB (open loop),
        else the range of the repeats' requests/s per GiB; open above for a lower bound."""
        if self.open_loop:
            return self.capacity_band_per_gib
        return points((r.rps_per_gib for r in self.ok_runs), self.lower_bound)

    @property
    def noisy(self) -> bool:
        return _noisy(self.rps, self.ranking)

    @property
    def caveats(self) -> tuple[str, ...]:
        """The flags that keep this cell out of the ranking."""
        return tuple(f for f in self.flags if f in UNRANKED)

    @property
    def ranked(self) -> bool:
        """Clean enough to be given a rank: figures and no flag that forbids it."""
        return not self.failed and not self.caveats and self.ranking is not None

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def _noisy(rps: Stat | None, ranking: Stat | None) -> bool:
    cv = ranking.cv if ranking is not None else None
    return (rps is not None and rps.spread > NOISY_SPREAD) or (cv is not None and cv > NOISY_CV)


def cell_latency(ok: Sequence[Run]) -> dict[str, Stat | None]:
    """Each percentile over the repeats: from their merged histograms when every one
    has a histogram, else the mean of their own percentiles."""
    own = {
        p: stat(getattr(r.latency_ms, p) for r in ok)
        for p in ("p50", "p90", "p95", "p99", "max", "mean")
    }
    if not ok or not all(r.latency_hdr for r in ok):
        return own
    merged: Latency = hdr.latency(hdr.merged(r.latency_hdr or "" for r in ok))
    out: dict[str, Stat | None] = {}
    for p, values in own.items():
        value = getattr(merged, p)
        out[p] = (
            None
            if value is None or values is None
            else dataclasses.replace(values, mean=float(value), stdev=None)
        )
    return out


def _bound(ok: Sequence[Run]) -> str | None:
    bounds = [r.capacity.bound for r in ok if r.capacity is not None]
    return max(set(bounds), key=bounds.count) if bounds else None


UNCONFIRMED = "unconfirmed"
PARTLY_CONFIRMED = "partly-confirmed"


def unconfirmed(run: Run) -> bool:
    """A repeat whose capacity did not hold in its confirmation window (or where no rate
    passed): flagged so by the driver, or read so from its capacity record."""
    cap = run.capacity
    return UNCONFIRMED in run.flags or (
        cap is not None and cap.rps is not None and not cap.confirmed
    )


def _confirmed(ok: tuple[Run, ...]) -> tuple[Run, ...]:
    """The repeats whose confirmation held, when some did and some did not; else all."""
    held = tuple(r for r in ok if not unconfirmed(r) and r.capacity is not None and r.capacity.rps)
    return held if held else ok


def make_cell(runs: Sequence[Run], python: str, django: str) -> Cell:
    """Aggregate the repetitions of one cell."""
    ordered = tuple(sorted(runs, key=lambda r: r.repeat))
    first = ordered[0]
    ok = tuple(r for r in ordered if r.ok)
    rps = stat(r.rps for r in ok)
    load = first.load or "closed"
    # What is known: where some repeats' confirmation held and others' did not, the cell's
    # capacity is that of the confirmed ones (the others stay in its runs).
    basis = _confirmed(ok) if load == "open" else ok
    capacity_per_gib = stat(r.capacity.rps_per_gib if r.capacity else None for r in basis)
    ranking = capacity_per_gib if load == "open" else stat(r.rps_per_gib for r in ok)
    flags: list[str] = [f for r in ordered for f in r.flags]
    if basis != ok:
        flags = [f for f in flags if f != UNCONFIRMED] + [PARTLY_CONFIRMED]
    if len(ok) < len(ordered):
        flags.append("failed")
    if _noisy(rps, ranking):
        flags.append("noisy")
    # "failures" comes from the runs: any failure in a closed loop, more than the error
    # budget (0.1 %) in an open one.
    failures = sum(r.failures for r in ok)
    lower_bound = any(is_lower_bound(r) for r in basis)
    return Cell(
        runner=first.runner,
        workload=first.workload,
        users=first.users,
        python=python,
        django=django,
        family=first.family,
        server=first.server,
        workers=first.workers,
        threads=first.threads,
        gc=first.gc,
        middleware=first.middleware or "",
        runs=ordered,
        ok_runs=ok,
        rps=rps,
        rps_per_gib=stat(r.rps_per_gib for r in ok),
        rps_per_cpu_second=stat(r.rps_per_cpu_second for r in ok),
        pss_peak_bytes=stat(r.memory.pss_peak_bytes if r.memory else None for r in ok),
        latency=cell_latency(basis),
        requests=sum(r.requests for r in ok),
        failures=failures,
        flags=order_flags(flags),
        load=load,
        capacity_rps=stat(r.capacity.rps if r.capacity else None for r in basis),
        capacity_per_gib=capacity_per_gib,
        bound=_bound(basis),
        sweep=first.sweep,
        capacity_band=union(capacity_band(r) for r in basis),
        capacity_band_per_gib=union(capacity_band_per_gib(r) for r in basis),
        lower_bound=lower_bound,
        pod=first.pod_qualifiers,
    )


def aggregate(
    runs: Iterable[Run],
    python: PythonInfo | None = None,
    packages: dict[str, str | None] | None = None,
) -> list[Cell]:
    """The cells of ``runs``, in the order of their first run. ``python`` and
    ``packages`` (the environment's) stand in for a run that records no interpreter
    or Django."""
    groups: dict[CellKey, list[Run]] = {}
    for run in runs:
        key = (
            run.workload,
            run.users,
            run.runner,
            python_label(run, python),
            django_label(run, packages),
            run.gc,
            run.sweep,
            run.pod_qualifiers,
        )
        groups.setdefault(key, []).append(run)
    return [make_cell(group, key[3], key[4]) for key, group in groups.items()]


def several(values: Iterable[Any]) -> bool:
    """More than one distinct value."""
    return len(set(values)) > 1


def matters(cells: Sequence[Cell], dimension: str) -> bool:
    """Whether some runner x workload x users has cells differing in ``dimension``
    (``python``, ``django`` or ``gc``)."""
    seen: dict[tuple[str, int, str], set[str]] = {}
    for cell in cells:
        seen.setdefault((cell.workload, cell.users, cell.runner), set()).add(
            str(getattr(cell, dimension))
        )
    return any(len(values) > 1 for values in seen.values())


# --------------------------------------------------------------------------
# The summary results.json keeps


@dataclass(frozen=True, kw_only=True)
class CellSummary(Record):
    """One element of results.json's ``cells``: mean and spread of a cell's ok repeats."""

    id: str
    runner: str
    workload: str
    users: int
    python: str | None = optional(None)
    """The server's Python version."""
    django: str | None = optional(None)
    gc: GcMode | None = optional(None)
    runs: int
    ok_runs: int
    rps_mean: float | None = None
    rps_stdev: float | None = None
    rps_min: float | None = None
    rps_max: float | None = None
    rps_spread: float | None = None
    """(rps_max - rps_min) / 2 / rps_mean; None for fewer than two ok repeats."""
    rps_per_gib_mean: float | None = None
    rps_per_cpu_second_mean: float | None = None
    pss_peak_bytes_mean: float | None = None
    p99_ms_mean: float | None = None
    failures: int = 0
    """Failed requests of every repeat."""
    flags: tuple[str, ...] = ()
    load: str | None = optional(None)
    p99_ms: float | None = optional(None)
    """p99 of the repeats' merged latency histograms."""
    capacity_rps_mean: float | None = optional(None)
    capacity_per_gib_mean: float | None = optional(None)
    ranking_cv: float | None = optional(None)
    bound: str | None = optional(None)


def _runtime(cell: Cell) -> tuple[str, str, str]:
    """(server Python version, Django, gc mode) as the first run records them ('' when not)."""
    run = cell.runs[0]
    version = run.python.version if run.python is not None else ""
    return (version, run.django or "", run.gc)


def summarize(cells: Sequence[Cell]) -> list[CellSummary]:
    """The ``cells`` of results.json. A cell's id is ``runner/workload/users``, plus a
    sweep's ``w4``/``t8`` and ``py3.12.1``, ``django6.1.3``, ``gc-freeze`` for the
    dimensions that vary within some runner x workload x users."""
    runtimes = [_runtime(cell) for cell in cells]
    seen: dict[tuple[str | int, ...], list[set[str]]] = {}
    for cell, runtime in zip(cells, runtimes, strict=True):
        values = seen.setdefault(
            (cell.runner, cell.workload, cell.users, *cell.sweep, *cell.pod),
            [set(), set(), set()],
        )
        for found, value in zip(values, runtime, strict=True):
            found.add(value)
    varying = [any(len(v[i]) > 1 for v in seen.values()) for i in range(3)]
    return [_summary(cell, runtime, varying) for cell, runtime in zip(cells, runtimes, strict=True)]


def _summary(cell: Cell, runtime: tuple[str, str, str], varying: list[bool]) -> CellSummary:
    python, django, gc = runtime
    qualifiers = [
        text
        for text, on in zip((f"py{python}", f"django{django}", f"gc-{gc}"), varying, strict=True)
        if on
    ]
    rps = cell.rps
    p99 = cell.latency["p99"]
    return CellSummary(
        id="/".join(
            [
                f"{cell.runner}/{cell.workload}/{load_key(cell.users)}",
                *cell.sweep,
                *cell.pod,
                *qualifiers,
            ]
        ),
        runner=cell.runner,
        workload=cell.workload,
        users=cell.users,
        python=python or None,
        django=django or None,
        gc=cell.runs[0].gc if gc else None,
        runs=len(cell.runs),
        ok_runs=len(cell.ok_runs),
        rps_mean=rps.mean if rps else None,
        rps_stdev=rps.stdev if rps else None,
        rps_min=rps.min if rps else None,
        rps_max=rps.max if rps else None,
        rps_spread=rps.spread if rps and rps.n > 1 and rps.mean else None,
        rps_per_gib_mean=cell.rps_per_gib.mean if cell.rps_per_gib else None,
        rps_per_cpu_second_mean=cell.rps_per_cpu_second.mean if cell.rps_per_cpu_second else None,
        pss_peak_bytes_mean=cell.pss_peak_bytes.mean if cell.pss_peak_bytes else None,
        p99_ms_mean=p99.mean if p99 else None,
        failures=sum(r.failures for r in cell.runs),
        flags=("noisy",) if cell.noisy else (),
        load=cell.runs[0].load,
        p99_ms=p99.mean if p99 and cell.runs[0].latency_hdr else None,
        capacity_rps_mean=cell.capacity_rps.mean if cell.capacity_rps else None,
        capacity_per_gib_mean=cell.capacity_per_gib.mean if cell.capacity_per_gib else None,
        ranking_cv=cell.ranking.cv if cell.ranking else None,
        bound=cell.bound,
    )


def mark_noisy(runs: Sequence[Run], cells: Sequence[Cell]) -> list[Run]:
    """``runs`` with the ``noisy`` flag (and its note) on every run of a noisy cell."""
    noisy = {id(run) for cell in cells if cell.noisy for run in cell.runs}
    marked = []
    for run in runs:
        if id(run) in noisy and "noisy" not in run.flags:
            run = dataclasses.replace(
                run,
                flags=(*run.flags, "noisy"),
                notes=(*(run.notes or ()), *notes_for(["noisy"])),
            )
        marked.append(run)
    return marked


# --------------------------------------------------------------------------
# Order


def version_key(label: str) -> tuple[int, ...]:
    """``(3, 12, 1)`` from ``CPython 3.12.1`` or ``5.2.19``: versions sort as numbers."""
    numbers: list[int] = []
    for part in label.rsplit(" ", 1)[-1].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def _position(values: Sequence[Any], value: Any) -> int:
    try:
        return list(values).index(value)
    except ValueError:
        return len(values)


def in_matrix_order(
    cells: Iterable[Cell], runners: Sequence[str], workloads: Sequence[str]
) -> list[Cell]:
    """Cells in matrix order (workload, users, runner), then by interpreter, Django,
    gc mode, and a sweep's workers and threads."""
    return sorted(
        cells,
        key=lambda c: (
            _position(workloads, c.workload),
            c.workload,
            c.users,
            _position(runners, c.runner),
            c.runner,
            version_key(c.python),
            c.python,
            version_key(c.django),
            _position(GC_ORDER, c.gc),
            c.workers or 0,
            c.threads or 0,
        ),
    )
