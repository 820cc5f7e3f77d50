"""Reading pyperf results back: one row per benchmark, the ASGI cost over WSGI,
and their text tables (printed by ``python -m runners.micro``; the HTML report
uses the rows)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyperf

from runners.micro.benchmarks import PROFILES, VIEWS


def _split_name(name: str) -> tuple[str, str, str]:
    parts = name.split("/")
    if len(parts) != 3:
        return name, "", ""
    return parts[0], parts[1], parts[2]


def summarize(benchmarks: Iterable[pyperf.Benchmark]) -> list[dict[str, Any]]:
    """One row per benchmark: name, handler, profile, view, mean_s, stdev_s, median_s, values.

    Times are seconds per request; ``stdev_s`` is None when the benchmark has a
    single value (``--debug-single-value``).
    """
    rows: list[dict[str, Any]] = []
    for bench in benchmarks:
        name = bench.get_name()
        meta = bench.get_metadata()
        handler, profile, view = _split_name(name)
        values = bench.get_values()
        rows.append(
            {
                "name": name,
                "handler": meta.get("handler", handler),
                "profile": meta.get("middleware_profile", profile),
                "view": meta.get("view", view),
                "mean_s": bench.mean(),
                "stdev_s": bench.stdev() if len(values) > 1 else None,
                "median_s": bench.median(),
                "values": len(values),
            }
        )
    return rows


def summary(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of :func:`summarize` for a pyperf JSON file (for the HTML report)."""
    suite = pyperf.BenchmarkSuite.load(os.fspath(path))
    return summarize(suite.get_benchmarks())


def overhead(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ASGI paths' extra cost over ``wsgi-sync``, per profile and view, in microseconds.

    One row per (profile, view) that has a ``wsgi-sync`` mean: ``wsgi_sync_us``,
    ``asgi_async_us``, ``asgi_sync_us`` (means) and ``asgi_async_extra_us``,
    ``asgi_sync_extra_us`` (differences; None when a mean is missing).
    """
    means = {(r["handler"], r["profile"], r["view"]): float(r["mean_s"]) for r in rows}
    cells = sorted({(p, v) for (_, p, v) in means}, key=_cell_order)
    table: list[dict[str, Any]] = []
    for profile, view in cells:
        base = means.get(("wsgi-sync", profile, view))
        if base is None:
            continue
        row: dict[str, Any] = {"profile": profile, "view": view, "wsgi_sync_us": base * 1e6}
        for handler in ("asgi-async", "asgi-sync"):
            key = handler.replace("-", "_")
            mean = means.get((handler, profile, view))
            row[f"{key}_us"] = None if mean is None else mean * 1e6
            row[f"{key}_extra_us"] = None if mean is None else (mean - base) * 1e6
        table.append(row)
    return table


def _cell_order(cell: tuple[str, str]) -> tuple[int, int, str]:
    profile, view = cell
    profiles: list[str] = list(PROFILES)
    views = list(VIEWS)
    return (
        profiles.index(profile) if profile in profiles else len(profiles),
        views.index(view) if view in views else len(views),
        view,
    )


def _us(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def format_summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A text table of the means (microseconds per request)."""
    width = max([len("benchmark"), *(len(str(r["name"])) for r in rows)])
    lines = [f"{'benchmark':<{width}}  {'mean us':>10}  {'stdev us':>9}"]
    for r in rows:
        stdev = None if r["stdev_s"] is None else float(r["stdev_s"]) * 1e6
        lines.append(f"{r['name']:<{width}}  {float(r['mean_s']) * 1e6:>10.1f}  {_us(stdev):>9}")
    return lines


def format_overhead(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """A text table of :func:`overhead`."""
    header = (
        f"{'profile':<8} {'view':<9} {'wsgi-sync':>10} {'asgi-async':>11} {'extra':>9} "
        f"{'asgi-sync':>10} {'extra':>9}"
    )
    lines = [header]
    for r in table:
        lines.append(
            f"{r['profile']:<8} {r['view']:<9} {_us(r['wsgi_sync_us']):>10} "
            f"{_us(r['asgi_async_us']):>11} {_us(r['asgi_async_extra_us'], True):>9} "
            f"{_us(r['asgi_sync_us']):>10} {_us(r['asgi_sync_extra_us'], True):>9}"
        )
    return lines
