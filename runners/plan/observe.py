"""What the planner reads from results.json: one observation per measured
configuration (runner x workload x workers x threads), and the growth of
each worker's private memory from soak runs.

The runs come from one or more results folders (``read_results``): one folder
of ``tox -e bench -- --workers 1,2,3`` (or ``--sweep``) holds a whole sweep, its
runs told apart by their worker and thread counts; several folders (e.g. one
``--workers N`` invocation each) are simply read together. Per configuration the
runs at the highest load level are used (the most users in a closed loop;
open-loop runs carry their own capacity), their repeats (and the same
configuration from several folders) averaged.

A run's capacity is ``capacity.rps`` when the capacity search found one (the
rate within its latency target), else its requests/s. A run does not count
toward the capacity fit when a flag says it measured something else than
the server (``loadgen-bound``, ``user-bound``, a lost worker ...) or, with
``--slo-p99``, when a closed-loop run's p99 was over the target or an open-loop
run's capacity was searched at a looser target; its memory still counts.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.plan.fit import GrowthFit, fit_growth
from runners.results.criteria import SERVER_CPU_PERCENT
from runners.results.document import Results
from runners.results.flags import LOWER_BOUND, UNRANKED
from runners.results.record import Run

NOT_THE_SERVER = UNRANKED | LOWER_BOUND
"""Flags whose runs measured something else than the server's capacity: those that keep
a cell out of the ranking, and those that make its figure a lower bound (the report
ranks ``≥ X``; a fit needs the server's own rate)."""


@dataclass(frozen=True)
class ConfigObservation:
    """One measured configuration, its repeats averaged."""

    runner: str
    """The runner and what else tells its runs apart (``uvicorn (py3.12.1)``)."""
    runner_name: str
    family: str
    workload: str
    workers: int
    threads: int | None
    cores: float
    """Server CPUs of the runs (a CPU quota's cores, when under one)."""
    runs: int
    pss_peak: float
    capacity_rps: float | None
    """None when no run of the configuration may count toward capacity (``excluded``)."""
    excluded: str | None
    saturated: bool
    rps_per_cpu_second: float | None
    p99_ms: float | None
    master_pss: float | None = None
    """At the peak of summed PSS: the master's PSS (a cross-check of the fitted base)."""
    worker_pss: float | None = None
    """At the same sample: the mean PSS of a worker."""
    masters: int = 1
    """Processes besides the workers (a master, helpers) at that sample: a server
    may run differently at one worker (uvicorn --workers 1 has no master)."""
    working_set_peak: float | None = None
    """The peak of the server's cgroup working set, where every run recorded one."""

    @property
    def key(self) -> tuple[str, str, int, int | None]:
        return (self.runner, self.workload, self.workers, self.threads)


@dataclass(frozen=True)
class Growth:
    """Private memory growth per worker from the soak runs of one runner."""

    runner: str
    workload: str
    fit: GrowthFit
    source: str


def runner_label(run: Run) -> str:
    """The runner and its run id's runtime qualifiers (a sweep's ``w4``/``t8`` are
    the observation's own workers and threads, not part of the runner)."""
    qualifiers = [q for q in run.qualifiers if q not in run.sweep]
    return f"{run.runner} ({', '.join(qualifiers)})" if qualifiers else run.runner


def _cores(run: Run) -> float:
    """The server's CPUs: those pinned, or fewer under a CPU quota (``--cpu-limit``)."""
    pinned = len(run.server_cpus) if run.server_cpus else 1
    quota = run.pod.cpu_limit_cores if run.pod is not None else None
    return min(pinned, quota) if quota else pinned


def _saturated(run: Run) -> bool:
    if run.capacity is not None and run.capacity.bound == "server-cpu":
        return True
    busy = run.server_cpu_percent or 0.0
    pinned = len(run.server_cpus) if run.server_cpus else 1
    # Under a CPU quota, busy against the CPUs it could use (the quota's share of the pinned).
    return busy * pinned / _cores(run) >= SERVER_CPU_PERCENT


def _capacity(run: Run, slo_p99_ms: float | None) -> tuple[float | None, str | None]:
    """The run's capacity (req/s), or None and why it does not count."""
    bad = [f for f in run.flags if f in NOT_THE_SERVER]
    if bad:
        return None, f"flagged {', '.join(bad)}"
    if run.capacity is not None:
        if run.capacity.rps is None:
            return None, "the capacity search found no rate within its latency target"
        if slo_p99_ms is not None and run.capacity.slo_p99_ms > slo_p99_ms:
            return None, (
                f"capacity searched at p99 {run.capacity.slo_p99_ms:g} ms, "
                f"over the {slo_p99_ms:g} ms target"
            )
        return run.capacity.rps, None
    p99 = run.latency_ms.p99
    if slo_p99_ms is not None and (p99 is None or p99 > slo_p99_ms):
        return None, f"p99 {p99 or 0:.0f} ms over the {slo_p99_ms:g} ms target"
    return run.rps, None


def _split(run: Run) -> tuple[float | None, float | None, int]:
    """The master's PSS, the mean worker's PSS and the count of processes that are
    not workers, at the run's peak of summed PSS."""
    if run.memory is None or not run.memory.samples:
        return None, None, 1
    peak = max(run.memory.samples, key=lambda s: s.pss_total)
    masters = [p.pss for p in peak.processes if p.role == "master"]
    workers = [p.pss for p in peak.processes if p.role == "worker"]
    return (
        float(sum(masters)) if masters else None,
        statistics.fmean(workers) if workers else None,
        len(masters),
    )


def _working_set(runs: Sequence[Run]) -> float | None:
    """The runs' mean peak working set (None unless every run's cgroup recorded it)."""
    peaks = [
        r.memory.cgroup.working_set_peak_bytes
        for r in runs
        if r.memory is not None and r.memory.cgroup is not None
    ]
    return statistics.fmean(peaks) if peaks and len(peaks) == len(runs) else None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def observations(results: Sequence[Results], slo_p99_ms: float | None) -> list[ConfigObservation]:
    """The measured configurations of every folder (soak runs and failed runs left out)."""
    groups: dict[tuple[str, str, int, int | None], list[Run]] = defaultdict(list)
    for doc in results:
        for run in doc.ok_runs:
            if run.soak or run.memory is None or run.workers is None:
                continue
            groups[(runner_label(run), run.workload, run.workers, run.threads)].append(run)
    out = []
    for (label, workload, workers, threads), runs in groups.items():
        top = max(r.users for r in runs)
        runs = [r for r in runs if r.users == top]
        capacities = [_capacity(r, slo_p99_ms) for r in runs]
        counted = [c for c, _ in capacities if c is not None]
        counted_runs = [r for r, (c, _) in zip(runs, capacities, strict=True) if c is not None]
        reasons = sorted({why for _, why in capacities if why})
        first = runs[0]
        splits = [_split(r) for r in runs]
        out.append(
            ConfigObservation(
                runner=label,
                runner_name=first.runner,
                family=first.family,
                workload=workload,
                workers=workers,
                threads=threads,
                cores=_cores(first),
                runs=len(runs),
                pss_peak=statistics.fmean(r.memory.pss_peak_bytes for r in runs if r.memory),
                capacity_rps=statistics.fmean(counted) if counted else None,
                excluded=None if counted else "; ".join(reasons),
                saturated=any(_saturated(r) for r in counted_runs or runs),
                rps_per_cpu_second=_mean(r.rps_per_cpu_second for r in counted_runs),
                p99_ms=_mean(r.latency_ms.p99 for r in runs),
                master_pss=_mean(m for m, _, _ in splits),
                worker_pss=_mean(w for _, w, _ in splits),
                masters=max(c for _, _, c in splits),
                working_set_peak=_working_set(runs),
            )
        )
    out.sort(key=lambda o: (o.workload, o.runner, o.threads or 0, o.workers))
    return out


def _growth_of(run: Run) -> GrowthFit | None:
    series = run.soak_series
    if series is None or not series.t:
        return None
    start = series.window_start_s if series.window_start_s is not None else series.t[0]
    end = series.window_end_s if series.window_end_s is not None else series.t[-1]
    middle = (start + end) / 2
    workers = [p for p in series.processes if p.role == "worker"]
    per_worker: list[tuple[list[float], list[float]]] = []
    for proc in workers:
        ts: list[float] = []
        ys: list[float] = []
        for t, uss in zip(series.t, proc.uss, strict=False):
            if uss is not None and middle <= t <= end:
                ts.append(t)
                ys.append(float(uss))
        per_worker.append((ts, ys))
    count = run.workers or len(workers)
    if not count:
        return None
    return fit_growth(per_worker, run.rps / count, end - middle)


def growth(results: Sequence[Results], folders: Sequence[Path]) -> list[Growth]:
    """Per soak run, its workers' private-memory growth per 1,000 requests."""
    out = []
    for doc, folder in zip(results, folders, strict=True):
        for run in doc.ok_runs:
            if not run.soak:
                continue
            fit = _growth_of(run)
            if fit is not None:
                out.append(Growth(runner_label(run), run.workload, fit, str(folder)))
    return out
