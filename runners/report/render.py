"""Writing the HTML reports: one invocation, the index of all, a comparison.

Every page is a Jinja2 template with autoescaping on (``runners.report.html``).
The run report embeds its chart data as JSON in a ``<script
type="application/json">`` block and builds the charts with Chart.js, which is
written into the page: a report is one file that opens from the file system
and asks nothing of any host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runners.report.compare import Comparison, compare, environment_diff
from runners.report.html import environment, write_page
from runners.report.links import safe_relative_href
from runners.report.ranking import cells_of, rankings, workloads_of
from runners.report.run_view import figure_text, run_context
from runners.results.document import RESULTS_NAME, ResultsError, read_results, results_path

INDEX_NAME = "index.html"
JSON = dict[str, Any]

__all__ = ["ResultsError", "render_all", "render_comparison", "render_index", "render_run"]


# --------------------------------------------------------------------------
# One invocation


def render_run(results_dir: Path) -> Path:
    """Read ``results_dir/results.json`` and write ``results_dir/index.html``.

    Raises ResultsError when results.json is missing or invalid.
    """
    results = read_results(results_dir)
    folder = results_path(results_dir).parent
    html = environment().get_template("run.html.j2").render(**run_context(results, folder))
    return write_page(folder / INDEX_NAME, html)


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
        results = read_results(folder)
    except ResultsError as exc:
        entry["error"] = str(exc).removeprefix(str(results_path(folder)) + ": ")
        return entry
    cells = cells_of(results)
    best = []
    for ranking in rankings(cells):
        top = ranking.leaders
        if top and ranking.users == max(c.users for c in cells if c.workload == ranking.workload):
            best.append(
                {
                    "workload": ranking.workload,
                    "users": ranking.users,
                    "cell": top[0],
                    "figure": figure_text(top[0]),
                    "tied": len(top) - 1,
                }
            )
    entry.update(
        results=results,
        sort=str(results.created_at),
        ok=len(results.ok_runs),
        failed=len(results.failed_runs),
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
    return write_page(reports_dir / INDEX_NAME, html)


# --------------------------------------------------------------------------
# Two invocations


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


def _link(out_dir: Path, folder: Path) -> str | None:
    target = folder / INDEX_NAME
    if not target.is_file():
        return None
    return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


def _figure_labels(comparison: Comparison) -> list[tuple[str, str]]:
    """The summary's rows: each figure's key and its name (capacity for open loops)."""
    kinds = {c.open_loop for c in comparison.shared}
    names = {
        frozenset({True}): ("capacity req/s", "p99 latency at capacity", "capacity per GiB"),
        frozenset({False}): ("requests/s", "p99 latency", "requests/s per GiB"),
    }.get(
        frozenset(kinds),
        ("requests/s (capacity)", "p99 latency", "requests/s (capacity) per GiB"),
    )
    return list(zip(("rps", "p99", "rps_per_gib"), names, strict=True))


def render_comparison(old_dir: Path, new_dir: Path, out: Path | None = None) -> Path:
    """Write a page comparing two invocations: the cells both ran, and how
    requests/s, p99 and requests/s per GiB moved, noise marked as such.

    ``out`` defaults to ``new_dir/compare-<old folder name>.html``.
    """
    old, new = read_results(old_dir), read_results(new_dir)
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
            env_diff=environment_diff(old.environment, new.environment),
            matrix_diff=[
                (k, _plain(getattr(old.matrix, k)), _plain(getattr(new.matrix, k)))
                for k in (
                    "runners",
                    "workloads",
                    "users",
                    "duration_s",
                    "warmup_s",
                    "repeat",
                    "middleware",
                    "upstream_ms",
                )
                if getattr(old.matrix, k) != getattr(new.matrix, k)
            ],
            workloads=workloads_of(
                [c.new for c in comparison.shared] + [m.new for m in comparison.not_comparable]
            ),
            figures=_figure_labels(comparison),
        )
    )
    return write_page(out, html)


def render_all(results_dir: Path) -> list[Path]:
    """Rebuild a run's report and the index of the folder holding it."""
    written = [render_run(results_dir)]
    folder = results_path(results_dir).parent.resolve()
    if folder.parent != folder:
        written.append(render_index(folder.parent))
    return written
