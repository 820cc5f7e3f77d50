"""HTML reports of benchmark invocations.

``render_run(dir)`` writes ``dir/index.html`` from ``dir/results.json``;
``render_index(reports)`` writes ``reports/index.html`` listing every run;
``render_comparison(old, new)`` writes a page comparing two runs. The CLI is
``python -m runners.report`` (``tox -e report``).
"""

from runners.report.model import ResultsError, load_results
from runners.report.render import render_all, render_comparison, render_index, render_run

__all__ = [
    "ResultsError",
    "load_results",
    "render_all",
    "render_comparison",
    "render_index",
    "render_run",
]
