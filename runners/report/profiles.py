"""What the run page shows of the profiles (``runners.bench.profiles``): a worker's
private memory by mapping category for every runner side by side, the top
allocation sites of ``--memory-profile`` runs with what the workers inherited at
the fork, which category drove a soak's copy-on-write decay (per gc mode and
interpreter), and the flame graphs of ``--profile`` runs, side by side per workload
(uvicorn's ``json`` next to gthread's). The template is ``templates/_profiles.html.j2``:
``profile_views`` shapes what it shows (``ProfileViews``), ``profile_charts`` gives the
specs of its charts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runners.report.links import safe_relative_href
from runners.results.document import Results
from runners.results.figures import MIB
from runners.results.profiles import ProcessBreakdown, SoakBreakdown
from runners.results.record import Run

JSON = dict[str, Any]

CATEGORIES = ("heap", "libraries", "interpreter", "stacks", "files", "other")
CATEGORY_COLORS = {
    "heap": "#1a5e8a",
    "libraries": "#E69F00",
    "interpreter": "#009E73",
    "stacks": "#CC79A7",
    "files": "#56B4E9",
    "other": "#999999",
}
TEXT_COLORS = {"heap": "#ffffff", "interpreter": "#ffffff"}
TOP_SITES = 5


def run_label(run: Run) -> str:
    """The runner, with what the id adds (``gunicorn-sync-preload py3.12.1 gc-freeze``)."""
    return " ".join([run.runner, *run.qualifiers])


def _mib(value: int) -> float:
    return round(value / MIB, 1)


def _worker(processes: Iterable[ProcessBreakdown]) -> ProcessBreakdown | None:
    return next((p for p in processes if p.role == "worker"), None)


def _first_per_label(runs: Iterable[Run]) -> list[Run]:
    """One run per runner label and workload: the first repetition that has the figure."""
    seen: set[tuple[str, str]] = set()
    out = []
    for run in runs:
        key = (run.workload, run_label(run))
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out


@dataclass(frozen=True)
class BreakdownRow:
    """One runner's worker by mapping category (and its master's total), from the
    breakdown at the end of its measured window."""

    label: str
    run: Run
    worker: ProcessBreakdown
    master: ProcessBreakdown | None
    private: Mapping[str, int]
    """The worker's private bytes per category, in CATEGORIES order."""
    seconds: float

    @property
    def top(self) -> str | None:
        """The category holding most of the worker's private memory."""
        return max(self.private, key=lambda c: self.private[c]) if self.private else None


@dataclass(frozen=True)
class BreakdownView:
    """One workload: a worker's private memory by category, one bar per runner."""

    workload: str
    chart: str
    rows: tuple[BreakdownRow, ...]

    @property
    def height(self) -> int:
        return 90 + 30 * len(self.rows)


def _breakdown_row(run: Run) -> BreakdownRow | None:
    """The run's first worker by category; None without a worker."""
    assert run.breakdown is not None
    worker = _worker(run.breakdown.processes)
    if worker is None:
        return None
    return BreakdownRow(
        label=run_label(run),
        run=run,
        worker=worker,
        master=next((p for p in run.breakdown.processes if p.role == "master"), None),
        private={c: worker.categories[c].private for c in CATEGORIES if c in worker.categories},
        seconds=run.breakdown.seconds,
    )


def breakdown_views(runs: list[Run]) -> list[BreakdownView]:
    """Per workload: one worker's private memory by category, one bar per runner (the
    chart of the n-th workload with breakdowns is ``prof-mem-<n>``)."""
    chosen = _first_per_label(r for r in runs if r.ok and r.breakdown and not r.soak)
    views = []
    for index, workload in enumerate(dict.fromkeys(r.workload for r in chosen)):
        found = (_breakdown_row(run) for run in chosen if run.workload == workload)
        rows = tuple(row for row in found if row is not None)
        if rows:
            views.append(BreakdownView(workload, f"prof-mem-{index}", rows))
    return views


def _category_datasets(labels: int, bytes_of: Callable[[int, str], int]) -> list[JSON]:
    """One stacked dataset per category (MiB), ``bytes_of(bar, category)`` for each of
    ``labels`` bars."""
    return [
        {
            "label": category,
            "data": [_mib(bytes_of(bar, category)) for bar in range(labels)],
            "color": CATEGORY_COLORS[category],
            "textColor": TEXT_COLORS.get(category, "#1a1a1a"),
        }
        for category in CATEGORIES
    ]


def breakdown_chart(view: BreakdownView) -> JSON:
    """A worker's private memory by category, one stacked bar per runner."""
    rows = view.rows
    return {
        "kind": "memory",
        "labels": [row.label for row in rows],
        "datasets": _category_datasets(len(rows), lambda i, c: rows[i].private.get(c, 0)),
    }


def memory_profile_views(runs: list[Run]) -> list[JSON]:
    """Per ``--memory-profile`` run: its first worker's top sites, by package, and the
    change of object counts since the fork."""
    views = []
    for run in runs:
        profile = run.memory_profile
        if not run.ok or profile is None:
            continue
        workers = [p for p in profile.processes if p.role == "worker"] or list(profile.processes)
        if not workers:
            continue
        worker = workers[0]
        fork = profile.fork[0] if profile.fork else None
        views.append(
            {
                "label": run_label(run),
                "run": run,
                "worker": worker,
                "workers": len(workers),
                "sites": worker.top_lines[:TOP_SITES],
                "packages": worker.by_package,
                "fork": fork,
                "since_fork": (worker.objects_since_fork or ())[:TOP_SITES],
                "types": worker.objects_by_type[:TOP_SITES],
            }
        )
    return views


def _mean(values: list[int]) -> int:
    return round(sum(values) / len(values)) if values else 0


@dataclass(frozen=True)
class CategoryDecayRow:
    """The mean worker of a soak in one mapping category (bytes): shared at the start
    and the end, un-shared, private growth."""

    category: str
    shared_start: int
    shared_end: int
    unshared: int
    private_growth: int


@dataclass(frozen=True)
class SoakDecayView:
    """A soak run's mean worker per category and which category drove the decay;
    ``versus``: its heap un-shared per 1,000 requests against other soaks, in words."""

    run: Run
    rows: tuple[CategoryDecayRow, ...]
    driver: str | None
    workers: int
    versus: tuple[str, ...] = ()

    @property
    def python(self) -> str:
        return self.run.python.label if self.run.python else ""

    @property
    def title(self) -> str:
        return f"gc {self.run.gc}" + (f" · {self.python}" if self.python else "")

    @property
    def heap_per_1k(self) -> float | None:
        """Heap bytes un-shared per worker per 1,000 requests."""
        heap = next((row.unshared for row in self.rows if row.category == "heap"), 0)
        return heap / (self.run.requests / 1000) if self.run.requests else None

    @property
    def sentence(self) -> str:
        unshared = sum(row.unshared for row in self.rows)
        driver = next((row for row in self.rows if row.category == self.driver), None)
        if driver is None or not unshared:
            return "No category lost shared pages in any worker."
        return (
            f"{driver.category} drove the decay: {_mib(driver.unshared)} MiB of the "
            f"{_mib(unshared)} MiB a worker un-shared on average "
            f"({driver.unshared / unshared:.0%}); its private {driver.category} grew "
            f"{_mib(driver.private_growth)} MiB."
        )


def soak_view(run: Run, soak: SoakBreakdown) -> SoakDecayView:
    """A soak run's mean worker per category: shared start → end, un-shared, private growth."""
    rows = []
    for category in CATEGORIES:
        shifts = [w.categories[category] for w in soak.workers if category in w.categories]
        if shifts:
            rows.append(
                CategoryDecayRow(
                    category=category,
                    shared_start=_mean([s.shared_start for s in shifts]),
                    shared_end=_mean([s.shared_end for s in shifts]),
                    unshared=_mean([s.unshared for s in shifts]),
                    private_growth=_mean([s.private_growth for s in shifts]),
                )
            )
    return SoakDecayView(run=run, rows=tuple(rows), driver=soak.driver, workers=len(soak.workers))


def _change(value: float, base: float) -> str:
    return f"{value / base - 1:+.0%}" if base else "—"


def soak_versus(view: SoakDecayView, views: Sequence[SoakDecayView]) -> tuple[str, ...]:
    """The view's heap un-shared per worker per 1,000 requests against gc ``default`` on
    the same interpreter and against the first interpreter with the same gc mode (where
    3.12's immortal objects would show), as short sentences."""
    versus = []
    value = view.heap_per_1k
    gc = view.run.gc
    same_python = [v for v in views if v.python == view.python and v is not view]
    base = next((v for v in same_python if v.run.gc == "default"), None)
    if gc != "default" and base is not None and value is not None and base.heap_per_1k:
        versus.append(f"{_change(value, base.heap_per_1k)} vs gc default")
    first = next((v for v in views if v.run.gc == gc), None)
    if (
        first is not None
        and first.python != view.python
        and value is not None
        and first.heap_per_1k
    ):
        versus.append(f"{_change(value, first.heap_per_1k)} vs {first.python}")
    return tuple(versus)


@dataclass(frozen=True)
class ProfileSoakView:
    """What un-shared the soaks' pages: one view per soak run, one chart for all."""

    views: tuple[SoakDecayView, ...]
    chart: str = "prof-soak"

    @property
    def height(self) -> int:
        return 90 + 30 * len(self.views)


def soak_views(runs: list[Run]) -> ProfileSoakView | None:
    """Every ok soak run with a breakdown, each compared with the others; None: none."""
    views = [soak_view(r, r.soak_breakdown) for r in runs if r.ok and r.soak_breakdown]
    if not views:
        return None
    return ProfileSoakView(tuple(replace(v, versus=soak_versus(v, views)) for v in views))


def soak_chart(soak: ProfileSoakView) -> JSON:
    """Shared memory lost per worker by category, one stacked bar per soak run."""
    views = soak.views

    def unshared(bar: int, category: str) -> int:
        return next((r.unshared for r in views[bar].rows if r.category == category), 0)

    return {
        "kind": "memory",
        "labels": [v.title for v in views],
        "datasets": _category_datasets(len(views), unshared),
    }


def flamegraph_href(results_dir: Path, run: Run) -> str | None:
    profile = run.cpu_profile
    return safe_relative_href(results_dir, profile.flamegraph if profile else None)


def flamegraph_views(runs: list[Run], results_dir: Path) -> list[JSON]:
    """``--profile`` runs by workload, then runner: side by side in one table."""
    views = [
        {"label": run_label(run), "run": run, "href": flamegraph_href(results_dir, run)}
        for run in runs
        if run.cpu_profile is not None
    ]
    return sorted(views, key=lambda v: (v["run"].workload, v["label"]))


def flamegraph_grid(views: list[JSON]) -> JSON:
    """The flame graphs side by side: one row per workload, one column per runner label
    (None where that runner was not profiled on that workload)."""
    labels = list(dict.fromkeys(v["label"] for v in views))
    rows = []
    for workload in dict.fromkeys(v["run"].workload for v in views):
        by_label = {v["label"]: v for v in views if v["run"].workload == workload}
        rows.append({"workload": workload, "cells": [by_label.get(label) for label in labels]})
    return {"labels": labels, "rows": rows}


@dataclass(frozen=True)
class ProfileViews:
    """Everything ``_profiles.html.j2`` shows (empty or None: nothing to show)."""

    breakdowns: tuple[BreakdownView, ...]
    memory_profiles: list[JSON]
    soak: ProfileSoakView | None
    flamegraphs: list[JSON]
    flamegraph_grid: JSON


def profile_views(results: Results, results_dir: Path) -> ProfileViews:
    runs = list(results.runs)
    flamegraphs = flamegraph_views(runs, results_dir)
    return ProfileViews(
        breakdowns=tuple(breakdown_views(runs)),
        memory_profiles=memory_profile_views(runs),
        soak=soak_views(runs),
        flamegraphs=flamegraphs,
        flamegraph_grid=flamegraph_grid(flamegraphs),
    )


def profile_charts(views: ProfileViews) -> dict[str, JSON]:
    """The profile section's chart specs by id."""
    charts = {view.chart: breakdown_chart(view) for view in views.breakdowns}
    if views.soak is not None:
        charts[views.soak.chart] = soak_chart(views.soak)
    return charts
