"""The pyperf micro-benchmarks an invocation may carry (``results["micro"]``).

Read with pyperf's own API so the figures are the ones ``pyperf show`` gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.report.model import safe_relative_href


def load_micro(results_dir: Path, relative: str | None) -> dict[str, Any] | None:
    """The micro-benchmark table of a run folder, or None when there is none.

    Returns ``{"path", "href", "error", "rows"}``; each row has the benchmark's
    name, its mean and standard deviation formatted by pyperf, and the number
    of values. A missing or unreadable file gives an ``error`` and no rows.
    """
    if not relative:
        return None
    table: dict[str, Any] = {"path": relative, "href": None, "error": None, "rows": []}
    href = safe_relative_href(results_dir, relative)
    if href is None:
        table["error"] = "file not found next to results.json"
        return table
    table["href"] = href
    try:
        import pyperf  # only reports with micro-benchmarks need it

        suite = pyperf.BenchmarkSuite.load(str(results_dir / relative))
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
    return table
