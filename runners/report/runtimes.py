"""The runtime sections of a run report: interpreters and Django releases side
by side, what each gc mode did, and the soak picture.

Pure data work over the typed results: ``runtime_views`` shapes what
``templates/_runtimes.html.j2`` shows and adds its chart specs (drawn by
``static/report.js``) to the page's chart data.

- **Interpreters / Django** (when runs differ by either): per runner x
  workload x users (x gc mode), one row per runtime with requests/s, p99,
  summed PSS at its peak and requests/s per GiB, and each as a ratio to the
  baseline runtime (the oldest interpreter, then the oldest Django).
- **gc modes** (when the same runner x workload x users x runtime ran under
  several): a sentence per mode computed from the data, e.g. "gc freeze used
  12% less summed PSS (104 vs 118 MiB) and gave 9% more requests/s per GiB
  than gc default", and the table behind it.
- **Soak** (runs with ``soak_series``): per run, each worker's shared
  (RSS - USS) and private (USS) memory over time; per interpreter, the mean
  worker's shared and private memory for every gc mode on one chart; and the
  start (server ready, before any request) and end figures as tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runners.report.colors import GC_COLORS, RUNNER_COLORS
from runners.report.ranking import sweep_text
from runners.results.cells import (
    GC_ORDER,
    Cell,
    Stat,
    django_label,
    python_label,
    several,
    version_key,
)
from runners.results.document import Results
from runners.results.figures import MIB
from runners.results.record import SoakProcess

JSON = dict[str, Any]
SAME = 0.005
"""Relative changes smaller than this are told as 'the same'."""


def _mean(value: Stat | None) -> float | None:
    return value.mean if value is not None else None


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def _mib(value: float | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


# --- interpreters and Django releases -----------------------------------------------------------


def runtime_label(cell: Cell, with_python: bool, with_django: bool) -> str:
    parts = []
    if with_python:
        parts.append(cell.python)
    if with_django:
        parts.append(f"Django {cell.django}")
    return ", ".join(parts) or cell.python


@dataclass(frozen=True)
class RuntimeRow:
    runtime: str
    cell: Cell
    baseline: bool
    rps: float | None
    p99: float | None
    pss: float | None
    rps_per_gib: float | None
    ratios: dict[str, float | None]


def _runtime_rows(cells: Sequence[Cell], label: Callable[[Cell], str]) -> list[RuntimeRow]:
    ordered = sorted(cells, key=lambda c: (version_key(c.python), version_key(c.django)))
    base = ordered[0]
    rows = []
    for cell in ordered:
        figures = {
            "rps": _mean(cell.rps),
            "p99": _mean(cell.latency["p99"]),
            "pss": _mean(cell.pss_peak_bytes),
            "rps_per_gib": _mean(cell.rps_per_gib),
        }
        base_figures = {
            "rps": _mean(base.rps),
            "p99": _mean(base.latency["p99"]),
            "pss": _mean(base.pss_peak_bytes),
            "rps_per_gib": _mean(base.rps_per_gib),
        }
        rows.append(
            RuntimeRow(
                runtime=label(cell),
                cell=cell,
                baseline=cell is base,
                ratios={k: _ratio(v, base_figures[k]) for k, v in figures.items()},
                **figures,
            )
        )
    return rows


def interpreter_view(cells: Sequence[Cell], charts: dict[str, JSON]) -> JSON | None:
    """Runtimes side by side, or None when every run had the same interpreter and Django."""
    with_python = several(c.python for c in cells)
    with_django = several(c.django for c in cells)
    if not with_python and not with_django:
        return None

    def label(cell: Cell) -> str:
        return runtime_label(cell, with_python, with_django)

    groups: dict[tuple[str, int, str, str, tuple[str, ...]], list[Cell]] = {}
    for cell in cells:
        key = (cell.workload, cell.users, cell.runner, cell.gc, cell.sweep)
        groups.setdefault(key, []).append(cell)
    with_gc = several(gc for _, _, _, gc, _ in groups)
    runtimes = sorted(
        {label(c) for c in cells},
        key=lambda text: min(
            (version_key(c.python), version_key(c.django)) for c in cells if label(c) == text
        ),
    )
    views: list[JSON] = []
    for (workload, users, runner, gc, sweep), group in groups.items():
        if len({label(c) for c in group}) < 2:
            continue
        rows = _runtime_rows(group, label)
        title = " · ".join(
            [runner, *map(sweep_text, sweep), workload, f"{users} users"]
            + ([f"gc {gc}"] if with_gc else [])
        )
        views.append(
            {
                "title": title,
                "runner": runner,
                "workload": workload,
                "users": users,
                "gc": gc,
                "rows": rows,
                "sentence": _runtime_sentence(title, rows),
            }
        )
    if not views:
        return None
    chart_id = "rt-rpg"
    charts[chart_id] = {
        "kind": "rpsPerGib",
        "labels": [v["title"] for v in views],
        "datasets": [
            {
                "label": runtime,
                "data": [_rounded(_row_value(v["rows"], runtime)) for v in views],
                "flags": ["" for _ in views],
                "colors": [RUNNER_COLORS[i % len(RUNNER_COLORS)] for _ in views],
                "color": RUNNER_COLORS[i % len(RUNNER_COLORS)],
            }
            for i, runtime in enumerate(runtimes)
        ],
        "grace": "15%",
    }
    heading = {
        (True, False): "Interpreters side by side",
        (False, True): "Django releases side by side",
        (True, True): "Interpreters and Django releases side by side",
    }[(with_python, with_django)]
    return {
        "heading": heading,
        "dimension": " and ".join(
            [n for n, on in (("interpreter", with_python), ("Django", with_django)) if on]
        ),
        "runtimes": runtimes,
        "baseline": runtimes[0],
        "groups": views,
        "chart": chart_id,
        "height": 70 + len(views) * len(runtimes) * 22,
    }


def _row_value(rows: Sequence[RuntimeRow], runtime: str) -> float | None:
    return next((r.rps_per_gib for r in rows if r.runtime == runtime), None)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _change_words(ratio: float, more: str, less: str) -> str:
    change = ratio - 1
    if abs(change) < SAME:
        return "the same"
    return f"{abs(change):.0%} {more if change > 0 else less}"


def _runtime_sentence(title: str, rows: Sequence[RuntimeRow]) -> str:
    base = rows[0]
    parts = []
    for row in rows[1:]:
        rps = row.ratios["rps"]
        rpg = row.ratios["rps_per_gib"]
        pss = row.ratios["pss"]
        if rps is None or rpg is None or pss is None:
            parts.append(f"{row.runtime}: no figures")
            continue
        parts.append(
            f"{row.runtime} served {_change_words(rps, 'more', 'fewer')} requests/s "
            f"({row.rps:,.0f} vs {base.rps:,.0f}), used {_change_words(pss, 'more', 'less')} "
            f"summed PSS ({_mib(row.pss)} vs {_mib(base.pss)} MiB) and so gave "
            f"{rpg:.2f}× the requests/s per GiB of {base.runtime}"
        )
    return f"{title}: " + "; ".join(parts) + "."


# --- gc modes ------------------------------------------------------------------------------------


def _pss_words(ratio: float) -> str:
    change = ratio - 1
    if abs(change) < SAME:
        return "the same summed PSS"
    return f"{abs(change):.0%} {'more' if change > 0 else 'less'} summed PSS"


def _rpg_words(ratio: float) -> str:
    change = ratio - 1
    if abs(change) < SAME:
        return "the same requests/s per GiB"
    return f"{abs(change):.0%} {'more' if change > 0 else 'fewer'} requests/s per GiB"


def gc_view(cells: Sequence[Cell]) -> JSON | None:
    """What each gc mode did to summed PSS and requests/s per GiB, compared with the
    default (or the first mode that ran), for every cell that ran under several."""
    with_python = several(c.python for c in cells)
    with_django = several(c.django for c in cells)
    groups: dict[tuple[str, int, str, str, str, tuple[str, ...]], list[Cell]] = {}
    for cell in cells:
        key = (cell.workload, cell.users, cell.runner, cell.python, cell.django, cell.sweep)
        groups.setdefault(key, []).append(cell)
    views = []
    for (workload, users, runner, _python, _django, sweep), group in groups.items():
        if len({c.gc for c in group}) < 2:
            continue
        ordered = sorted(group, key=lambda c: GC_ORDER.index(c.gc) if c.gc in GC_ORDER else 9)
        base = next((c for c in ordered if c.gc == "default"), ordered[0])
        runtime = (
            runtime_label(base, with_python, with_django) if (with_python or with_django) else ""
        )
        title = ", ".join([runner, *map(sweep_text, sweep), workload]) + (
            f" ({runtime})" if runtime else ""
        )
        soak = any(r.soak for c in group for r in c.runs)
        rows = []
        sentences = []
        for cell in ordered:
            pss, base_pss = _mean(cell.pss_peak_bytes), _mean(base.pss_peak_bytes)
            rpg, base_rpg = _mean(cell.rps_per_gib), _mean(base.rps_per_gib)
            rows.append(
                {
                    "cell": cell,
                    "baseline": cell is base,
                    "pss": pss,
                    "rps": _mean(cell.rps),
                    "rps_per_gib": rpg,
                    "p99": _mean(cell.latency["p99"]),
                    "pss_ratio": _ratio(pss, base_pss),
                    "rpg_ratio": _ratio(rpg, base_rpg),
                }
            )
            if cell is base:
                continue
            pss_ratio, rpg_ratio = _ratio(pss, base_pss), _ratio(rpg, base_rpg)
            if pss_ratio is None or rpg_ratio is None or pss is None or base_pss is None:
                sentences.append(f"{title}: gc {cell.gc} has no figures to compare.")
                continue
            sentences.append(
                f"{title}: gc {cell.gc} used {_pss_words(pss_ratio)} "
                f"({pss / MIB:,.0f} vs {base_pss / MIB:,.0f} MiB) and gave "
                f"{_rpg_words(rpg_ratio)} ({rpg or 0:,.0f} vs {base_rpg or 0:,.0f}) "
                f"than gc {base.gc}."
            )
        views.append(
            {
                "title": title,
                "users": users,
                "baseline": base.gc,
                "rows": rows,
                "sentences": sentences,
                "soak": soak,
                "repeats": min(len(c.ok_runs) for c in group),
            }
        )
    return {"groups": views} if views else None


# --- soak ----------------------------------------------------------------------------------------


def _first(values: Sequence[int | None]) -> int | None:
    return next((v for v in values if v is not None), None)


def _last(values: Sequence[int | None]) -> int | None:
    return next((v for v in reversed(values) if v is not None), None)


def _points(t: Sequence[float], values: Sequence[int | None]) -> list[JSON]:
    return [
        {"x": round(x, 2), "y": round(v / MIB, 1)}
        for x, v in zip(t, values, strict=False)
        if v is not None
    ]


def _mean_series(
    t: Sequence[float], processes: Sequence[SoakProcess], key: str
) -> list[int | None]:
    out: list[int | None] = []
    for i in range(len(t)):
        series = [getattr(p, key) for p in processes]
        values = [s[i] for s in series if i < len(s) and s[i] is not None]
        out.append(round(sum(values) / len(values)) if values else None)
    return out


def _change(start: int | None, end: int | None) -> float | None:
    if start is None or end is None or start == 0:
        return None
    return (end - start) / start


def soak_view(results: Results, charts: dict[str, JSON]) -> JSON | None:
    """Per-worker shared and private memory over time for every soak run."""
    env = results.environment
    runs = [r for r in results.runs if r.soak_series and r.ok]
    if not runs:
        return None
    with_python = several(python_label(r, env.python) for r in runs)
    with_django = several(django_label(r, env.packages) for r in runs)
    views: list[JSON] = []
    for index, run in enumerate(runs):
        series = run.soak_series
        assert series is not None
        t = [float(x) for x in series.t]
        processes = list(series.processes)
        workers = [p for p in processes if p.role == "worker"]
        python = python_label(run, env.python)
        django = django_label(run, env.packages)
        runtime = ", ".join(
            [text for text, on in ((python, with_python), (f"Django {django}", with_django)) if on]
        )
        gc = run.gc
        title = f"gc {gc}" + (f" · {runtime}" if runtime else "")
        rows = []
        for proc in processes:
            shared0, shared1 = _first(proc.shared), _last(proc.shared)
            uss0, uss1 = _first(proc.uss), _last(proc.uss)
            rows.append(
                {
                    "name": proc.name,
                    "pid": proc.pid,
                    "role": proc.role,
                    "shared_start": shared0,
                    "shared_end": shared1,
                    "shared_change": _change(shared0, shared1),
                    "private_start": uss0,
                    "private_end": uss1,
                    "private_change": _change(uss0, uss1),
                }
            )
        datasets = []
        for n, proc in enumerate(workers):
            color = RUNNER_COLORS[n % len(RUNNER_COLORS)]
            for key, what, dash in (("shared", "shared", False), ("uss", "private", True)):
                points = _points(t, getattr(proc, key))
                datasets.append(
                    {
                        "label": f"{proc.name} {what}",
                        "data": points,
                        "color": color,
                        "dash": dash,
                    }
                )
        chart_id = f"soak-{index}"
        charts[chart_id] = {
            "kind": "soakTime",
            "datasets": datasets,
            "yTitle": "MiB per worker",
            "windowStart": series.window_start_s,
        }
        mean_shared = _mean_series(t, workers, "shared")
        mean_uss = _mean_series(t, workers, "uss")
        pss_total = [
            sum(v for p in processes if (v := p.pss[i]) is not None) for i in range(len(t))
        ]
        views.append(
            {
                "run": run,
                "title": title,
                "gc": gc,
                "python": python,
                "runtime": runtime,
                "chart": chart_id,
                "rows": rows,
                "t": t,
                "mean_shared": mean_shared,
                "mean_private": mean_uss,
                "summary": {
                    "workers": len(workers),
                    "shared_start": _first(mean_shared),
                    "shared_end": _last(mean_shared),
                    "private_start": _first(mean_uss),
                    "private_end": _last(mean_uss),
                    "pss_start": pss_total[0] if pss_total else None,
                    "pss_end": pss_total[-1] if pss_total else None,
                    "requests": run.requests,
                    "seconds": t[-1] if t else 0.0,
                    "ended_by": series.ended_by,
                    "target": series.target_requests or series.target_duration_s,
                },
            }
        )
    # Per interpreter (and Django): the mean worker under every gc mode, shared memory
    # on one chart and private memory on another (each with its own scale).
    by_runtime: dict[str, list[JSON]] = {}
    for view in views:
        by_runtime.setdefault(view["runtime"], []).append(view)
    summaries = []
    for n, (runtime, group) in enumerate(by_runtime.items()):
        chart_ids = {}
        for key, what in (("mean_shared", "shared"), ("mean_private", "private")):
            chart_id = f"soak-{what}-{n}"
            charts[chart_id] = {
                "kind": "soakTime",
                "datasets": [
                    {
                        "label": f"gc {view['gc']}",
                        "data": _points(view["t"], view[key]),
                        "color": GC_COLORS.get(view["gc"], RUNNER_COLORS[i % len(RUNNER_COLORS)]),
                        "dash": False,
                    }
                    for i, view in enumerate(group)
                ],
                "yTitle": f"{what} MiB, mean worker",
            }
            chart_ids[what] = chart_id
        summaries.append(
            {
                "runtime": runtime,
                "charts": chart_ids,
                "views": group,
                "sentences": _soak_sentences(group),
            }
        )
    return {"runs": views, "summaries": summaries}


def _soak_sentences(views: Sequence[JSON]) -> list[str]:
    out = []
    for view in views:
        s = view["summary"]
        if s["shared_start"] is None or s["shared_end"] is None:
            continue
        out.append(
            f"gc {view['gc']}: over {s['requests']:,} requests ({s['seconds']:.0f} s), the mean "
            f"worker's shared memory went from {s['shared_start'] / MIB:.1f} to "
            f"{s['shared_end'] / MIB:.1f} MiB and its private memory from "
            f"{(s['private_start'] or 0) / MIB:.1f} to {(s['private_end'] or 0) / MIB:.1f} MiB; "
            f"summed PSS from {(s['pss_start'] or 0) / MIB:.1f} to "
            f"{(s['pss_end'] or 0) / MIB:.1f} MiB."
        )
    return out


# --- all of it -----------------------------------------------------------------------------------


def runtime_views(results: Results, cells: Sequence[Cell], charts: dict[str, JSON]) -> JSON:
    """The three runtime sections (each None when it has nothing to show)."""
    return {
        "interpreters": interpreter_view(cells, charts),
        "gc": gc_view(cells),
        "soak": soak_view(results, charts),
    }
