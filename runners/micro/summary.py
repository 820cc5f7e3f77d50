"""Reading pyperf results back: one row per benchmark, the ASGI cost over WSGI,
and their text tables (printed by ``python -m runners.micro``; the HTML report
uses the rows)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyperf

from runners.micro.benchmarks import PROFILES, VIEWS

DB_VIEWS = ("fortunes", "feed")
"""Views that query: under ASGI each request opens (and closes) a connection."""


def _split_name(name: str) -> tuple[str, str, str]:
    parts = name.split("/")
    if len(parts) not in (3, 4):  # a fourth part: --asgiref's tag
        return name, "", ""
    return parts[0], parts[1], parts[2]


def summarize(benchmarks: Iterable[pyperf.Benchmark]) -> list[dict[str, Any]]:
    """One row per benchmark: name, handler, profile, view, asgiref, mean_s, stdev_s,
    median_s, values.

    Times are seconds per request; ``stdev_s`` is None when the benchmark has a
    single value (``--debug-single-value``). ``asgiref`` is the release of a
    ``--asgiref`` run (None otherwise).
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
                "asgiref": meta.get("asgiref_version") if meta.get("name_tag") else None,
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

    One row per (asgiref, profile, view) that has a ``wsgi-sync`` mean:
    ``wsgi_sync_us``, ``asgi_async_us``, ``asgi_sync_us`` (means),
    ``asgi_async_extra_us``, ``asgi_sync_extra_us`` (differences; None when a
    mean is missing), the same differences of the medians
    (``*_extra_median_us``) and ``connect_us``: for a view that queries, the
    ``db-connect`` benchmark's mean, which the ASGI extra includes once (None
    otherwise). ``asgiref`` is the row's ``--asgiref`` release or None.
    """
    rows = list(rows)
    means = {(r.get("asgiref"), r["handler"], r["profile"], r["view"]): r for r in rows}
    cells = sorted({(a, p, v) for (a, _, p, v) in means}, key=_cell_order)
    table: list[dict[str, Any]] = []
    for asgiref, profile, view in cells:
        base = means.get((asgiref, "wsgi-sync", profile, view))
        if base is None:
            continue
        connect = means.get((asgiref, "db-connect", "minimal", "db"))
        row: dict[str, Any] = {
            "asgiref": asgiref,
            "profile": profile,
            "view": view,
            "wsgi_sync_us": float(base["mean_s"]) * 1e6,
            "connect_us": (
                float(connect["mean_s"]) * 1e6 if connect is not None and view in DB_VIEWS else None
            ),
        }
        for handler in ("asgi-async", "asgi-sync"):
            key = handler.replace("-", "_")
            other = means.get((asgiref, handler, profile, view))
            for stat, suffix in (("mean_s", ""), ("median_s", "_median")):
                value, start = _us_of(other, stat), _us_of(base, stat)
                if not suffix:
                    row[f"{key}_us"] = value
                row[f"{key}_extra{suffix}_us"] = (
                    None if value is None or start is None else value - start
                )
        table.append(row)
    return table


def _us_of(row: Mapping[str, Any] | None, stat: str) -> float | None:
    value = None if row is None else row.get(stat)
    return None if value is None else float(value) * 1e6


def _cell_order(cell: tuple[str | None, str, str]) -> tuple[str, int, int, str]:
    asgiref, profile, view = cell
    profiles: list[str] = list(PROFILES)
    views = list(VIEWS)
    return (
        asgiref or "",
        profiles.index(profile) if profile in profiles else len(profiles),
        views.index(view) if view in views else len(views),
        view,
    )


def _us(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def format_summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A text table of the means and medians (microseconds per request)."""
    width = max([len("benchmark"), *(len(str(r["name"])) for r in rows)])
    lines = [f"{'benchmark':<{width}}  {'mean us':>10}  {'median us':>10}  {'stdev us':>9}"]
    for r in rows:
        stdev = None if r["stdev_s"] is None else float(r["stdev_s"]) * 1e6
        median = r.get("median_s")
        lines.append(
            f"{r['name']:<{width}}  {float(r['mean_s']) * 1e6:>10.1f}  "
            f"{_us(None if median is None else float(median) * 1e6):>10}  {_us(stdev):>9}"
        )
    return lines


def format_overhead(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """A text table of :func:`overhead`."""
    tagged = any(r.get("asgiref") for r in table)
    lead = f"{'asgiref':<8} " if tagged else ""
    header = (
        f"{lead}{'profile':<8} {'view':<9} {'wsgi-sync':>10} {'asgi-async':>11} {'extra':>9} "
        f"{'median':>9} {'asgi-sync':>10} {'extra':>9} {'median':>9} {'connect':>8}"
    )
    lines = [header]
    for r in table:
        lead = f"{r.get('asgiref') or '-':<8} " if tagged else ""
        lines.append(
            f"{lead}{r['profile']:<8} {r['view']:<9} {_us(r['wsgi_sync_us']):>10} "
            f"{_us(r['asgi_async_us']):>11} {_us(r['asgi_async_extra_us'], True):>9} "
            f"{_us(r.get('asgi_async_extra_median_us'), True):>9} "
            f"{_us(r['asgi_sync_us']):>10} {_us(r['asgi_sync_extra_us'], True):>9} "
            f"{_us(r.get('asgi_sync_extra_median_us'), True):>9} {_us(r.get('connect_us')):>8}"
        )
    return lines
