"""The pyperf micro-benchmarks an invocation may carry (``results["micro"]``).

Read with pyperf's own API so the figures are the ones ``pyperf show`` gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runners.report.links import safe_relative_href
from runners.results.record import Run


def load_micro(results_dir: Path, relative: str | None) -> dict[str, Any] | None:
    """The micro-benchmark table of a run folder, or None when there is none.

    Returns ``{"path", "href", "error", "rows", "overhead"}``; each row has the
    benchmark's name, its mean and standard deviation formatted by pyperf, and
    the number of values; ``overhead`` is ``runners.micro.summary.overhead``: what the
    ASGI paths cost per request over the WSGI path, per middleware profile and
    view. ``ablation`` is ``runners.micro.ablation``'s table per asgiref release
    (one, tagged None, without ``--asgiref``), each with its ``sentence``:
    where the ASGI handler's extra microseconds go. A missing or unreadable
    file gives an ``error`` and no rows.
    """
    if not relative:
        return None
    table: dict[str, Any] = {
        "path": relative,
        "href": None,
        "error": None,
        "rows": [],
        "overhead": [],
        "ablation": [],
    }
    href = safe_relative_href(results_dir, relative)
    if href is None:
        table["error"] = "file not found next to results.json"
        return table
    table["href"] = href
    try:
        import pyperf  # only reports with micro-benchmarks need it

        from runners.micro.summary import overhead, summarize

        suite = pyperf.BenchmarkSuite.load(str(results_dir / relative))
        summary_rows = summarize(suite.get_benchmarks())
        table["overhead"] = overhead(summary_rows)
        table["ablation"] = _ablations(summary_rows)
        for bench in suite.get_benchmarks():
            values = bench.get_values()
            mean = bench.mean()
            stdev = bench.stdev() if len(values) >= 2 else None
            table["rows"].append(
                {
                    "name": str(bench.get_name()),
                    "mean": str(bench.format_value(mean)),
                    "stdev": str(bench.format_value(stdev)) if stdev is not None else "—",
                    "nvalues": len(values),
                    "mean_raw": float(mean),
                    "unit": str(bench.get_unit()),
                }
            )
    except ImportError:
        table["error"] = "pyperf is not installed"
    except Exception as exc:  # pyperf raises many kinds on a bad file
        table["error"] = "cannot read it with pyperf: " + " ".join(str(exc).split())[:200]
        table["rows"] = []
        table["overhead"] = []
        table["ablation"] = []
    return table


def _ablations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ablation table and its sentence, per asgiref release present."""
    from runners.micro.ablation import breakdown, means_from_rows, sentence

    out = []
    for tag in dict.fromkeys(r.get("asgiref") for r in rows):
        chosen = [r for r in rows if r.get("asgiref") == tag]
        found = breakdown(means_from_rows(chosen))
        if found is not None:
            medians = breakdown(means_from_rows(chosen, "median_s"))
            out.append(
                {
                    "asgiref": tag,
                    "table": found.as_dict(),
                    "medians": medians.as_dict() if medians is not None else None,
                    "sentence": sentence(found),
                }
            )
    return out


def asgi_variants(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """Load-test throughput of the ASGI runners' sync and async views, side by side.

    One row per ASGI runner, workload and user count that ran (ok runs; the
    mean over repeats), with ``sync_rps`` and ``async_rps`` (None when that
    variant did not run): the server-level picture of the thread hop that the
    micro-benchmarks price per request.
    """
    groups: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    for run in runs:
        if run.interface != "asgi" or not run.ok:
            continue
        key = (run.runner, run.workload, run.users)
        groups.setdefault(key, {}).setdefault(str(run.variant), []).append(float(run.rps))
    rows = []
    for (runner, workload, users), by_variant in sorted(groups.items()):
        means = {v: sum(xs) / len(xs) for v, xs in by_variant.items()}
        rows.append(
            {
                "runner": runner,
                "workload": workload,
                "users": users,
                "sync_rps": means.get("sync"),
                "async_rps": means.get("async"),
            }
        )
    return rows
