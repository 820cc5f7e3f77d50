"""What the run page shows of the profiles (``runners.bench.profiles``): a worker's
private memory by mapping category for every runner side by side, the top
allocation sites of ``--memory-profile`` runs with what the workers inherited at
the fork, which category drove a soak's copy-on-write decay (per gc mode and
interpreter), and the flame graphs of ``--profile`` runs, side by side per workload
(uvicorn's ``json`` next to gthread's). The template is ``templates/_profiles.html.j2``.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def breakdown_views(runs: list[Run], charts: dict[str, JSON]) -> list[JSON]:
    """Per workload: one worker's private memory by category, one bar per runner."""
    chosen = _first_per_label(r for r in runs if r.ok and r.breakdown and not r.soak)
    views = []
    for index, workload in enumerate(dict.fromkeys(r.workload for r in chosen)):
        rows: list[JSON] = []
        for run in (r for r in chosen if r.workload == workload):
            assert run.breakdown is not None
            worker = _worker(run.breakdown.processes)
            if worker is None:
                continue
            master = next((p for p in run.breakdown.processes if p.role == "master"), None)
            private = {
                c: worker.categories[c].private for c in CATEGORIES if c in worker.categories
            }
            top = max(private, key=lambda c: private[c]) if private else None
            rows.append(
                {
                    "label": run_label(run),
                    "run": run,
                    "worker": worker,
                    "master": master,
                    "private": private,
                    "top": top,
                    "seconds": run.breakdown.seconds,
                }
            )
        if not rows:
            continue
        chart = f"prof-mem-{index}"
        charts[chart] = {
            "kind": "memory",
            "labels": [row["label"] for row in rows],
            "datasets": [
                {
                    "label": category,
                    "data": [_mib(row["private"].get(category, 0)) for row in rows],
                    "color": CATEGORY_COLORS[category],
                    "textColor": TEXT_COLORS.get(category, "#1a1a1a"),
                }
                for category in CATEGORIES
            ],
        }
        views.append(
            {"workload": workload, "chart": chart, "rows": rows, "height": 90 + 30 * len(rows)}
        )
    return views


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


def soak_view(run: Run, soak: SoakBreakdown) -> JSON:
    """A soak run's mean worker per category: shared start → end, un-shared, private growth."""
    rows: list[JSON] = []
    for category in CATEGORIES:
        shifts = [w.categories[category] for w in soak.workers if category in w.categories]
        if not shifts:
            continue
        rows.append(
            {
                "category": category,
                "shared_start": _mean([s.shared_start for s in shifts]),
                "shared_end": _mean([s.shared_end for s in shifts]),
                "unshared": _mean([s.unshared for s in shifts]),
                "private_growth": _mean([s.private_growth for s in shifts]),
            }
        )
    unshared = sum(row["unshared"] for row in rows)
    driver = next((row for row in rows if row["category"] == soak.driver), None)
    if driver is None or not unshared:
        sentence = "No category lost shared pages in any worker."
    else:
        sentence = (
            f"{driver['category']} drove the decay: {_mib(driver['unshared'])} MiB of the "
            f"{_mib(unshared)} MiB a worker un-shared on average "
            f"({driver['unshared'] / unshared:.0%}); its private {driver['category']} grew "
            f"{_mib(driver['private_growth'])} MiB."
        )
    python = run.python.label if run.python else ""
    heap = next((row["unshared"] for row in rows if row["category"] == "heap"), 0)
    return {
        "run": run,
        "python": python,
        "heap_per_1k": heap / (run.requests / 1000) if run.requests else None,
        "title": f"gc {run.gc}" + (f" · {python}" if python else ""),
        "rows": rows,
        "driver": soak.driver,
        "sentence": sentence,
        "workers": len(soak.workers),
    }


def _change(value: float, base: float) -> str:
    return f"{value / base - 1:+.0%}" if base else "—"


def soak_comparisons(views: list[JSON]) -> None:
    """Each view's heap un-shared per worker per 1,000 requests against gc ``default`` on
    the same interpreter and against the first interpreter with the same gc mode (where
    3.12's immortal objects would show), as ``versus``: a list of short sentences."""
    for view in views:
        versus = []
        value = view["heap_per_1k"]
        gc = view["run"].gc
        same_python = [v for v in views if v["python"] == view["python"] and v is not view]
        base = next((v for v in same_python if v["run"].gc == "default"), None)
        if gc != "default" and base is not None and value is not None and base["heap_per_1k"]:
            versus.append(f"{_change(value, base['heap_per_1k'])} vs gc default")
        first = next((v for v in views if v["run"].gc == gc), None)
        if (
            first is not None
            and first["python"] != view["python"]
            and value is not None
            and first["heap_per_1k"]
        ):
            versus.append(f"{_change(value, first['heap_per_1k'])} vs {first['python']}")
        view["versus"] = versus


def soak_views(runs: list[Run], charts: dict[str, JSON]) -> JSON | None:
    views = [soak_view(r, r.soak_breakdown) for r in runs if r.ok and r.soak_breakdown]
    if not views:
        return None
    soak_comparisons(views)
    charts["prof-soak"] = {
        "kind": "memory",
        "labels": [v["title"] for v in views],
        "datasets": [
            {
                "label": category,
                "data": [
                    _mib(next((r["unshared"] for r in v["rows"] if r["category"] == category), 0))
                    for v in views
                ],
                "color": CATEGORY_COLORS[category],
                "textColor": TEXT_COLORS.get(category, "#1a1a1a"),
            }
            for category in CATEGORIES
        ],
    }
    return {"views": views, "chart": "prof-soak", "height": 90 + 30 * len(views)}


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


def profile_views(results: Results, charts: dict[str, JSON], results_dir: Path) -> JSON:
    """Everything ``_profiles.html.j2`` shows (empty lists: nothing to show)."""
    runs = list(results.runs)
    flamegraphs = flamegraph_views(runs, results_dir)
    return {
        "breakdowns": breakdown_views(runs, charts),
        "memory_profiles": memory_profile_views(runs),
        "soak": soak_views(runs, charts),
        "flamegraphs": flamegraphs,
        "flamegraph_grid": flamegraph_grid(flamegraphs),
    }
