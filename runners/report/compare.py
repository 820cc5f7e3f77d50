"""Two invocations side by side: the cells both ran with the same settings, how each
figure moved, and whether the move is beyond the runs' own noise; the cells whose
settings differ, as not comparable, with the reason; what differs in their
environment.

A capacity whose both sides carry the search's band (``runners.results.bands``) has
moved only when the two bands do not overlap; a figure without one (a closed loop, a
file from before the bands, the p99) keeps the noise rule of ``compare_stat``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtests.catalog import DEFAULT_UPSTREAM_MS, WORKLOADS
from runners.report.capacity import slo_of, slo_text
from runners.report.ranking import cells_of
from runners.results.bands import Band, band_text
from runners.results.cells import Cell, Stat, matters
from runners.results.document import Environment, Matrix, Results
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
    basis: str  # band | measured | assumed | ""
    old_band: Band | None = None
    """The bands compared (``basis`` ``band``), else None."""
    new_band: Band | None = None

    @property
    def bands(self) -> str:
        """``[1,200, 1,290] → [1,400, 1,480]`` when the bands decided; ''."""
        if self.basis != "band":
            return ""
        return f"{band_text(self.old_band) or 'a point'} → {band_text(self.new_band) or 'a point'}"


def _interval(value: Stat) -> tuple[float, float]:
    band = NOISE_FLOOR if value.n >= 2 else ASSUMED_NOISE
    low, high = value.mean * (1 - band), value.mean * (1 + band)
    return min(value.min, low), max(value.max, high)


def compare_stat(
    old: Stat | None,
    new: Stat | None,
    higher_is_better: bool,
    old_band: Band | None = None,
    new_band: Band | None = None,
) -> Change:
    """Whether a figure moved beyond what is known of it.

    With the capacity search's band on both sides (``Band.measured``), a change whose
    bands overlap is noise (a lower bound's band is open above). Otherwise each side's
    noise is the range of its repetitions, and at least ±NOISE_FLOOR around their mean
    (with a single repetition: ±ASSUMED_NOISE), and a change whose two noise ranges
    overlap is noise.
    """
    if old is None or new is None or old.mean == 0:
        return Change(old, new, None, "n/a", "")
    change = (new.mean - old.mean) / abs(old.mean)
    if old_band is not None and new_band is not None and old_band.measured and new_band.measured:
        noise = old_band.overlaps(new_band)
        basis = "band"
    else:
        old_band = new_band = None
        basis = "measured" if old.n >= 2 and new.n >= 2 else "assumed"
        old_lo, old_hi = _interval(old)
        new_lo, new_hi = _interval(new)
        noise = new_lo <= old_hi and old_lo <= new_hi
    if noise:
        verdict = "noise"
    elif (change > 0) == higher_is_better:
        verdict = "better"
    else:
        verdict = "worse"
    return Change(old, new, change, verdict, basis, old_band, new_band)


@dataclass(frozen=True)
class CellChange:
    """One cell in two invocations whose settings agree: how each figure moved.

    For open-loop cells ``rps`` is the capacity (req/s at the latency target) and
    ``rps_per_gib`` the capacity per GiB, the figure they are ranked by."""

    old: Cell
    new: Cell
    rps: Change
    p99: Change
    rps_per_gib: Change

    @property
    def flags(self) -> tuple[str, ...]:
        return order_flags([*self.old.flags, *self.new.flags])

    @property
    def open_loop(self) -> bool:
        return self.new.open_loop


@dataclass(frozen=True)
class Mismatch:
    """The same runner x workload in two invocations, run with different settings:
    not comparable. ``reasons``: ``middleware: minimal → default``, one per setting."""

    old: Cell
    new: Cell
    reasons: tuple[str, ...]


def _cpus(cpus: Sequence[int]) -> str:
    return ", ".join(str(c) for c in cpus) or "—"


def _matrix_value(matrix: Matrix, name: str) -> Any:
    """A matrix option as recorded, whether the record knows it as a field or keeps it
    in ``extra`` (an option newer than the record)."""
    value = getattr(matrix, name, None)
    return value if value is not None else matrix.extra.get(name)


def settings(cell: Cell, results: Results) -> dict[str, str | None]:
    """Every setting of a cell that changes its figures, as text (None: not recorded).

    The middleware, the database and the cache, the CPU placement, the worker and
    thread counts, the views served, the interpreter, Django and gc mode, the load
    (open loop at a latency target, or a closed loop of N users), the open loop's
    arrivals and, for the workloads that call it, the upstream's latency."""
    run = cell.runs[0]
    env, matrix = results.environment, results.matrix
    open_loop = cell.open_loop
    found: dict[str, str | None] = {
        "middleware": cell.middleware or matrix.middleware,
        "database": env.database,
        "cache": env.cache,
        "server CPUs": _cpus(run.server_cpus or env.placement.server_cpus),
        "load-generator CPUs": _cpus(run.loadgen_cpus or env.placement.loadgen_cpus),
        "workers": None if cell.workers is None else str(cell.workers),
        "threads": str(cell.threads) if cell.threads else "none",
        "views": run.variant,
        "Python": cell.python or None,
        "Django": cell.django or None,
        "gc mode": cell.gc,
        "load": "open loop" if open_loop else f"closed loop, {cell.users} users",
        "latency target": slo_text(slo_of([cell])) if open_loop else "none",
    }
    if open_loop:
        arrival = _matrix_value(matrix, "arrival")
        found["arrivals"] = None if arrival is None else str(arrival)
    workload = WORKLOADS.get(cell.workload)
    if workload is not None and workload.needs_upstream:
        ms = matrix.upstream_ms if matrix.upstream_ms is not None else DEFAULT_UPSTREAM_MS
        found["upstream latency"] = f"{ms} ms"
    return found


def differences(old: dict[str, str | None], new: dict[str, str | None]) -> tuple[str, ...]:
    """``name: old → new`` for each setting both record and that differs."""
    return tuple(
        f"{name}: {old[name]} → {new[name]}"
        for name in old
        if name in new
        and old[name] is not None
        and new[name] is not None
        and old[name] != new[name]
    )


def throughput(cell: Cell) -> Stat | None:
    """Requests/s, or the capacity (req/s at the latency target) in an open loop."""
    return cell.capacity_rps if cell.open_loop else cell.rps


IDENTITY = ("users", "python", "django", "gc", "sweep")
"""What tells apart two cells of one runner x workload within one invocation."""


def varies(cells: Sequence[Cell], dimension: str) -> bool:
    """Whether some runner x workload has cells differing in ``dimension``."""
    seen: dict[tuple[str, str], set[str]] = {}
    for cell in cells:
        seen.setdefault((cell.workload, cell.runner), set()).add(str(getattr(cell, dimension)))
    return any(len(values) > 1 for values in seen.values())


def compare_key(cell: Cell, dimensions: Sequence[str]) -> tuple[str, ...]:
    """Which cells of two invocations are paired: the same runner and workload, and
    the same users, interpreter, Django or gc mode where an invocation has several
    of them. Whether a pair is comparable is the settings' call (``settings``)."""
    return (cell.workload, cell.runner, *(str(getattr(cell, d)) for d in dimensions))


@dataclass(frozen=True)
class Comparison:
    shared: tuple[CellChange, ...]
    only_old: tuple[Cell, ...]
    only_new: tuple[Cell, ...]
    with_python: bool
    with_django: bool = False
    with_gc: bool = False
    not_comparable: tuple[Mismatch, ...] = ()


def compare(old: Results, new: Results) -> Comparison:
    """The cells two invocations share, with the change of each figure; the pairs
    whose settings differ are not compared, and say why."""
    old_cells, new_cells = cells_of(old), cells_of(new)
    dimensions = [d for d in IDENTITY if varies(old_cells, d) or varies(new_cells, d)]
    old_by_key = {compare_key(c, dimensions): c for c in old_cells}
    new_by_key = {compare_key(c, dimensions): c for c in new_cells}
    shared = []
    refused = []
    for cell in new_cells:
        before = old_by_key.get(compare_key(cell, dimensions))
        if before is None:
            continue
        reasons = differences(settings(before, old), settings(cell, new))
        if reasons:
            refused.append(Mismatch(old=before, new=cell, reasons=reasons))
            continue
        shared.append(
            CellChange(
                old=before,
                new=cell,
                rps=compare_stat(
                    throughput(before),
                    throughput(cell),
                    True,
                    before.capacity_band,
                    cell.capacity_band,
                ),
                p99=compare_stat(before.latency["p99"], cell.latency["p99"], False),
                rps_per_gib=compare_stat(
                    before.ranking, cell.ranking, True, before.ranking_band, cell.ranking_band
                ),
            )
        )
    with_python = "python" in dimensions
    with_django = "django" in dimensions
    return Comparison(
        shared=tuple(shared),
        only_old=tuple(c for k, c in old_by_key.items() if k not in new_by_key),
        only_new=tuple(c for k, c in new_by_key.items() if k not in old_by_key),
        with_python=with_python,
        with_django=with_django,
        with_gc=matters(old_cells, "gc") or matters(new_cells, "gc"),
        not_comparable=tuple(refused),
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
    if env.cgroups is not None:
        found = env.cgroups
        rows.append(
            (
                "Server cgroups",
                f"v{found.version}, under {found.memory_parent}"
                if found.available
                else f"none ({found.reason}): PSS only",
            )
        )
    if env.server_host is not None:
        # --agent: the servers ran on another host (this one sent the load).
        server_rows = environment_rows(env.server_host)
        rows += [(f"server host: {name}", value) for name, value in server_rows]
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
