"""HTML reports of benchmark invocations.

``render_run(dir)`` writes ``dir/index.html`` from ``dir/results.json``;
``render_index(reports)`` writes ``reports/index.html`` listing every run;
``render_comparison(old, new)`` writes a page comparing two runs. The CLI is
``python -m runners.report`` (``tox -e report``). The results are read with
``runners.results.document.read_results`` (typed, validated).

Modules, by job: ``ranking`` (cells in order, ranked by their figure and band,
ties sharing a rank), ``capacity`` (the open-loop capacity: the report's flags,
what bounded each runner, the saturation curves with their retakes), ``rerun``
(the command that runs unranked cells again), ``compare`` (two invocations, and
which cells are comparable), ``memory`` (the memory charts' data), ``runtimes`` (interpreters,
gc modes, soak), ``micro`` (pyperf micro-benchmarks), ``run_view`` (the run
page's context), ``links`` (links to the files beside results.json), ``html``
(formats, Jinja2, inlined assets), ``colors``, and ``render`` (the pages).
"""

from runners.report.render import render_all, render_comparison, render_index, render_run
from runners.results.document import ResultsError

__all__ = [
    "ResultsError",
    "render_all",
    "render_comparison",
    "render_index",
    "render_run",
]
