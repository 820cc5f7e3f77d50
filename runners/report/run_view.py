"""What the run page shows: per workload its view (``WorkloadView``) and chart specs,
the headline, the runs table, and the context of ``templates/run.html.j2`` that
``run_context`` assembles from them and from the runtime and profile sections.

Pure data work over the typed results (``runners.results``): the cells come
from the one aggregation (``runners.results.cells``), ranked by
``runners.report.ranking``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from runners.report.capacity import (
    CurveRow,
    bound_sentence,
    curve_rows,
    lower_bound_reasons,
    saturation_charts,
    slo_of,
    slo_text,
)
from runners.report.colors import (
    FADED,
    LEVEL_COLORS,
    MEMORY_COLORS,
    PERCENTILE_COLORS,
    runner_color,
)
from runners.report.compare import environment_rows
from runners.report.formats import fmt_mib, fmt_ms, fmt_num, fmt_time
from runners.report.html import chart_scripts
from runners.report.links import artifact_links
from runners.report.memory import (
    ProcessShare,
    oom_marks,
    peak_sample,
    process_rows,
    pss_series,
    working_set_sentence,
    working_set_series,
)
from runners.report.micro import asgi_variants, load_micro
from runners.report.plan import plan_view
from runners.report.profiles import profile_charts, profile_views
from runners.report.ranking import (
    Ranking,
    by_ranking,
    cells_of,
    rankings,
    runner_label,
    workloads_of,
)
from runners.report.rerun import rerun_command
from runners.report.runtimes import runtime_charts, runtime_views
from runners.results.bands import band_text
from runners.results.cells import Cell, Stat, matters, several
from runners.results.document import Results
from runners.results.figures import MIB
from runners.results.flags import FLAGS
from runners.results.record import Run

JSON = dict[str, Any]
Labeler = Callable[[Cell], str]
"""A cell's runner label on the page (``runners.report.ranking.runner_label``)."""

PERCENTILES = ("p50", "p90", "p95", "p99")
"""The latency chart's bars, per runner."""
MEMORY_PARTS = (
    ("private", "private (USS)"),
    ("charged_shared", "shared, its PSS share"),
    ("other_shared", "shared, charged to the others"),
)
"""The memory chart's stacked parts of a process (``ProcessShare``), with their legend."""


@dataclass(frozen=True)
class ConcurrencyRow:
    """One runner against concurrency: its cell at each users level (None: not run)."""

    label: str
    cells: tuple[Cell | None, ...]
    color: str


@dataclass(frozen=True)
class RunnerProcessRow:
    """One process of a runner at the peak of its summed PSS."""

    label: str
    process: ProcessShare


@dataclass(frozen=True)
class PssRow:
    """A runner's summed PSS over its first repetition (MiB): the table's figures and
    the chart's points (seconds, MiB)."""

    label: str
    color: str
    points: tuple[tuple[float, float], ...]
    samples: int
    working_set: tuple[tuple[float, float], ...] = ()
    """The cgroup's working set over the same samples (MiB); () without a cgroup."""
    limit_mib: float | None = None
    oom: tuple[tuple[float, float], ...] = ()
    """(t, working set) where the cgroup counted new OOM kills."""
    oom_kills: int | None = None
    """OOM kills of the whole run (None: no cgroup, or not counted)."""

    @property
    def working_set_peak(self) -> float | None:
        return max((y for _, y in self.working_set), default=None)

    @property
    def start(self) -> float:
        return self.points[0][1]

    @property
    def mean(self) -> float:
        return sum(y for _, y in self.points) / len(self.points)

    @property
    def peak(self) -> float:
        return max(y for _, y in self.points)

    @property
    def end(self) -> float:
        return self.points[-1][1]


@dataclass(frozen=True)
class WorkloadView:
    """What the run page shows of one workload: its saturation curves, latency, memory
    and concurrency tables and the heights of its bar charts; its charts' ids start
    with ``prefix`` (``workload_charts``)."""

    name: str
    anchor: str
    prefix: str
    levels: tuple[int, ...]
    top: int
    open_loop: bool
    """The top level ran open-loop: its figures are at capacity."""
    slo: str
    runners: tuple[str, ...]
    """The runner labels as the charts list them: by ranking at the top level."""
    curves: tuple[CurveRow, ...]
    top_cells: tuple[Cell, ...]
    concurrency: tuple[ConcurrencyRow, ...]
    memory_rows: tuple[RunnerProcessRow, ...]
    pss_rows: tuple[PssRow, ...]
    rpg_height: int
    mem_height: int
    memory_sentences: tuple[str, ...] = ()
    """Where a run's cgroup working set and its summed PSS differ, which part explains it."""

    @property
    def at(self) -> str:
        """``at capacity`` or ``at 64 users``."""
        return "at capacity" if self.open_loop else f"at {self.top} users"

    @property
    def label(self) -> str:
        """``at capacity`` or ``64 users``."""
        return "at capacity" if self.open_loop else f"{self.top} users"


def _first_with_memory(cell: Cell) -> Run | None:
    """The cell's first ok repetition with memory samples."""
    for run in cell.ok_runs:
        if run.memory is not None and run.memory.samples:
            return run
    return None


def _rounded(value: Stat | None, digits: int = 2) -> float | None:
    return round(value.mean, digits) if value is not None else None


def _bar_height(bars: int, groups: int = 1) -> int:
    return 70 + bars * max(groups, 1) * 22


def _top_level(cells: Sequence[Cell]) -> int:
    """The highest users level with a measured cell (the highest of all without one)."""
    measured = [c.users for c in cells if not c.failed]
    return max(measured) if measured else max(c.users for c in cells)


def _open_levels(cells: Sequence[Cell]) -> frozenset[int]:
    """The users levels at which every cell ran open-loop."""
    levels = {c.users for c in cells}
    return frozenset(u for u in levels if all(c.open_loop for c in cells if c.users == u))


def _at_top(cells: Sequence[Cell], top: int) -> list[Cell]:
    """The cells at the top level by their ranking figure (capacity per GiB in an open
    loop, requests/s per GiB in a closed one), flagged or not, cells without figures last."""
    return sorted((c for c in cells if c.users == top), key=lambda c: (c.failed, -by_ranking(c)))


def _runner_order(cells: Sequence[Cell], at_top: Sequence[Cell], label_of: Labeler) -> list[str]:
    """The runners as the charts list them: those at the top level in ranking order,
    then the others in cell order."""
    order = [label_of(c) for c in at_top]
    for cell in cells:
        label = label_of(cell)
        if label not in order:
            order.append(label)
    return order


def _by_label_level(cells: Sequence[Cell], label_of: Labeler) -> dict[tuple[str, int], Cell]:
    """The cells by runner label and users level."""
    return {(label_of(c), c.users): c for c in cells}


@dataclass(frozen=True)
class LevelBars:
    """One users level's bars of the ranking chart, per runner: the figure, its band
    (``[low, high]``, ``high`` None when open above; None for a point), the text on the
    bar, the unranking flags and the colour (a bar given no rank is pale)."""

    values: tuple[float | None, ...]
    bands: tuple[tuple[float, float | None] | None, ...]
    texts: tuple[str, ...]
    flags: tuple[str, ...]
    colors: tuple[str, ...]


def bar_text(cell: Cell) -> str:
    """The text on a cell's bar: ``26,149``, ``≥ 62,719`` for a lower bound, and ⚑ when
    the cell is given no rank."""
    band = cell.ranking_band
    value = cell.ranking.mean if cell.ranking is not None else None
    text = f"≥ {fmt_num(band.low)}" if band is not None and band.open else fmt_num(value)
    return text + (" ⚑" if cell.caveats else "")


def _level_bars(
    level: int, color: str, order: Sequence[str], by_label_level: Mapping[tuple[str, int], Cell]
) -> LevelBars:
    """One users level's bars of the ranking chart."""
    values: list[float | None] = []
    bands: list[tuple[float, float | None] | None] = []
    texts: list[str] = []
    flags: list[str] = []
    colors: list[str] = []
    for label in order:
        found = by_label_level.get((label, level))
        value = found.ranking.mean if found and found.ranking else None
        band = found.ranking_band if found is not None and value is not None else None
        flag = ", ".join(found.caveats) if found else ""
        values.append(round(value, 1) if value is not None else None)
        bands.append(
            None
            if band is None or band.point
            else (round(band.low, 1), None if band.high is None else round(band.high, 1))
        )
        texts.append(bar_text(found) if found is not None and value is not None else "")
        flags.append(flag)
        colors.append(color + FADED if flag else color)
    return LevelBars(tuple(values), tuple(bands), tuple(texts), tuple(flags), tuple(colors))


def _band_end(levels: Sequence[LevelBars]) -> float:
    """Where an open band's bar ends: past every figure and band end of the chart."""
    ends = [
        end
        for bars in levels
        for value, band in zip(bars.values, bars.bands, strict=True)
        for end in (value, *(band or ()))
        if end is not None
    ]
    return round(max(ends, default=1.0) * 1.25, 1)


def _ranking_chart(cells: Sequence[Cell], order: Sequence[str], label_of: Labeler) -> JSON:
    """Capacity (open loop) or requests/s (closed) per GiB, one bar per runner and level,
    its band drawn over it (open above to ``bandEnd`` for a lower bound)."""
    levels = sorted({c.users for c in cells})
    open_levels = _open_levels(cells)
    slo = slo_text(slo_of(cells))
    by_label_level = _by_label_level(cells, label_of)
    datasets = []
    every = []
    any_flag = False
    for n, users in enumerate(levels):
        color = LEVEL_COLORS[n % len(LEVEL_COLORS)] if len(levels) > 1 else LEVEL_COLORS[0]
        bars = _level_bars(users, color, order, by_label_level)
        every.append(bars)
        any_flag = any_flag or any(
            f and v is not None for f, v in zip(bars.flags, bars.values, strict=True)
        )
        datasets.append(
            {
                "label": f"capacity at {slo}" if users in open_levels else f"{users} users",
                "data": list(bars.values),
                "bands": [list(b) if b is not None else None for b in bars.bands],
                "bandLabel": "band: what is known"
                + ("" if len(levels) == 1 else f" ({users} users)"),
                "texts": list(bars.texts),
                "flags": list(bars.flags),
                "colors": list(bars.colors),
                "color": color,
            }
        )
    return {
        "kind": "rpsPerGib",
        "labels": list(order),
        "datasets": datasets,
        "bandEnd": _band_end(every),
        "grace": "22%" if any_flag else "15%",
        "xTitle": (
            f"capacity (req/s at {slo}) per GiB of summed PSS (peak)"
            if open_levels == set(levels)
            else "requests/s per GiB of summed PSS (peak)"
        ),
    }


def _latency_chart(top_cells: Sequence[Cell], label_of: Labeler) -> JSON:
    """The latency percentiles of each runner at the top level."""
    return {
        "kind": "latency",
        "labels": [label_of(c) for c in top_cells],
        "datasets": [
            {
                "label": p,
                "data": [_rounded(c.latency[p]) for c in top_cells],
                "color": PERCENTILE_COLORS[p],
            }
            for p in PERCENTILES
        ],
    }


def concurrency_rows(
    cells: Sequence[Cell], order: Sequence[str], label_of: Labeler, colors: Mapping[str, str]
) -> tuple[ConcurrencyRow, ...]:
    """Each runner's cells at every users level; none with a single level."""
    levels = sorted({c.users for c in cells})
    if len(levels) < 2:
        return ()
    by_label_level = _by_label_level(cells, label_of)
    return tuple(
        ConcurrencyRow(label, tuple(by_label_level.get((label, u)) for u in levels), colors[label])
        for label in order
    )


def _concurrency_chart(rows: Sequence[ConcurrencyRow], levels: Sequence[int], figure: str) -> JSON:
    """Requests/s (``figure`` ``rps``) or p99 against concurrency, one line per runner."""

    def point(cell: Cell | None) -> float | None:
        if cell is None:
            return None
        return _rounded(cell.rps if figure == "rps" else cell.latency["p99"])

    return {
        "kind": "concurrency",
        "labels": [str(u) for u in levels],
        "datasets": [
            {"label": row.label, "data": [point(c) for c in row.cells], "color": row.color}
            for row in rows
        ],
        "yTitle": "requests/s" if figure == "rps" else "p99 latency (ms)",
    }


def memory_rows(at_top: Sequence[Cell], label_of: Labeler) -> tuple[RunnerProcessRow, ...]:
    """Every process of each runner at the peak of its summed PSS (its first repetition
    with memory samples)."""
    rows: list[RunnerProcessRow] = []
    for cell in at_top:
        run = _first_with_memory(cell)
        sample = peak_sample(run.memory) if run is not None else None
        if sample is not None:
            rows += [RunnerProcessRow(label_of(cell), p) for p in process_rows(sample)]
    return tuple(rows)


def _memory_chart(rows: Sequence[RunnerProcessRow]) -> JSON:
    """Each process's private and shared memory (MiB), stacked."""
    return {
        "kind": "memory",
        "labels": [f"{r.label} · {r.process.name}" for r in rows],
        "datasets": [
            {
                "label": title,
                "data": [round(getattr(r.process, part) / MIB, 1) for r in rows],
                "color": MEMORY_COLORS[part],
                "textColor": "#ffffff" if part == "private" else "#1a1a1a",
            }
            for part, title in MEMORY_PARTS
        ],
    }


def pss_rows(
    at_top: Sequence[Cell], label_of: Labeler, colors: Mapping[str, str]
) -> tuple[PssRow, ...]:
    """Each runner's summed PSS over time (its first repetition with memory samples)."""
    rows = []
    for cell in at_top:
        run = _first_with_memory(cell)
        points = pss_series(run.memory) if run is not None else []
        if run is not None and run.memory is not None and points:
            label = label_of(cell)
            cgroup = run.memory.cgroup
            limit = cgroup.limit_bytes if cgroup is not None else None
            rows.append(
                PssRow(
                    label,
                    colors[label],
                    tuple(points),
                    len(run.memory.samples),
                    working_set=tuple(working_set_series(run.memory)),
                    limit_mib=round(limit / MIB, 1) if limit else None,
                    oom=tuple(oom_marks(run.memory)),
                    oom_kills=cgroup.oom_kills_total if cgroup is not None else None,
                )
            )
    return tuple(rows)


def memory_sentences(cells: Sequence[Cell], label_of: Labeler) -> tuple[str, ...]:
    """One sentence per run whose cgroup working set and summed PSS differ by more than
    ``WORKING_SET_GAP`` (``runners.report.memory.working_set_sentence``)."""
    out = []
    for cell in cells:
        for run in cell.ok_runs:
            label = label_of(cell) + (f", repeat {run.repeat}" if len(cell.runs) > 1 else "")
            sentence = working_set_sentence(label, run.memory)
            if sentence is not None:
                out.append(sentence)
    return tuple(out)


def _xy(points: Sequence[tuple[float, float]]) -> list[JSON]:
    return [{"x": x, "y": y} for x, y in points]


def _pss_chart(rows: Sequence[PssRow]) -> JSON:
    """Summed PSS over time, one line per runner; where a cgroup was read, its working set
    (dashed), its memory limit (dotted) and its OOM kills (crosses) beside it."""
    datasets: list[JSON] = []
    for row in rows:
        datasets.append({"label": row.label, "data": _xy(row.points), "color": row.color})
        if row.working_set:
            datasets.append(
                {
                    "label": f"{row.label} working set",
                    "data": _xy(row.working_set),
                    "color": row.color,
                    "kind": "working-set",
                }
            )
        if row.limit_mib is not None and row.points:
            ends = (row.points[0][0], row.points[-1][0])
            datasets.append(
                {
                    "label": f"{row.label} limit",
                    "data": _xy([(t, row.limit_mib) for t in ends]),
                    "color": row.color,
                    "kind": "limit",
                }
            )
        if row.oom:
            datasets.append({"label": "OOM kill", "data": _xy(row.oom), "kind": "oom"})
    cgroups = any(row.working_set for row in rows)
    return {
        "kind": "pssTime",
        "datasets": datasets,
        "yTitle": "MiB (PSS solid, working set dashed)" if cgroups else "summed PSS (MiB)",
    }


def workload_view(
    workload: str,
    index: int,
    cells: Sequence[Cell],
    label_of: Labeler,
    colors: Mapping[str, str],
) -> WorkloadView:
    """The tables and bar heights of one workload (``cells``: its cells)."""
    levels = tuple(sorted({c.users for c in cells}))
    top = _top_level(cells)
    at_top = _at_top(cells, top)
    order = _runner_order(cells, at_top, label_of)
    processes = memory_rows(at_top, label_of)
    return WorkloadView(
        name=workload,
        anchor=f"workload-{index}",
        prefix=f"w{index}",
        levels=levels,
        top=top,
        open_loop=top in _open_levels(cells),
        slo=slo_text(slo_of(cells)),
        runners=tuple(order),
        curves=curve_rows([c for c in cells if c.open_loop], label_of, colors),
        top_cells=tuple(c for c in at_top if not c.failed),
        concurrency=concurrency_rows(cells, order, label_of, colors),
        memory_rows=processes,
        pss_rows=pss_rows(at_top, label_of, colors),
        memory_sentences=memory_sentences(at_top, label_of),
        # Room for the legend under the bars when the chart draws bands.
        rpg_height=_bar_height(len(order), len(levels)) + 30,
        mem_height=_bar_height(len(processes)),
    )


def workload_charts(
    view: WorkloadView, cells: Sequence[Cell], label_of: Labeler
) -> dict[str, JSON]:
    """The chart specs of a workload's view by id: ranking, latency and, where it has
    the data, concurrency, memory, summed PSS over time and saturation."""
    prefix = view.prefix
    open_cells = [c for c in cells if c.open_loop]
    charts = {
        f"{prefix}-rpg": _ranking_chart(cells, view.runners, label_of),
        f"{prefix}-lat": _latency_chart(view.top_cells, label_of),
        **saturation_charts(prefix, view.curves, slo_of(open_cells)),
    }
    if view.concurrency:
        charts[f"{prefix}-crps"] = _concurrency_chart(view.concurrency, view.levels, "rps")
        charts[f"{prefix}-cp99"] = _concurrency_chart(view.concurrency, view.levels, "p99")
    if view.memory_rows:
        charts[f"{prefix}-mem"] = _memory_chart(view.memory_rows)
    if view.pss_rows:
        charts[f"{prefix}-pss"] = _pss_chart(view.pss_rows)
    return charts


CLOSES_EACH = 0.5
"""A run with at least this many new connections per request closed its connections."""


def connection_sentences(runs: Sequence[Run]) -> list[str]:
    """Per runner whose measured runs opened a connection per request (gunicorn's sync
    worker), a sentence on what that costs; one for the runners that kept them alive."""
    measured = [r for r in runs if r.ok and r.connections_per_request is not None]
    per_runner: dict[str, list[float]] = {}
    for run in measured:
        per_runner.setdefault(run.runner, []).append(run.connections_per_request or 0.0)
    closing = {k: v for k, v in per_runner.items() if max(v) >= CLOSES_EACH}
    kept = {k: v for k, v in per_runner.items() if k not in closing}
    sentences = [
        f"{name} closes every connection: {min(v):.2f}–{max(v):.2f} new TCP connections "
        "per request were measured, so each request pays a TCP connect (a handshake with "
        "the server, and the server's accept) inside its latency and its CPU time."
        for name, v in sorted(closing.items())
    ]
    if kept:
        top = max(max(v) for v in kept.values())
        sentences.append(
            f"{', '.join(sorted(kept))} kept connections alive "
            f"(at most {top:.3f} new connections per request)."
        )
    return sentences


@dataclass(frozen=True)
class HeadlineView:
    """The headline's heading and which loops it ranks (open: capacity per GiB at the
    latency target ``slo``; closed: requests/s per GiB)."""

    open: bool
    closed: bool
    slo: str

    @property
    def heading(self) -> str:
        parts = [
            text
            for text, on in (
                (f"capacity per GiB at {self.slo}", self.open),
                ("requests/s per GiB" + (" (closed loop)" if self.open else ""), self.closed),
            )
            if on
        ]
        return f"Headline: {' and '.join(parts) or 'requests/s per GiB'}"


def figure_text(cell: Cell) -> str:
    """A cell's ranking figure with what is known of it: ``26,149 [25,900, 26,700]`` (the
    search's band), ``≥ 62,719`` (a lower bound), or the mean alone."""
    band = cell.ranking_band
    mean = cell.ranking.mean if cell.ranking is not None else None
    if band is not None and band.open:
        return f"≥ {fmt_num(band.low)}"
    shown = band_text(band) if band is not None and band.measured else ""
    return f"{fmt_num(mean)} {shown}" if shown else fmt_num(mean)


def _capacity_text(cell: Cell) -> str:
    """The capacity in req/s as the headline says it: ``1,794 req/s``, with the band the
    search found, or ``≥ 4,489 req/s`` for a lower bound."""
    band = cell.capacity_band if cell.open_loop else None
    stat = cell.capacity_rps if cell.open_loop else cell.rps
    if cell.lower_bound and stat is not None:
        low = band.low if band is not None else stat.min
        return f"≥ {fmt_num(low)} req/s"
    shown = band_text(band) if band is not None and band.measured else ""
    return f"{fmt_num(stat.mean if stat is not None else None)} req/s" + (
        f" {shown}" if shown else ""
    )


def _leader_text(cell: Cell, open_loop: bool) -> str:
    """What follows the leader's name in the headline: its figure, capacity, p99, PSS
    and (open loop) bound; for a lower bound, ``first with at least N`` and why."""
    p99 = cell.latency["p99"]
    pss = cell.pss_peak_bytes
    details = [
        _capacity_text(cell),
        f"p99 {fmt_ms(p99.mean) if p99 is not None else '—'} ms",
        f"{fmt_mib(pss.mean) if pss is not None else '—'} MiB PSS",
    ]
    at = " at capacity" if open_loop else ""
    if cell.lower_bound:
        band = cell.ranking_band
        low = band.low if band is not None else by_ranking(cell)
        return (
            f" first with at least {fmt_num(low)} req/s per GiB{at} ({', '.join(details)}): "
            + ", ".join(lower_bound_reasons(cell))
        )
    if open_loop:
        details.append(f"bound: {cell.bound or '—'}")
    return f", {figure_text(cell)} req/s per GiB{at} ({', '.join(details)})"


def _why_unranked(cell: Cell, open_loop: bool) -> tuple[str, ...]:
    """The flags that keep a cell out of the ranking, or why it has no figure."""
    if cell.caveats:
        return cell.caveats
    if cell.failed:
        return ("failed",)
    return ("no rate met the target",) if open_loop else ("no figure",)


@dataclass(frozen=True)
class VerdictView:
    """One line of the headline: the runner ranked first on a workload (and those within
    noise of it), the unranked cells that scored higher, and, when some cell is given no
    rank, the command that runs it again."""

    ranking: Ranking
    leader: str | None
    """The label of the cell ranked first (None: no cell is ranked)."""
    leader_text: str
    tied: tuple[str, ...]
    """``granian-asgi (26,021 [25,800, 26,400])``: the others sharing first place."""
    unranked: tuple[tuple[str, tuple[str, ...]], ...]
    """(label, the flags that keep it unranked) of each cell given no rank."""
    rerun: str | None


def verdict_view(ranking: Ranking, label_of: Labeler, command: str, repeat: int) -> VerdictView:
    """The headline's line for one ranking."""
    best = ranking.best
    unranked = ranking.unranked
    return VerdictView(
        ranking=ranking,
        leader=label_of(best) if best is not None else None,
        leader_text=_leader_text(best, ranking.open_loop) if best is not None else "",
        tied=tuple(f"{label_of(c)} ({figure_text(c)})" for c in ranking.leaders[1:]),
        unranked=tuple((label_of(c), _why_unranked(c, ranking.open_loop)) for c in unranked),
        rerun=rerun_command(command, unranked, repeat) if unranked else None,
    )


def headline_view(ranked: Sequence[Ranking], cells: Sequence[Cell]) -> HeadlineView:
    """Which loops the rankings hold, and the cells' latency target."""
    return HeadlineView(
        open=any(r.open_loop for r in ranked),
        closed=any(not r.open_loop for r in ranked),
        slo=slo_text(slo_of(cells)),
    )


def bound_sentences(
    ranked: Sequence[Ranking], label_of: Labeler
) -> dict[tuple[str, int], list[str]]:
    """What bounded each runner, by (workload, users) of the open-loop rankings."""
    return {
        (r.workload, r.users): [bound_sentence(c, label_of(c)) for _, c in r.rows]
        for r in ranked
        if r.open_loop
    }


@dataclass(frozen=True)
class RunTableRow:
    """A run in the runs table: its interpreter and the links to its files."""

    run: Run
    python: str
    links: JSON


def run_rows(results: Results, results_dir: Path) -> list[RunTableRow]:
    """Every run of the invocation, in results.json order."""
    return [
        RunTableRow(
            run=run,
            python=(run.python or results.environment.python).version,
            links=artifact_links(results_dir, run),
        )
        for run in results.runs
    ]


def runner_colors(cells: Sequence[Cell], label_of: Labeler) -> dict[str, str]:
    """One chart colour per runner label, in cell order."""
    labels = dict.fromkeys(label_of(c) for c in cells)
    return {label: runner_color(i) for i, label in enumerate(labels)}


def run_context(results: Results, results_dir: Path) -> JSON:
    """Everything the run template shows: the views of each section and the specs of
    every chart on the page."""
    cells = cells_of(results)
    with_python = several(c.python for c in cells)
    with_django = several(c.django for c in cells)
    with_gc = matters(cells, "gc")
    label_of = partial(
        runner_label, with_python=with_python, with_django=with_django, with_gc=with_gc
    )
    colors = runner_colors(cells, label_of)
    charts: dict[str, JSON] = {}
    workloads = []
    for index, workload in enumerate(workloads_of(cells)):
        group = [c for c in cells if c.workload == workload]
        view = workload_view(workload, index, group, label_of, colors)
        workloads.append(view)
        charts |= workload_charts(view, group, label_of)
    runtimes = runtime_views(results, cells)
    charts |= runtime_charts(runtimes)
    profiles = profile_views(results, results_dir)
    charts |= profile_charts(profiles)
    ranked = rankings(cells)
    verdicts = [verdict_view(r, label_of, results.command, results.matrix.repeat) for r in ranked]
    used_flags = sorted({f for c in cells for f in c.flags}, key=lambda f: (f not in FLAGS, f))
    return {
        "results": results,
        "title": f"Benchmark {fmt_time(results.created_at)}",
        "rankings": ranked,
        "verdicts": verdicts,
        "headline": headline_view(ranked, cells),
        "bound_sentences": bound_sentences(ranked, label_of),
        "workload_anchor": {w.name: w.anchor for w in workloads},
        "cells": cells,
        "workloads": workloads,
        "with_python": with_python,
        "with_django": with_django,
        "with_gc": with_gc,
        "runtime_views": runtimes,
        "profiles": profiles,
        "runs": run_rows(results, results_dir),
        "failed_runs": results.failed_runs,
        "used_flags": used_flags,
        "environment_rows": environment_rows(results.environment),
        "micro": load_micro(results_dir, results.micro),
        "plan": plan_view(results_dir),
        "asgi_variants": asgi_variants(results.runs),
        "connection_sentences": connection_sentences(results.runs),
        "chart_data": {"charts": charts},
        "scripts": chart_scripts(),
        "ok_count": len(results.ok_runs),
        "failed_count": len(results.failed_runs),
    }
