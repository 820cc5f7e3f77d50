"""The cells of an invocation as the report orders, labels and ranks them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runners.report.capacity import report_cell, slo_of
from runners.results.bands import points
from runners.results.cells import Cell, aggregate, in_matrix_order
from runners.results.document import Results
from runners.serving.registry import RUNNERS


def cells_of(results: Results) -> list[Cell]:
    """The cells of an invocation, in matrix order (workload, users, runner), then by
    interpreter, Django and gc mode (runs differing in those are different cells),
    with the report's caveats of open-loop cells (``runners.report.capacity``)."""
    env = results.environment
    cells = [report_cell(c) for c in aggregate(results.runs, env.python, env.packages)]
    return in_matrix_order(cells, results.matrix.runners, results.matrix.workloads)


def workloads_of(cells: Sequence[Cell]) -> list[str]:
    seen: list[str] = []
    for cell in cells:
        if cell.workload not in seen:
            seen.append(cell.workload)
    return seen


def sweep_text(qualifier: str) -> str:
    """``w3`` -> ``3 workers``, ``t1`` -> ``1 thread``."""
    count = int(qualifier[1:])
    noun = "worker" if qualifier[0] == "w" else "thread"
    return f"{count} {noun}{'' if count == 1 else 's'}"


def pod_text(qualifier: str) -> str:
    """``mem256Mi`` -> ``256 MiB limit``, ``cpu0.5`` -> ``0.5 CPU``, ``rule-host`` ->
    ``workers by host cores``; ``mem-none``/``cpu-none`` -> ``no memory/CPU limit``."""
    if qualifier.startswith("rule-"):
        return f"workers by {qualifier.removeprefix('rule-')} cores"
    if qualifier.startswith("mem"):
        value = qualifier.removeprefix("mem")
        return "no memory limit" if value == "-none" else f"{value.removesuffix('Mi')} MiB limit"
    value = qualifier.removeprefix("cpu")
    return "no CPU limit" if value == "-none" else f"{value} CPU"


def runner_label(
    cell: Cell, with_python: bool, with_django: bool = False, with_gc: bool = False
) -> str:
    """``gunicorn-sync-preload (CPython 3.12.1, Django 6.1.3, gc freeze)``: the runner
    and what distinguishes its cells (``experimental`` first for such a runner; a
    sweep's ``3 workers``, ``8 threads`` next)."""
    runner = RUNNERS.get(cell.runner)
    extra = [
        text
        for text, on in (
            ("experimental", runner is not None and runner.experimental),
            *((sweep_text(q), True) for q in cell.sweep),
            *((pod_text(q), True) for q in cell.pod),
            (cell.python, with_python),
            (f"Django {cell.django}", with_django),
            (f"gc {cell.gc}", with_gc),
        )
        if on
    ]
    return f"{cell.runner} ({', '.join(extra)})" if extra else cell.runner


@dataclass(frozen=True)
class Ranking:
    """The cells of one workload at one concurrency (or, open loop, at the latency
    target), best first. Ranked cells whose bands overlap share a rank (``rank``)."""

    workload: str
    users: int
    rows: tuple[tuple[int | None, Cell], ...]

    @property
    def open_loop(self) -> bool:
        """Ranked by capacity per GiB (every cell ran open-loop)."""
        return bool(self.rows) and all(c.open_loop for _, c in self.rows)

    @property
    def slo(self) -> float | None:
        return slo_of([c for _, c in self.rows])

    @property
    def leaders(self) -> tuple[Cell, ...]:
        """The cells ranked first: one, or several within noise of each other."""
        return tuple(c for r, c in self.rows if r == 1)

    @property
    def best(self) -> Cell | None:
        """The cell ranked first (the highest figure of those that share first place), if
        any cell is ranked."""
        return next(iter(self.leaders), None)

    @property
    def unranked(self) -> tuple[Cell, ...]:
        """The cells given no rank: nothing trustworthy is known of their figure."""
        return tuple(c for r, c in self.rows if r is None)

    @property
    def flagged_above(self) -> list[Cell]:
        """Unranked cells whose ranking figure beats the best ranked one (none when no
        cell is ranked)."""
        best = self.best
        if best is None:
            return []
        floor = by_ranking(best)
        return [c for r, c in self.rows if r is None and not c.failed and by_ranking(c) > floor]

    def tied_with(self, cell: Cell) -> tuple[Cell, ...]:
        """The other ranked cells that share ``cell``'s rank (their bands overlap its own
        or its group leader's): within noise of it."""
        position = next((r for r, c in self.rows if c is cell), None)
        if position is None:
            return ()
        return tuple(c for r, c in self.rows if r == position and c is not cell)


def by_ranking(cell: Cell) -> float:
    """The figure cells are ranked by: capacity per GiB (open loop), else requests/s
    per GiB; -1 without one."""
    figure = cell.ranking
    return figure.mean if figure is not None else -1.0


def overlap(a: Cell, b: Cell) -> bool:
    """Whether two cells' ranking bands overlap (a cell without a band is its figure)."""
    first = a.ranking_band or points([by_ranking(a)])
    second = b.ranking_band or points([by_ranking(b)])
    return first is not None and second is not None and first.overlaps(second)


def rank(cells: Sequence[Cell]) -> list[tuple[int | None, Cell]]:
    """Ranked cells by their ranking figure (capacity per GiB in an open loop,
    requests/s per GiB in a closed one), then the unranked cells (no rank), then cells
    with no figures at all.

    Ties share a rank (1, 1, 3): going down the ranked cells, a cell whose band
    overlaps the band of the first cell of the current group joins the group and takes
    its rank; one that does not starts a new group at its own position. A lower bound
    (a band open above) so ties with every cell above it that reaches its low end, and
    one that beats every other cell is first."""
    clean = sorted((c for c in cells if c.ranked), key=by_ranking, reverse=True)
    unranked = sorted(
        (c for c in cells if not c.ranked and not c.failed), key=by_ranking, reverse=True
    )
    failed = [c for c in cells if c.failed]
    rows: list[tuple[int | None, Cell]] = []
    leader: Cell | None = None
    position = 0
    for index, cell in enumerate(clean):
        if leader is None or not overlap(leader, cell):
            leader, position = cell, index + 1
        rows.append((position, cell))
    rows += [(None, c) for c in unranked + failed]
    return rows


def rankings(cells: Sequence[Cell]) -> list[Ranking]:
    """One ranking per (workload, users), in matrix order."""
    groups: dict[tuple[str, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.workload, cell.users), []).append(cell)
    return [
        Ranking(workload=w, users=u, rows=tuple(rank(group))) for (w, u), group in groups.items()
    ]
