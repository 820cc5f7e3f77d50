"""The planner's three models, each fitted by least squares from measured points.

- **Memory** (``fit_memory``): summed PSS = base + n x (per_worker + t x per_thread)
  for n workers of t threads. ``base`` is what does not multiply with the
  workers (the master, and the pages every worker shares, which PSS charges
  once in total however many share them); ``per_worker`` what each worker
  adds; ``per_thread`` what each thread adds to its worker (0, and included in
  ``per_worker``, when the sweep kept the thread count fixed). The peak of the
  summed PSS is fitted, as capacity is planned for the peak.
- **Capacity** (``fit_capacity``): capacity(n, cores) = min(n x per_worker,
  cores x per_core). Below CPU saturation each worker adds what one worker
  serves (a sync worker one request at a time, a threaded or async worker its
  concurrency), so the rate grows in proportion to the workers; once the
  cores are busy, more workers add nothing and the rate is what a core serves
  times the cores. ``per_worker`` is fitted (a line through the origin) from
  the runs below saturation, ``per_core`` from the runs at it (their rate per
  server CPU). We chose this two-regime law over the Universal Scalability Law
  because a sweep on a small machine has two or three points per regime, too
  few to fit USL's contention and coherency terms without over-fitting; the
  held-out validation says where it misses. When no run was below
  saturation, a worker is assumed to use one core at most (one CPython
  process runs Python on one core at a time): per_worker = per_core. When no
  run was at saturation, per_core is the mean of the runs' requests per
  CPU-second (the rate if the CPU were the only limit, an optimistic figure,
  said so).
- **Growth** (``fit_growth``): private memory (USS) of each worker against the
  requests it served, from soak runs, in bytes per 1,000 requests, from the
  later half of the load (the first requests un-share the copy-on-write pages
  in a burst that does not go on).

Pure functions over plain numbers: nothing here reads a file.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def least_squares(rows: Sequence[Sequence[float]], ys: Sequence[float]) -> list[float] | None:
    """The coefficients b minimising |X b - y|^2 (normal equations, Gaussian
    elimination with partial pivoting); None when X's columns are dependent."""
    if not rows or len(rows) != len(ys):
        return None
    k = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    b = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(k)]
    scale = max((abs(v) for row in a for v in row), default=0.0)
    if scale == 0:
        return None
    for col in range(k):
        pivot = max(range(col, k), key=lambda i: abs(a[i][col]))
        if abs(a[pivot][col]) <= scale * 1e-12:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        for i in range(col + 1, k):
            factor = a[i][col] / a[col][col]
            for j in range(col, k):
                a[i][j] -= factor * a[col][j]
            b[i] -= factor * b[col]
    out = [0.0] * k
    for i in reversed(range(k)):
        out[i] = (b[i] - sum(a[i][j] * out[j] for j in range(i + 1, k))) / a[i][i]
    return out


# --- memory ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPoint:
    """Summed PSS (bytes) of a server with ``workers`` workers of ``threads`` threads."""

    workers: int
    threads: int
    pss: float


@dataclass(frozen=True)
class MemoryFit:
    base: float
    per_worker: float
    per_thread: float
    """0 when the thread count was not varied (it is then inside ``per_worker``)."""
    workers_varied: bool
    threads_varied: bool
    points: int
    max_residual: float
    """The largest |measured - fitted| / measured over the points."""

    def predict(self, workers: int, threads: int) -> float:
        return self.base + workers * (self.per_worker + threads * self.per_thread)

    def per_worker_at(self, threads: int) -> float:
        """Bytes one more worker of ``threads`` threads adds."""
        return self.per_worker + threads * self.per_thread


def fit_memory(points: Sequence[MemoryPoint]) -> MemoryFit | None:
    """The memory line through ``points``; None without two worker or thread counts.

    The columns fitted are the ones the points can tell apart: the workers
    when they were varied, workers x threads when the threads were. With the
    workers fixed (a single-process server) ``base`` takes what the workers
    add and ``per_worker`` is 0: predict only at the measured worker count.
    """
    workers_varied = len({p.workers for p in points}) > 1
    threads_varied = len({p.threads for p in points}) > 1
    if not (workers_varied or threads_varied):
        return None
    rows = [
        [1.0]
        + ([float(p.workers)] if workers_varied else [])
        + ([float(p.workers * p.threads)] if threads_varied else [])
        for p in points
    ]
    coef = least_squares(rows, [p.pss for p in points])
    if coef is None:
        return None
    base = coef[0]
    per_worker = coef[1] if workers_varied else 0.0
    per_thread = coef[-1] if threads_varied else 0.0
    fit = MemoryFit(base, per_worker, per_thread, workers_varied, threads_varied, len(points), 0.0)
    residual = max(abs(p.pss - fit.predict(p.workers, p.threads)) / p.pss for p in points)
    return MemoryFit(
        base, per_worker, per_thread, workers_varied, threads_varied, len(points), residual
    )


# --- capacity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityPoint:
    """The capacity (req/s) of ``workers`` workers on ``cores`` server CPUs."""

    workers: int
    cores: float
    rps: float
    saturated: bool
    rps_per_cpu_second: float | None = None


@dataclass(frozen=True)
class CapacityFit:
    per_worker: float
    per_core: float
    per_worker_from: str
    """How ``per_worker`` was found: "runs below saturation" or "one core per worker"."""
    per_core_from: str
    """How ``per_core`` was found: "runs at saturation" or "requests per CPU-second"."""
    points: int

    def predict(self, workers: int, cores: float) -> float:
        return min(workers * self.per_worker, cores * self.per_core)

    def limit(self, workers: int, cores: float) -> str:
        """ "cores" when the cores cap ``workers`` workers, else "workers"."""
        return "cores" if workers * self.per_worker >= cores * self.per_core else "workers"

    def saturating_workers(self, cores: float) -> int:
        """The fewest workers that keep ``cores`` cores busy."""
        needed = cores * self.per_core / self.per_worker
        whole = int(needed)
        return max(1, whole if whole >= needed - 1e-9 else whole + 1)


def fit_capacity(points: Sequence[CapacityPoint]) -> CapacityFit | None:
    """The two-regime capacity law from ``points``; None when no rate was measured."""
    points = [p for p in points if p.rps > 0 and p.workers > 0 and p.cores > 0]
    if not points:
        return None
    below = [p for p in points if not p.saturated]
    at = [p for p in points if p.saturated]
    per_core: float | None = None
    per_core_from = "runs at saturation"
    if at:
        per_core = statistics.fmean(p.rps / p.cores for p in at)
    else:
        per_cpu = [p.rps_per_cpu_second for p in below if p.rps_per_cpu_second]
        if per_cpu:
            per_core = statistics.fmean(per_cpu)
            per_core_from = "requests per CPU-second (no run at saturation)"
    per_worker: float | None = None
    per_worker_from = "runs below saturation"
    if below:
        per_worker = sum(p.workers * p.rps for p in below) / sum(p.workers**2 for p in below)
    elif per_core is not None:
        per_worker = per_core
        per_worker_from = "one core per worker (no run below saturation)"
    if per_worker is None or per_core is None or per_worker <= 0 or per_core <= 0:
        return None
    return CapacityFit(per_worker, per_core, per_worker_from, per_core_from, len(points))


# --- growth over time --------------------------------------------------------------------------


@dataclass(frozen=True)
class GrowthFit:
    bytes_per_1000_requests: float
    """Private memory a worker gains per 1,000 requests it serves (median over workers)."""
    workers: int
    window_s: float


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ys against xs; None with fewer than two distinct xs."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    coef = least_squares([[1.0, x] for x in xs], ys)
    return coef[1] if coef is not None else None


def fit_growth(
    series: Sequence[tuple[Sequence[float], Sequence[float]]],
    requests_per_second_per_worker: float,
    window_s: float,
) -> GrowthFit | None:
    """From each worker's (seconds, USS bytes) series over the later half of the
    load and the rate each worker served, the growth per 1,000 requests."""
    if requests_per_second_per_worker <= 0:
        return None
    slopes = [s for ts, ys in series if (s := slope(ts, ys)) is not None]
    if not slopes:
        return None
    per_second = statistics.median(slopes)
    return GrowthFit(per_second / requests_per_second_per_worker * 1000, len(slopes), window_s)
