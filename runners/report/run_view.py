"""What the run page shows: per workload its tables and chart specs, and the
context of ``templates/run.html.j2``.

Pure data work over the typed results (``runners.results``): the cells come
from the one aggregation (``runners.results.cells``), ranked by
``runners.report.ranking``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runners.report.capacity import bound_sentence, curve_charts, slo_of, slo_text
from runners.report.colors import (
    FADED,
    LEVEL_COLORS,
    MEMORY_COLORS,
    PERCENTILE_COLORS,
    runner_color,
)
from runners.report.compare import environment_rows
from runners.report.formats import fmt_time
from runners.report.html import chart_scripts
from runners.report.links import artifact_links
from runners.report.memory import peak_sample, process_rows, pss_series
from runners.report.micro import asgi_variants, load_micro
from runners.report.plan import plan_view
from runners.report.profiles import profile_views
from runners.report.ranking import by_ranking, cells_of, rankings, runner_label, workloads_of
from runners.report.runtimes import runtime_views
from runners.results.cells import Cell, Stat, matters, several
from runners.results.document import Results
from runners.results.figures import MIB
from runners.results.flags import FLAGS
from runners.results.record import Run

JSON = dict[str, Any]


def _first_with_memory(cell: Cell) -> Run | None:
    for run in cell.ok_runs:
        if run.memory is not None and run.memory.samples:
            return run
    return None


def _rounded(value: Stat | None, digits: int = 2) -> float | None:
    return round(value.mean, digits) if value is not None else None


def _bar_height(bars: int, groups: int = 1) -> int:
    return 70 + bars * max(groups, 1) * 22


def workload_view(
    workload: str,
    index: int,
    cells: Sequence[Cell],
    with_python: bool,
    colors: dict[str, str],
    charts: dict[str, JSON],
    with_django: bool = False,
    with_gc: bool = False,
) -> JSON:
    """Tables and chart specs of one workload; chart specs go into ``charts``."""

    def label_of(cell: Cell) -> str:
        return runner_label(cell, with_python, with_django, with_gc)

    levels = sorted({c.users for c in cells})
    measured = [c.users for c in cells if not c.failed]
    top = max(measured) if measured else max(levels)
    slo = slo_text(slo_of(cells))
    open_levels = {u for u in levels if all(c.open_loop for c in cells if c.users == u)}
    # Charts list runners by their ranking figure (capacity per GiB in an open
    # loop, requests/s per GiB in a closed one) at the top level, flagged or
    # not (a flagged bar is pale and marked), cells without figures last.
    at_top = sorted((c for c in cells if c.users == top), key=lambda c: (c.failed, -by_ranking(c)))
    order = [label_of(c) for c in at_top]
    for cell in cells:
        label = label_of(cell)
        if label not in order:
            order.append(label)
    by_label_level = {(label_of(c), c.users): c for c in cells}
    prefix = f"w{index}"

    # Capacity (open loop) or requests/s (closed) per GiB, one bar per runner and level.
    datasets = []
    any_flag = False
    for n, users in enumerate(levels):
        base = LEVEL_COLORS[n % len(LEVEL_COLORS)] if len(levels) > 1 else LEVEL_COLORS[0]
        values: list[float | None] = []
        flags: list[str] = []
        bar_colors: list[str] = []
        for label in order:
            found = by_label_level.get((label, users))
            value = found.ranking.mean if found and found.ranking else None
            flag = ", ".join(found.caveats) if found else ""
            any_flag = any_flag or bool(flag and value is not None)
            values.append(round(value, 1) if value is not None else None)
            flags.append(flag)
            bar_colors.append(base + FADED if flag else base)
        datasets.append(
            {
                "label": f"capacity at {slo}" if users in open_levels else f"{users} users",
                "data": values,
                "flags": flags,
                "colors": bar_colors,
                "color": base,
            }
        )
    charts[f"{prefix}-rpg"] = {
        "kind": "rpsPerGib",
        "labels": order,
        "datasets": datasets,
        "grace": "22%" if any_flag else "15%",
        "xTitle": (
            f"capacity (req/s at {slo}) per GiB of summed PSS (peak)"
            if open_levels == set(levels)
            else "requests/s per GiB of summed PSS (peak)"
        ),
    }

    # Latency percentiles at the top level.
    top_cells = [c for c in at_top if not c.failed]
    charts[f"{prefix}-lat"] = {
        "kind": "latency",
        "labels": [label_of(c) for c in top_cells],
        "datasets": [
            {
                "label": p,
                "data": [_rounded(c.latency[p]) for c in top_cells],
                "color": PERCENTILE_COLORS[p],
            }
            for p in ("p50", "p90", "p95", "p99")
        ],
    }

    # Requests/s and p99 against concurrency.
    concurrency: list[JSON] = []
    if len(levels) > 1:
        for label in order:
            row_cells = [by_label_level.get((label, users)) for users in levels]
            concurrency.append({"label": label, "cells": row_cells, "color": colors[label]})

        def series(figure: str) -> list[JSON]:
            out = []
            for row in concurrency:
                points: list[float | None] = []
                for cell in row["cells"]:
                    value: Stat | None = None
                    if cell is not None:
                        value = cell.rps if figure == "rps" else cell.latency["p99"]
                    points.append(_rounded(value))
                out.append({"label": row["label"], "data": points, "color": row["color"]})
            return out

        charts[f"{prefix}-crps"] = {
            "kind": "concurrency",
            "labels": [str(u) for u in levels],
            "datasets": series("rps"),
            "yTitle": "requests/s",
        }
        charts[f"{prefix}-cp99"] = {
            "kind": "concurrency",
            "labels": [str(u) for u in levels],
            "datasets": series("p99"),
            "yTitle": "p99 latency (ms)",
        }

    # Memory per process (at the peak of summed PSS) and PSS over time.
    memory_rows: list[JSON] = []
    pss_rows: list[JSON] = []
    pss_sets: list[JSON] = []
    for cell in at_top:
        run = _first_with_memory(cell)
        if run is None:
            continue
        label = label_of(cell)
        sample = peak_sample(run.memory)
        if sample is not None:
            for proc in process_rows(sample):
                memory_rows.append({"label": label, "cell": cell, "run": run, **proc})
        points = pss_series(run.memory)
        if points:
            ys = [y for _, y in points]
            pss_rows.append(
                {
                    "label": label,
                    "run": run,
                    "start": ys[0],
                    "mean": sum(ys) / len(ys),
                    "peak": max(ys),
                    "end": ys[-1],
                    "samples": len(run.memory.samples) if run.memory else 0,
                }
            )
            pss_sets.append(
                {
                    "label": label,
                    "data": [{"x": x, "y": y} for x, y in points],
                    "color": colors[label],
                }
            )
    if memory_rows:
        charts[f"{prefix}-mem"] = {
            "kind": "memory",
            "labels": [f"{r['label']} · {r['name']}" for r in memory_rows],
            "datasets": [
                {
                    "label": title,
                    "data": [round(r[key] / MIB, 1) for r in memory_rows],
                    "color": MEMORY_COLORS[key],
                    "textColor": "#ffffff" if key == "private" else "#1a1a1a",
                }
                for key, title in (
                    ("private", "private (USS)"),
                    ("charged_shared", "shared, its PSS share"),
                    ("other_shared", "shared, charged to the others"),
                )
            ],
        }
    if pss_sets:
        charts[f"{prefix}-pss"] = {"kind": "pssTime", "datasets": pss_sets}

    # The capacity search's saturation curves (open loop).
    curves = curve_charts(prefix, [c for c in cells if c.open_loop], label_of, colors, charts)

    return {
        "name": workload,
        "anchor": f"workload-{index}",
        "prefix": prefix,
        "levels": levels,
        "top": top,
        "at": "at capacity" if top in open_levels else f"at {top} users",
        "label": "at capacity" if top in open_levels else f"{top} users",
        "open_loop": top in open_levels,
        "slo": slo,
        "curves": curves,
        "top_cells": top_cells,
        "concurrency": concurrency,
        "memory_rows": memory_rows,
        "pss_rows": pss_rows,
        "heights": {
            "rpg": _bar_height(len(order), len(levels)),
            "lat": 300,
            "mem": _bar_height(len(memory_rows)),
        },
        "charts": charts,
    }


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


def run_context(results: Results, results_dir: Path) -> JSON:
    """Everything the run template shows."""
    cells = cells_of(results)
    with_python = several(c.python for c in cells)
    with_django = several(c.django for c in cells)
    with_gc = matters(cells, "gc")
    labels: list[str] = []
    for cell in cells:
        label = runner_label(cell, with_python, with_django, with_gc)
        if label not in labels:
            labels.append(label)
    colors = {label: runner_color(i) for i, label in enumerate(labels)}
    charts: dict[str, JSON] = {}
    workloads = [
        workload_view(
            w,
            i,
            [c for c in cells if c.workload == w],
            with_python,
            colors,
            charts,
            with_django,
            with_gc,
        )
        for i, w in enumerate(workloads_of(cells))
    ]
    runs = [
        {
            "run": run,
            "python": (run.python or results.environment.python).version,
            "links": artifact_links(results_dir, run),
        }
        for run in results.runs
    ]
    ranked = rankings(cells)
    opened = any(r.open_loop for r in ranked)
    closed = any(not r.open_loop for r in ranked)
    slo = slo_text(slo_of(cells))
    heading = " and ".join(
        text
        for text, on in (
            (f"capacity per GiB at {slo}", opened),
            ("requests/s per GiB" + (" (closed loop)" if opened else ""), closed),
        )
        if on
    )
    bounds = {
        (r.workload, r.users): [
            bound_sentence(c, runner_label(c, with_python, with_django, with_gc)) for _, c in r.rows
        ]
        for r in ranked
        if r.open_loop
    }
    used_flags = sorted({f for c in cells for f in c.flags}, key=lambda f: (f not in FLAGS, f))
    return {
        "results": results,
        "title": f"Benchmark {fmt_time(results.created_at)}",
        "rankings": ranked,
        "headline": {
            "heading": f"Headline: {heading or 'requests/s per GiB'}",
            "open": opened,
            "closed": closed,
            "slo": slo,
        },
        "bound_sentences": bounds,
        "workload_anchor": {w["name"]: w["anchor"] for w in workloads},
        "cells": cells,
        "workloads": workloads,
        "with_python": with_python,
        "with_django": with_django,
        "with_gc": with_gc,
        "runtime_views": runtime_views(results, cells, charts),
        "profiles": profile_views(results, charts, results_dir),
        "runs": runs,
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
