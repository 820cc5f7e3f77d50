"""Two invocations side by side: the cells both ran, how each figure moved, and
whether the move is beyond the runs' own noise; what differs in their environment."""

from __future__ import annotations

from dataclasses import dataclass

from runners.report.ranking import cells_of
from runners.results.cells import Cell, Stat, matters
from runners.results.document import Environment, Results
from runners.results.figures import GIB
from runners.results.flags import order_flags

ASSUMED_NOISE = 0.05
"""Noise band assumed for a comparison side that has a single repetition."""
NOISE_FLOOR = 0.02
"""Smallest noise band of a side with repetitions: two or three repetitions
that happen to agree closely do not make a 1 % change real."""


@dataclass(frozen=True)
class Change:
    """One figure of a cell in two invocations."""

    old: Stat | None
    new: Stat | None
    change: float | None  # relative, (new - old) / old
    verdict: str  # better | worse | noise | n/a
    basis: str  # measured | assumed | ""


def _interval(value: Stat) -> tuple[float, float]:
    band = NOISE_FLOOR if value.n >= 2 else ASSUMED_NOISE
    low, high = value.mean * (1 - band), value.mean * (1 + band)
    return min(value.min, low), max(value.max, high)


def compare_stat(old: Stat | None, new: Stat | None, higher_is_better: bool) -> Change:
    """Whether a figure moved beyond the two invocations' own noise.

    Each side's noise is the range of its repetitions, and at least
    ±NOISE_FLOOR around their mean (with a single repetition: ±ASSUMED_NOISE).
    A change whose two noise ranges overlap is noise.
    """
    if old is None or new is None or old.mean == 0:
        return Change(old, new, None, "n/a", "")
    change = (new.mean - old.mean) / abs(old.mean)
    basis = "measured" if old.n >= 2 and new.n >= 2 else "assumed"
    old_lo, old_hi = _interval(old)
    new_lo, new_hi = _interval(new)
    if new_lo <= old_hi and old_lo <= new_hi:
        verdict = "noise"
    elif (change > 0) == higher_is_better:
        verdict = "better"
    else:
        verdict = "worse"
    return Change(old, new, change, verdict, basis)


@dataclass(frozen=True)
class CellChange:
    old: Cell
    new: Cell
    rps: Change
    p99: Change
    rps_per_gib: Change

    @property
    def flags(self) -> tuple[str, ...]:
        return order_flags([*self.old.flags, *self.new.flags])


def compare_key(
    cell: Cell, with_python: bool, with_django: bool = False
) -> tuple[str, int, str, str, str, str]:
    """Which cells of two invocations are the same: the gc mode always counts; the
    interpreter and Django only when one side has several of them."""
    return (
        cell.workload,
        cell.users,
        cell.runner,
        cell.python if with_python else "",
        cell.django if with_django else "",
        cell.gc,
    )


@dataclass(frozen=True)
class Comparison:
    shared: tuple[CellChange, ...]
    only_old: tuple[Cell, ...]
    only_new: tuple[Cell, ...]
    with_python: bool
    with_django: bool = False
    with_gc: bool = False


def compare(old: Results, new: Results) -> Comparison:
    """The cells two invocations share, with the change of each figure."""
    old_cells, new_cells = cells_of(old), cells_of(new)
    with_python = matters(old_cells, "python") or matters(new_cells, "python")
    with_django = matters(old_cells, "django") or matters(new_cells, "django")
    old_by_key = {compare_key(c, with_python, with_django): c for c in old_cells}
    new_by_key = {compare_key(c, with_python, with_django): c for c in new_cells}
    shared = []
    for cell in new_cells:
        before = old_by_key.get(compare_key(cell, with_python, with_django))
        if before is None:
            continue
        shared.append(
            CellChange(
                old=before,
                new=cell,
                rps=compare_stat(before.rps, cell.rps, higher_is_better=True),
                p99=compare_stat(before.latency["p99"], cell.latency["p99"], False),
                rps_per_gib=compare_stat(before.rps_per_gib, cell.rps_per_gib, True),
            )
        )
    return Comparison(
        shared=tuple(shared),
        only_old=tuple(c for k, c in old_by_key.items() if k not in new_by_key),
        only_new=tuple(c for k, c in new_by_key.items() if k not in old_by_key),
        with_python=with_python,
        with_django=with_django,
        with_gc=matters(old_cells, "gc") or matters(new_cells, "gc"),
    )


# --- the environment ----------------------------------------------------------------------------


def _commit(env: Environment) -> str:
    commit = str(env.git_commit or "unknown")
    return commit + " (with uncommitted changes)" if env.git_dirty else commit


def environment_rows(env: Environment) -> list[tuple[str, str]]:
    """The environment as flat (name, value) rows, packages last."""
    placement = env.placement
    py = env.python
    rows = [
        ("CPU", f"{env.cpu_model} × {env.cpu_count}"),
        ("Server CPUs", ", ".join(str(c) for c in placement.server_cpus)),
        ("Load generator CPUs", ", ".join(str(c) for c in placement.loadgen_cpus)),
        ("CPU sets overlap", "yes" if placement.overlapping else "no"),
        ("OS", str(env.os)),
        ("Python", f"{py.implementation} {py.version}"),
        ("Database", str(env.database)),
        ("Cache", str(env.cache or "")),
        ("Git commit", _commit(env)),
    ]
    if env.memory_total_bytes:
        rows.insert(1, ("Memory", f"{int(env.memory_total_bytes) / GIB:.1f} GiB"))
    packages = env.packages
    rows += [(f"package {name}", str(packages[name] or "")) for name in sorted(packages)]
    return rows


def environment_diff(old: Environment, new: Environment) -> list[tuple[str, str, str]]:
    """(name, old, new) for every environment row that differs."""
    before = dict(environment_rows(old))
    after = dict(environment_rows(new))
    names = list(before) + [n for n in after if n not in before]
    return [
        (n, before.get(n, "—"), after.get(n, "—")) for n in names if before.get(n) != after.get(n)
    ]
