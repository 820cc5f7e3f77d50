"""The runtime sections of a run report: interpreters and Django releases side
by side, what each gc mode did, and the soak picture.

Pure data work over the typed results: ``runtime_views`` shapes what
``templates/_runtimes.html.j2`` shows (``RuntimeViews``), and ``runtime_charts`` gives
its chart specs (drawn by ``static/report.js``) for the page's chart data.

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
from runners.report.formats import fmt_num
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
from runners.results.record import Run, SoakProcess

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


@dataclass(frozen=True)
class RuntimeGroup:
    """One runner x workload x users (x gc mode) on each runtime, baseline first."""

    title: str
    runner: str
    workload: str
    users: int
    gc: str
    rows: tuple[RuntimeRow, ...]

    @property
    def sentence(self) -> str:
        return _runtime_sentence(self.title, self.rows)


@dataclass(frozen=True)
class InterpreterView:
    """The interpreters (or Django releases) side by side: every group that ran on
    several, the runtimes oldest first (the first is the baseline of the ratios)."""

    heading: str
    dimension: str
    """What differs: ``interpreter``, ``Django`` or ``interpreter and Django``."""
    runtimes: tuple[str, ...]
    groups: tuple[RuntimeGroup, ...]
    chart: str = "rt-rpg"

    @property
    def baseline(self) -> str:
        return self.runtimes[0]

    @property
    def height(self) -> int:
        return 70 + len(self.groups) * len(self.runtimes) * 22


def _runtime_groups(
    cells: Sequence[Cell], label: Callable[[Cell], str]
) -> tuple[RuntimeGroup, ...]:
    """The runner x workload x users (x gc mode) groups whose cells ran on several
    runtimes (labelled by ``label``)."""
    groups: dict[tuple[str, int, str, str, tuple[str, ...]], list[Cell]] = {}
    for cell in cells:
        key = (cell.workload, cell.users, cell.runner, cell.gc, cell.sweep)
        groups.setdefault(key, []).append(cell)
    with_gc = several(gc for _, _, _, gc, _ in groups)
    views = []
    for (workload, users, runner, gc, sweep), group in groups.items():
        if len({label(c) for c in group}) < 2:
            continue
        title = " · ".join(
            [runner, *map(sweep_text, sweep), workload, f"{users} users"]
            + ([f"gc {gc}"] if with_gc else [])
        )
        rows = tuple(_runtime_rows(group, label))
        views.append(RuntimeGroup(title, runner, workload, users, gc, rows))
    return tuple(views)


def interpreter_view(cells: Sequence[Cell]) -> InterpreterView | None:
    """Runtimes side by side, or None when every run had the same interpreter and
    Django, or no group ran on several."""
    with_python = several(c.python for c in cells)
    with_django = several(c.django for c in cells)
    if not with_python and not with_django:
        return None

    def label(cell: Cell) -> str:
        return runtime_label(cell, with_python, with_django)

    groups = _runtime_groups(cells, label)
    if not groups:
        return None
    runtimes = sorted(
        {label(c) for c in cells},
        key=lambda text: min(
            (version_key(c.python), version_key(c.django)) for c in cells if label(c) == text
        ),
    )
    heading = {
        (True, False): "Interpreters side by side",
        (False, True): "Django releases side by side",
        (True, True): "Interpreters and Django releases side by side",
    }[(with_python, with_django)]
    dimension = " and ".join(
        [n for n, on in (("interpreter", with_python), ("Django", with_django)) if on]
    )
    return InterpreterView(heading, dimension, tuple(runtimes), groups)


def interpreter_chart(view: InterpreterView) -> JSON:
    """Requests/s per GiB of every group, one bar per runtime."""
    return {
        "kind": "rpsPerGib",
        "labels": [g.title for g in view.groups],
        "datasets": [
            {
                "label": runtime,
                "data": [_rounded(_row_value(g.rows, runtime)) for g in view.groups],
                "texts": [fmt_num(_row_value(g.rows, runtime)) for g in view.groups],
                "flags": ["" for _ in view.groups],
                "colors": [RUNNER_COLORS[i % len(RUNNER_COLORS)] for _ in view.groups],
                "color": RUNNER_COLORS[i % len(RUNNER_COLORS)],
            }
            for i, runtime in enumerate(view.runtimes)
        ],
        "grace": "15%",
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


@dataclass(frozen=True)
class GcRow:
    """One gc mode of a group: its figures and their ratios to the baseline mode's."""

    cell: Cell
    baseline: bool
    pss: float | None
    rps: float | None
    rps_per_gib: float | None
    p99: float | None
    pss_ratio: float | None
    rpg_ratio: float | None


@dataclass(frozen=True)
class GcGroup:
    """One runner x workload x users (x runtime) under several gc modes, compared with
    the ``baseline`` mode (``default``, or the first that ran)."""

    title: str
    users: int
    baseline: str
    rows: tuple[GcRow, ...]
    soak: bool
    repeats: int
    """The fewest ok repetitions of a mode."""

    @property
    def sentences(self) -> list[str]:
        """What each mode did against the baseline, in words."""
        base = next(r for r in self.rows if r.baseline)
        return [_gc_sentence(self.title, row, base) for row in self.rows if not row.baseline]


def _gc_row(cell: Cell, base: Cell) -> GcRow:
    pss, rpg = _mean(cell.pss_peak_bytes), _mean(cell.rps_per_gib)
    return GcRow(
        cell=cell,
        baseline=cell is base,
        pss=pss,
        rps=_mean(cell.rps),
        rps_per_gib=rpg,
        p99=_mean(cell.latency["p99"]),
        pss_ratio=_ratio(pss, _mean(base.pss_peak_bytes)),
        rpg_ratio=_ratio(rpg, _mean(base.rps_per_gib)),
    )


def _gc_sentence(title: str, row: GcRow, base: GcRow) -> str:
    """``gc freeze used 12% less summed PSS (104 vs 118 MiB) and gave ...``."""
    gc = row.cell.gc
    if row.pss_ratio is None or row.rpg_ratio is None or row.pss is None or base.pss is None:
        return f"{title}: gc {gc} has no figures to compare."
    return (
        f"{title}: gc {gc} used {_pss_words(row.pss_ratio)} "
        f"({row.pss / MIB:,.0f} vs {base.pss / MIB:,.0f} MiB) and gave "
        f"{_rpg_words(row.rpg_ratio)} ({row.rps_per_gib or 0:,.0f} vs "
        f"{base.rps_per_gib or 0:,.0f}) than gc {base.cell.gc}."
    )


def _gc_title(runner: str, sweep: tuple[str, ...], workload: str, runtime: str) -> str:
    return ", ".join([runner, *map(sweep_text, sweep), workload]) + (
        f" ({runtime})" if runtime else ""
    )


def gc_view(cells: Sequence[Cell]) -> tuple[GcGroup, ...]:
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
        views.append(
            GcGroup(
                title=_gc_title(runner, sweep, workload, runtime),
                users=users,
                baseline=base.gc,
                rows=tuple(_gc_row(cell, base) for cell in ordered),
                soak=any(r.soak for c in group for r in c.runs),
                repeats=min(len(c.ok_runs) for c in group),
            )
        )
    return tuple(views)


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


@dataclass(frozen=True)
class SoakProcessRow:
    """One process of a soak run: its shared (RSS - USS) and private (USS) bytes when
    the server was ready and at the end of the load."""

    name: str
    pid: int
    role: str
    shared_start: int | None
    shared_end: int | None
    private_start: int | None
    private_end: int | None

    @property
    def shared_change(self) -> float | None:
        return _change(self.shared_start, self.shared_end)

    @property
    def private_change(self) -> float | None:
        return _change(self.private_start, self.private_end)


@dataclass(frozen=True)
class SoakFigures:
    """A soak run's mean worker and summed PSS at the start and the end, in bytes."""

    workers: int
    shared_start: int | None
    shared_end: int | None
    private_start: int | None
    private_end: int | None
    pss_start: int | None
    pss_end: int | None
    requests: int
    seconds: float
    ended_by: str | None
    target: float | None


@dataclass(frozen=True)
class SoakRunView:
    """One soak run: each process's start and end, and the mean worker over time
    (``t`` in seconds, bytes per sample)."""

    run: Run
    title: str
    gc: str
    python: str
    runtime: str
    chart: str
    rows: tuple[SoakProcessRow, ...]
    t: tuple[float, ...]
    mean_shared: tuple[int | None, ...]
    mean_private: tuple[int | None, ...]
    summary: SoakFigures


@dataclass(frozen=True)
class SoakRuntimeSummary:
    """The soak runs of one interpreter (and Django): the mean worker under every gc
    mode, shared memory on one chart and private memory on another."""

    runtime: str
    shared_chart: str
    private_chart: str
    views: tuple[SoakRunView, ...]

    @property
    def sentences(self) -> list[str]:
        return _soak_sentences(self.views)


@dataclass(frozen=True)
class SoakView:
    runs: tuple[SoakRunView, ...]
    summaries: tuple[SoakRuntimeSummary, ...]


def _soak_process_row(proc: SoakProcess) -> SoakProcessRow:
    return SoakProcessRow(
        name=proc.name,
        pid=proc.pid,
        role=proc.role,
        shared_start=_first(proc.shared),
        shared_end=_last(proc.shared),
        private_start=_first(proc.uss),
        private_end=_last(proc.uss),
    )


def _soak_run_view(index: int, run: Run, runtime: str, python: str) -> SoakRunView:
    """Soak run number ``index`` (its chart is ``soak-<index>``) on ``runtime`` (the
    interpreter and Django, where the soak runs differ in them)."""
    series = run.soak_series
    assert series is not None
    t = tuple(float(x) for x in series.t)
    processes = list(series.processes)
    workers = [p for p in processes if p.role == "worker"]
    mean_shared = tuple(_mean_series(t, workers, "shared"))
    mean_uss = tuple(_mean_series(t, workers, "uss"))
    pss_total = [sum(v for p in processes if (v := p.pss[i]) is not None) for i in range(len(t))]
    return SoakRunView(
        run=run,
        title=f"gc {run.gc}" + (f" · {runtime}" if runtime else ""),
        gc=run.gc,
        python=python,
        runtime=runtime,
        chart=f"soak-{index}",
        rows=tuple(_soak_process_row(p) for p in processes),
        t=t,
        mean_shared=mean_shared,
        mean_private=mean_uss,
        summary=SoakFigures(
            workers=len(workers),
            shared_start=_first(mean_shared),
            shared_end=_last(mean_shared),
            private_start=_first(mean_uss),
            private_end=_last(mean_uss),
            pss_start=pss_total[0] if pss_total else None,
            pss_end=pss_total[-1] if pss_total else None,
            requests=run.requests,
            seconds=t[-1] if t else 0.0,
            ended_by=series.ended_by,
            target=series.target_requests or series.target_duration_s,
        ),
    )


def soak_view(results: Results) -> SoakView | None:
    """Per-worker shared and private memory over time for every soak run, and per
    interpreter (and Django) the mean worker under every gc mode."""
    env = results.environment
    runs = [r for r in results.runs if r.soak_series and r.ok]
    if not runs:
        return None
    with_python = several(python_label(r, env.python) for r in runs)
    with_django = several(django_label(r, env.packages) for r in runs)
    views = []
    for index, run in enumerate(runs):
        python = python_label(run, env.python)
        django = django_label(run, env.packages)
        runtime = ", ".join(
            [text for text, on in ((python, with_python), (f"Django {django}", with_django)) if on]
        )
        views.append(_soak_run_view(index, run, runtime, python))
    by_runtime: dict[str, list[SoakRunView]] = {}
    for view in views:
        by_runtime.setdefault(view.runtime, []).append(view)
    summaries = [
        SoakRuntimeSummary(runtime, f"soak-shared-{n}", f"soak-private-{n}", tuple(group))
        for n, (runtime, group) in enumerate(by_runtime.items())
    ]
    return SoakView(tuple(views), tuple(summaries))


def _soak_run_chart(view: SoakRunView) -> JSON:
    """Each worker's shared (solid) and private (dashed) memory over time."""
    series = view.run.soak_series
    assert series is not None
    workers = [p for p in series.processes if p.role == "worker"]
    datasets = []
    for n, proc in enumerate(workers):
        color = RUNNER_COLORS[n % len(RUNNER_COLORS)]
        for key, what, dash in (("shared", "shared", False), ("uss", "private", True)):
            datasets.append(
                {
                    "label": f"{proc.name} {what}",
                    "data": _points(view.t, getattr(proc, key)),
                    "color": color,
                    "dash": dash,
                }
            )
    return {
        "kind": "soakTime",
        "datasets": datasets,
        "yTitle": "MiB per worker",
        "windowStart": series.window_start_s,
    }


def _soak_mean_chart(summary: SoakRuntimeSummary, what: str) -> JSON:
    """The mean worker's ``shared`` or ``private`` memory over time, one line per gc mode."""
    return {
        "kind": "soakTime",
        "datasets": [
            {
                "label": f"gc {view.gc}",
                "data": _points(
                    view.t, view.mean_shared if what == "shared" else view.mean_private
                ),
                "color": GC_COLORS.get(view.gc, RUNNER_COLORS[i % len(RUNNER_COLORS)]),
                "dash": False,
            }
            for i, view in enumerate(summary.views)
        ],
        "yTitle": f"{what} MiB, mean worker",
    }


def soak_charts(view: SoakView) -> dict[str, JSON]:
    """The soak section's chart specs by id: one per run, two per runtime."""
    charts = {run.chart: _soak_run_chart(run) for run in view.runs}
    for summary in view.summaries:
        charts[summary.shared_chart] = _soak_mean_chart(summary, "shared")
        charts[summary.private_chart] = _soak_mean_chart(summary, "private")
    return charts


def _soak_sentences(views: Sequence[SoakRunView]) -> list[str]:
    out = []
    for view in views:
        s = view.summary
        if s.shared_start is None or s.shared_end is None:
            continue
        out.append(
            f"gc {view.gc}: over {s.requests:,} requests ({s.seconds:.0f} s), the mean "
            f"worker's shared memory went from {s.shared_start / MIB:.1f} to "
            f"{s.shared_end / MIB:.1f} MiB and its private memory from "
            f"{(s.private_start or 0) / MIB:.1f} to {(s.private_end or 0) / MIB:.1f} MiB; "
            f"summed PSS from {(s.pss_start or 0) / MIB:.1f} to "
            f"{(s.pss_end or 0) / MIB:.1f} MiB."
        )
    return out


# --- all of it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeViews:
    """The three runtime sections (each None or empty when it has nothing to show)."""

    interpreters: InterpreterView | None
    gc: tuple[GcGroup, ...]
    soak: SoakView | None


def runtime_views(results: Results, cells: Sequence[Cell]) -> RuntimeViews:
    return RuntimeViews(
        interpreters=interpreter_view(cells),
        gc=gc_view(cells),
        soak=soak_view(results),
    )


def runtime_charts(views: RuntimeViews) -> dict[str, JSON]:
    """The runtime sections' chart specs by id."""
    charts = {}
    if views.interpreters is not None:
        charts[views.interpreters.chart] = interpreter_chart(views.interpreters)
    if views.soak is not None:
        charts |= soak_charts(views.soak)
    return charts
