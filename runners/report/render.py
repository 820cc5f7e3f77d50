"""Writing the HTML reports: one invocation, the index of all, a comparison.

Every page is a Jinja2 template with autoescaping on. The run report embeds
its chart data as JSON in a ``<script type="application/json">`` block and
builds the charts with Chart.js, which is written into the page: a report is
one file that opens from the file system and asks nothing of any host.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from runners.report.micro import asgi_variants, load_micro
from runners.report.model import (
    ASSUMED_NOISE,
    FLAG_HELP,
    JSON,
    MIB,
    NOISE_FLOOR,
    NOISY_SPREAD,
    RESULTS_NAME,
    RUNNER_COLORS,
    Cell,
    ResultsError,
    Stat,
    cells_of,
    compare,
    environment_diff,
    environment_rows,
    load_results,
    matters,
    peak_sample,
    process_rows,
    pss_series,
    rankings,
    results_path,
    runner_label,
    safe_relative_href,
    several,
    workloads_of,
)
from runners.report.runtimes import runtime_views

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
INDEX_NAME = "index.html"

LEVEL_COLORS = ("#1f4e89", "#5b9be0", "#0b2a4f", "#9cc2ec")  # users levels, bar charts
PERCENTILE_COLORS = {"p50": "#fdd0a2", "p90": "#fd8d3c", "p95": "#d94801", "p99": "#7f2704"}
MEMORY_COLORS = {"private": "#1a5e8a", "charged_shared": "#6fa8d6", "other_shared": "#d9e6f2"}
FADED = "55"  # alpha suffix for the bars of flagged cells

__all__ = ["ResultsError", "render_comparison", "render_index", "render_run"]


# --------------------------------------------------------------------------
# Formatting filters


def fmt_num(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ms(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if abs(value) < 10 else f"{value:,.0f}"


def fmt_mib(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value / MIB:,.1f}"


def fmt_pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    if signed and round(value * 100, 1) == 0:
        return "0.0 %"
    return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"


def fmt_spread(value: Stat | None) -> str:
    if value is None or value.n < 2:
        return ""
    return f"±{value.spread * 100:.1f} %"


def fmt_time(value: str | None) -> str:
    """'2026-11-21 10:00 UTC' from an ISO 8601 time (the text itself if not)."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def fmt_mean(value: Stat | None, digits: int = 0) -> str:
    return fmt_num(value.mean if value is not None else None, digits)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=fmt_num,
        ms=fmt_ms,
        mib=fmt_mib,
        pct=fmt_pct,
        spread=fmt_spread,
        time=fmt_time,
        mean=fmt_mean,
    )
    env.globals.update(
        flag_help=FLAG_HELP,
        css=inline_style(_asset("report.css")),
        noise={"floor": NOISE_FLOOR, "assumed": ASSUMED_NOISE, "noisy": NOISY_SPREAD},
    )
    return env


# --------------------------------------------------------------------------
# Inlined assets


@cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


def inline_script(source: str) -> Markup:
    """JavaScript safe to write between <script> and </script>."""
    source = _SOURCE_MAP.sub("", source)
    source = _SCRIPT_END.sub(r"<\\/\1", source).replace("<!--", "<\\!--")
    return Markup(source)  # noqa: S704 - our own vendored files, made inert above


def inline_style(source: str) -> Markup:
    """CSS safe to write between <style> and </style>."""
    if "</style" in source.lower():
        raise ValueError("a stylesheet must not contain '</style'")
    return Markup(source)  # noqa: S704 - our own stylesheet


@cache
def chart_scripts() -> tuple[Markup, ...]:
    return tuple(
        inline_script(_asset(name))
        for name in ("chart.umd.min.js", "chartjs-plugin-datalabels.min.js", "report.js")
    )


def _write(path: Path, text: str) -> Path:
    """Write atomically: a crash never leaves half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------
# One invocation


def _color(index: int) -> str:
    return RUNNER_COLORS[index % len(RUNNER_COLORS)]


def _first_with_memory(cell: Cell) -> JSON | None:
    for run in cell.ok_runs:
        if (run.get("memory") or {}).get("samples"):
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
    # Charts list runners by requests/s per GiB at the top level, flagged or
    # not (a flagged bar is pale and marked), cells without figures last.
    at_top = sorted(
        (c for c in cells if c.users == top),
        key=lambda c: (c.failed, -(c.rps_per_gib.mean if c.rps_per_gib else -1.0)),
    )
    order = [label_of(c) for c in at_top]
    for cell in cells:
        label = label_of(cell)
        if label not in order:
            order.append(label)
    by_label_level = {(label_of(c), c.users): c for c in cells}
    prefix = f"w{index}"

    # Requests/s per GiB, one bar per runner and users level.
    datasets = []
    any_flag = False
    for n, users in enumerate(levels):
        base = LEVEL_COLORS[n % len(LEVEL_COLORS)] if len(levels) > 1 else LEVEL_COLORS[0]
        values: list[float | None] = []
        flags: list[str] = []
        bar_colors: list[str] = []
        for label in order:
            found = by_label_level.get((label, users))
            value = found.rps_per_gib.mean if found and found.rps_per_gib else None
            flag = ", ".join(found.caveats) if found else ""
            any_flag = any_flag or bool(flag and value is not None)
            values.append(round(value, 1) if value is not None else None)
            flags.append(flag)
            bar_colors.append(base + FADED if flag else base)
        datasets.append(
            {
                "label": f"{users} users",
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
        sample = peak_sample(run["memory"])
        if sample is not None:
            for proc in process_rows(sample):
                memory_rows.append({"label": label, "cell": cell, "run": run, **proc})
        points = pss_series(run["memory"])
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
                    "samples": len(run["memory"]["samples"]),
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

    return {
        "name": workload,
        "anchor": f"workload-{index}",
        "prefix": prefix,
        "levels": levels,
        "top": top,
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


def _short_names(paths: Sequence[str]) -> list[str]:
    """File names without the prefix they share ('stats.csv' for 'run-1_stats.csv')."""
    names = [Path(p).name for p in paths]
    if len(names) < 2:
        return names
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    short = [n[len(prefix) :].lstrip("_-.") for n in names]
    return short if all(short) and len(set(short)) == len(short) else names


def _artifacts(results_dir: Path, run: JSON) -> JSON:
    artifacts = run.get("artifacts") or {}
    paths: list[str] = list(artifacts.get("locust_csv") or [])
    csvs = []
    for path, name in zip(paths, _short_names(paths), strict=True):
        href = safe_relative_href(results_dir, path)
        if href is not None:
            csvs.append({"name": name, "href": href, "path": path})
    return {
        "locust_html": safe_relative_href(results_dir, artifacts.get("locust_html")),
        "csv": csvs,
        "server_log": safe_relative_href(results_dir, artifacts.get("server_log")),
    }


def run_context(results: JSON, results_dir: Path) -> JSON:
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
    colors = {label: _color(i) for i, label in enumerate(labels)}
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
            "python": f"{(run.get('python') or results['environment']['python'])['version']}",
            "links": _artifacts(results_dir, run),
        }
        for run in results["runs"]
    ]
    used_flags = sorted({f for c in cells for f in c.flags}, key=lambda f: (f not in FLAG_HELP, f))
    return {
        "results": results,
        "title": f"Benchmark {fmt_time(results['created_at'])}",
        "rankings": rankings(cells),
        "cells": cells,
        "workloads": workloads,
        "with_python": with_python,
        "with_django": with_django,
        "with_gc": with_gc,
        "runtime_views": runtime_views(results, cells, charts),
        "runs": runs,
        "failed_runs": [r for r in results["runs"] if r["status"] == "failed"],
        "used_flags": used_flags,
        "environment_rows": environment_rows(results["environment"]),
        "micro": load_micro(results_dir, results.get("micro")),
        "asgi_variants": asgi_variants(results["runs"]),
        "chart_data": {"charts": charts},
        "scripts": chart_scripts(),
        "ok_count": sum(1 for r in results["runs"] if r["status"] == "ok"),
        "failed_count": sum(1 for r in results["runs"] if r["status"] != "ok"),
    }


def render_run(results_dir: Path) -> Path:
    """Read ``results_dir/results.json`` and write ``results_dir/index.html``.

    Raises ResultsError when results.json is missing or invalid.
    """
    results = load_results(results_dir)
    folder = results_path(results_dir).parent
    html = environment().get_template("run.html.j2").render(**run_context(results, folder))
    return _write(folder / INDEX_NAME, html)


# --------------------------------------------------------------------------
# Every invocation


def _index_entry(reports_dir: Path, folder: Path) -> JSON:
    name = folder.name
    entry: JSON = {
        "name": name,
        "href": safe_relative_href(reports_dir, f"{name}/{INDEX_NAME}"),
        "results_href": safe_relative_href(reports_dir, f"{name}/{RESULTS_NAME}"),
        "comparisons": [
            {"name": p.name, "href": safe_relative_href(reports_dir, f"{name}/{p.name}")}
            for p in sorted(folder.glob("compare-*.html"))
        ],
        "error": None,
        "results": None,
        "sort": "",
    }
    try:
        results = load_results(folder)
    except ResultsError as exc:
        entry["error"] = str(exc).removeprefix(str(results_path(folder)) + ": ")
        return entry
    cells = cells_of(results)
    best = []
    for ranking in rankings(cells):
        top = [c for r, c in ranking.rows if r == 1]
        if top and ranking.users == max(c.users for c in cells if c.workload == ranking.workload):
            best.append({"workload": ranking.workload, "users": ranking.users, "cell": top[0]})
    entry.update(
        results=results,
        sort=str(results["created_at"]),
        ok=sum(1 for r in results["runs"] if r["status"] == "ok"),
        failed=sum(1 for r in results["runs"] if r["status"] != "ok"),
        best=best,
    )
    return entry


def render_index(reports_dir: Path) -> Path:
    """Write ``reports_dir/index.html`` listing every ``*/results.json``, newest first.

    A folder whose results.json is unreadable is listed with the reason.
    """
    folders = sorted(p.parent for p in reports_dir.glob(f"*/{RESULTS_NAME}"))
    entries = [_index_entry(reports_dir, f) for f in folders]
    entries.sort(key=lambda e: (e["sort"], e["name"]), reverse=True)
    html = (
        environment()
        .get_template("index.html.j2")
        .render(title="Benchmark reports", entries=entries, reports_dir=str(reports_dir))
    )
    return _write(reports_dir / INDEX_NAME, html)


# --------------------------------------------------------------------------
# Two invocations


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


def _link(out_dir: Path, folder: Path) -> str | None:
    target = folder / INDEX_NAME
    if not target.is_file():
        return None
    return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


def render_comparison(old_dir: Path, new_dir: Path, out: Path | None = None) -> Path:
    """Write a page comparing two invocations: the cells both ran, and how
    requests/s, p99 and requests/s per GiB moved, noise marked as such.

    ``out`` defaults to ``new_dir/compare-<old folder name>.html``.
    """
    old, new = load_results(old_dir), load_results(new_dir)
    old_folder, new_folder = results_path(old_dir).parent, results_path(new_dir).parent
    if out is None:
        out = new_folder / f"compare-{old_folder.resolve().name}.html"
    comparison = compare(old, new)
    verdicts: dict[str, dict[str, int]] = {}
    for figure in ("rps", "p99", "rps_per_gib"):
        counts = {"better": 0, "worse": 0, "noise": 0, "n/a": 0}
        for change in comparison.shared:
            counts[getattr(change, figure).verdict] += 1
        verdicts[figure] = counts
    html = (
        environment()
        .get_template("compare.html.j2")
        .render(
            title="Benchmark comparison",
            old=old,
            new=new,
            old_name=old_folder.resolve().name,
            new_name=new_folder.resolve().name,
            old_href=_link(out.parent, old_folder),
            new_href=_link(out.parent, new_folder),
            comparison=comparison,
            verdicts=verdicts,
            env_diff=environment_diff(old["environment"], new["environment"]),
            matrix_diff=[
                (k, _plain(old["matrix"].get(k)), _plain(new["matrix"].get(k)))
                for k in ("runners", "workloads", "users", "duration_s", "warmup_s", "repeat")
                if old["matrix"].get(k) != new["matrix"].get(k)
            ],
            workloads=workloads_of([c.new for c in comparison.shared]),
        )
    )
    return _write(out, html)


def render_all(results_dir: Path) -> list[Path]:
    """Rebuild a run's report and the index of the folder holding it."""
    written = [render_run(results_dir)]
    folder = results_path(results_dir).parent.resolve()
    if folder.parent != folder:
        written.append(render_index(folder.parent))
    return written
