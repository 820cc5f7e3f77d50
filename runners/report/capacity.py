"""The open-loop capacity as the report shows it: which cells it ranks, what bounded
each runner (in words), and the saturation curves of the capacity search.

A cell of open-loop runs is ranked by capacity per GiB: the highest rate its
server sustained with p99 within the latency target, per GiB of peak summed
PSS (``Cell.ranking``), with its band (``Cell.ranking_band``). The report adds two
flags of its own to such a cell, for files whose runs do not carry them:

- ``loadgen-bound`` when the search stopped because the load generator could
  not keep its schedule (``capacity.bound == "loadgen"``): the figure is the
  generator's limit, a lower bound of the server's (ranked as ``≥ X``);
- ``unconfirmed`` when a repeat's confirmation window missed the target
  (``capacity.confirmed`` false) and no repeat's held: the rate found did not hold a
  second time, so the cell is not ranked. Where some repeats held, the cell is ranked
  by those and flagged ``partly-confirmed`` (``runners.results.cells``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runners.report.formats import fmt_ms, fmt_num, fmt_pct
from runners.results.bands import band_text
from runners.results.cells import PARTLY_CONFIRMED, UNCONFIRMED, Cell, stat, unconfirmed
from runners.results.criteria import MAX_ERROR_RATE
from runners.results.flags import UNRANKED, order_flags
from runners.results.record import Probe, Run

JSON = dict[str, Any]


@dataclass(frozen=True)
class ReportCell(Cell):
    """A cell as the report ranks it: its caveats include the report's own flags."""

    @property
    def caveats(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags if f in UNRANKED)


def unconfirmed_runs(cell: Cell) -> list[Run]:
    """The repeats whose confirmation window missed the target (not those where no
    rate passed: they had no confirmation window)."""
    return [r for r in cell.ok_runs if unconfirmed(r) and r.capacity and r.capacity.rps]


def report_cell(cell: Cell) -> ReportCell:
    """``cell`` with the report's caveats of an open-loop cell added to its flags."""
    extra: list[str] = []
    if cell.open_loop:
        if any(r.capacity is not None and r.capacity.bound == "loadgen" for r in cell.ok_runs):
            extra.append("loadgen-bound")
        if unconfirmed_runs(cell) and PARTLY_CONFIRMED not in cell.flags:
            extra.append(UNCONFIRMED)
    fields = {f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)}
    fields["flags"] = order_flags([*cell.flags, *extra])
    return ReportCell(**fields)


def slo_of(cells: Sequence[Cell]) -> float | None:
    """The latency target of the cells' capacity search (the first one recorded)."""
    for cell in cells:
        for run in cell.ok_runs:
            if run.capacity is not None:
                return run.capacity.slo_p99_ms
    return None


def slo_text(slo: float | None) -> str:
    """``p99 ≤ 100 ms``."""
    return f"p99 ≤ {slo:g} ms" if slo is not None else "the latency target"


# --- what bounded each runner, in words ---------------------------------------------------------


def slots_text(cell: Cell) -> str:
    """``all 3 workers`` or ``all 4 threads (1 worker x 4)``: a server's concurrency."""
    workers = cell.workers or 1
    if cell.threads:
        total = workers * cell.threads
        return (
            f"all {total} threads ({workers} worker{'s' if workers != 1 else ''} × {cell.threads})"
        )
    return f"all {workers} worker{'s' if workers != 1 else ''}"


def _server_cpu(cell: Cell) -> float | None:
    found = stat(r.server_cpu_percent for r in cell.ok_runs)
    return found.mean if found is not None else None


def _next_failing_probe(cell: Cell) -> Probe | None:
    """The first repeat's lowest failing open-loop probe above its capacity: where the
    bound was judged."""
    run = next((r for r in cell.ok_runs if r.capacity is not None), None)
    if run is None or run.capacity is None or run.capacity.offered_rps is None:
        return None
    above = [
        p
        for p in run.capacity.curve
        if p.mode == "open" and not p.passed and (p.offered_rps or 0) > run.capacity.offered_rps
    ]
    return min(above, key=lambda p: p.offered_rps or 0.0, default=None)


def lower_bound_reasons(cell: Cell) -> list[str]:
    """Why the cell's figure is a lower bound, in words ([] when it is not one)."""
    if not cell.lower_bound:
        return []
    reasons = []
    runs = cell.ok_runs
    if any(
        "loadgen-bound" in r.flags or (r.capacity is not None and r.capacity.bound == "loadgen")
        for r in runs
    ):
        reasons.append("the load generator could not push harder")
    if any(
        r.capacity is not None
        and r.capacity.lower_bound
        and r.capacity.bound != "loadgen"
        and r.capacity.high_rps is None
        for r in runs
    ):
        reasons.append("no probe failed within the search's budget")
    if any("interference" in r.flags for r in runs):
        reasons.append("other programs took some of its CPUs")
    return reasons or ["its figure is a lower bound"]


def _disturbance(probe: Probe) -> str:
    """What disturbed a retaken take, in a word or two (``Probe.disturbed`` says it with
    its figures): steal, other programs, a stalled load generator, a short burst; or
    nothing (a result that contradicted the curve)."""
    why = probe.disturbed or ""
    for start, kind in (
        ("the hypervisor", "steal"),
        ("other programs", "other programs"),
        ("the load generator", "a stalled load generator"),
        ("a short burst", "a short burst"),
    ):
        if why.startswith(start):
            return kind
    return why or "a result that contradicted the curve"


def retake_text(cell: Cell) -> str:
    """``the search retook 3 probes it could not believe: steal (2), a short burst``, and
    the disputed ones; '' when it retook none."""
    probes = [
        p
        for r in cell.ok_runs
        if r.capacity is not None
        for p in r.capacity.curve
        if p.mode == "open"
    ]
    retaken = [p for p in probes if p.retaken]
    disputed = [p for p in probes if p.disputed]
    parts = []
    if retaken:
        kinds = [_disturbance(p) for p in retaken]
        counted = ", ".join(
            f"{kind} ({kinds.count(kind)})" if kinds.count(kind) > 1 else kind
            for kind in dict.fromkeys(kinds)
        )
        parts.append(
            f"the search retook {len(retaken)} probe{'s' if len(retaken) != 1 else ''} it "
            f"could not believe: {counted}"
        )
    if disputed:
        rates = ", ".join(f"{fmt_num(p.offered_rps)} req/s" for p in disputed)
        parts.append(f"its takes at {rates} disagreed (disputed)")
    return "; ".join(parts)


def bound_sentence(cell: Cell, label: str) -> str:
    """One sentence: what bounded ``label`` (the cell's runner) on its workload, with the
    capacity (its band, when the search recorded one) and the p99 at it (means over the
    ok repeats), and the probes the search retook."""
    head = f"{label} on {cell.workload}"
    if cell.failed:
        error = next((r.error for r in cell.runs if r.error), None) or "no error recorded"
        return f"{head}: every repeat failed ({error})."
    rps = cell.capacity_rps.mean if cell.capacity_rps is not None else None
    p99 = cell.latency["p99"]
    band = cell.capacity_band
    shown = band_text(band) if band is not None and band.measured and not band.open else ""
    at = (
        f"{fmt_num(rps)} req/s{f' {shown}' if shown else ''} "
        f"(p99 {fmt_ms(p99.mean if p99 is not None else None)} ms)"
    )
    cpu = _server_cpu(cell)
    cpu_text = f"server CPU {cpu:.0f} %" if cpu is not None else "server CPU not measured"
    if rps is None:
        text = f"{head}: no rate met {slo_text(slo_of([cell]))} ({cell.bound or 'no bound'})"
    elif cell.bound == "server-cpu":
        text = f"{head}: server CPU saturated at {at}"
        failing = _next_failing_probe(cell)
        if failing is not None and failing.server_cpu_percent is not None:
            text = (
                f"{head}: {at}; at {fmt_num(failing.offered_rps)} req/s the server's CPU was "
                f"{failing.server_cpu_percent:.0f} % busy and requests queued for it"
                f" (p99 {fmt_ms(failing.p99_ms)} ms)"
            )
    elif cell.bound == "server-slots":
        text = f"{head}: {slots_text(cell)} busy at {at}, with {cpu_text}"
    elif cell.bound == "loadgen":
        text = (
            f"{head}: the load generator could not keep its schedule above {at}, with "
            f"{cpu_text}; the server may do more"
        )
    elif cell.bound == "errors":
        text = f"{head}: more than {fmt_pct(MAX_ERROR_RATE)} of requests failed above {at}"
    elif cell.bound == "memory":
        text = f"{head}: the host ran out of memory above {at}"
    else:
        text = f"{head}: {at}, bound not recorded"
    if rps is not None and cell.lower_bound and cell.bound != "loadgen":
        text += f"; a lower bound: {', '.join(lower_bound_reasons(cell))}"
    bounds = sorted({r.capacity.bound for r in cell.ok_runs if r.capacity is not None})
    if len(bounds) > 1:
        text += f"; the repeats disagree ({', '.join(bounds)})"
    retakes = retake_text(cell)
    if retakes:
        text += f"; {retakes}"
    for run in unconfirmed_runs(cell):
        text += (
            f"; repeat {run.repeat} not confirmed: its confirmation window had p99 "
            f"{fmt_ms(run.latency_ms.p99)} ms"
        )
    failed = len(cell.runs) - len(cell.ok_runs)
    if failed:
        text += f"; {failed} of {len(cell.runs)} repeats failed"
    return text + "."


def bound_reason(cell: Cell) -> str:
    """The capacity search's own words on what bounded the cell's first ok repeat."""
    run = next((r for r in cell.ok_runs if r.capacity is not None), None)
    return run.capacity.reason if run is not None and run.capacity is not None else ""


# --- the saturation curves ---------------------------------------------------------------------


def curve_run(cell: Cell) -> Run | None:
    """The run whose curve the charts draw: the cell's first ok run with one."""
    return next((r for r in cell.ok_runs if r.capacity is not None and r.capacity.curve), None)


def _open_probes(run: Run) -> list[Probe]:
    assert run.capacity is not None
    probes = [p for p in run.capacity.curve if p.mode == "open" and p.offered_rps]
    return sorted(probes, key=lambda p: p.offered_rps or 0.0)


@dataclass(frozen=True)
class CurveRow:
    """One runner's curve: the run drawn, its probes in search order, its knee."""

    label: str
    cell: Cell
    run: Run
    color: str

    @property
    def probe_count(self) -> int:
        return len(self.run.capacity.curve) if self.run.capacity is not None else 0


def curve_rows(
    cells: Sequence[Cell], label_of: Callable[[Cell], str], colors: Mapping[str, str]
) -> tuple[CurveRow, ...]:
    """One row per cell whose capacity search recorded a curve: the rows of a workload's
    saturation table and the lines of its charts."""
    rows = []
    for cell in cells:
        run = curve_run(cell)
        if run is not None:
            label = label_of(cell)
            rows.append(CurveRow(label, cell, run, colors[label]))
    return tuple(rows)


def _knee(row: CurveRow, figure: str) -> JSON | None:
    """The capacity (the knee) on the ``rate`` or the ``p99`` chart: where the confirmed
    rate was offered; None when there is none, or no p99 to draw it at."""
    capacity = row.run.capacity
    if capacity is None or capacity.offered_rps is None or capacity.rps is None:
        return None
    y = round(capacity.rps, 1) if figure == "rate" else row.run.latency_ms.p99
    if y is None:
        return None
    return {"label": row.label, "color": row.color, "x": capacity.offered_rps, "y": y}


def _believed(probes: Sequence[Probe]) -> list[Probe]:
    """The takes the search believed (a retaken take was replaced by a later one)."""
    return [p for p in probes if not p.retaken]


def _rate_line(row: CurveRow, probes: Sequence[Probe]) -> JSON:
    """One runner's achieved rate against the offered rate, through the takes the
    search believed: a hollow point per miss, ``disputed`` where the takes disagreed."""
    believed = _believed(probes)
    return {
        "label": row.label,
        "color": row.color,
        "passed": [p.passed for p in believed],
        "disputed": [p.disputed for p in believed],
        "data": [{"x": p.offered_rps, "y": p.achieved_rps} for p in believed],
    }


def _p99_line(row: CurveRow, probes: Sequence[Probe]) -> JSON:
    """One runner's p99 against the offered rate (the believed takes that recorded one)."""
    timed = [p for p in _believed(probes) if p.p99_ms is not None]
    return {
        "label": row.label,
        "color": row.color,
        "passed": [p.passed for p in timed],
        "disputed": [p.disputed for p in timed],
        "data": [{"x": p.offered_rps, "y": p.p99_ms} for p in timed],
    }


def _retaken_points(probes: Sequence[tuple[CurveRow, list[Probe]]], figure: str) -> list[JSON]:
    """The takes the search did not believe (it took the rate again), every runner's,
    in its colour: drawn apart from the lines."""
    found = []
    for row, taken in probes:
        for p in taken:
            y = p.achieved_rps if figure == "rate" else p.p99_ms
            if p.retaken and y is not None:
                found.append({"label": row.label, "color": row.color, "x": p.offered_rps, "y": y})
    return found


def saturation_charts(prefix: str, rows: Sequence[CurveRow], slo: float | None) -> dict[str, JSON]:
    """The two saturation charts of one workload, by chart id (none without rows):
    achieved rate and p99 against the offered rate, one line per runner, the knee
    marked, the target ``slo`` drawn."""
    if not rows:
        return {}
    probes = [(row, _open_probes(row.run)) for row in rows]
    offered = [p.offered_rps or 0.0 for _, found in probes for p in found]
    achieved = [p.achieved_rps for _, found in probes for p in found if p.achieved_rps > 0]
    span = [min(offered), max(offered)] if offered else [1.0, 10.0]
    # Both axes of the rate chart span what was offered and what came back.
    both = offered + achieved
    rate_knees = [k for row in rows if (k := _knee(row, "rate")) is not None]
    p99_knees = [k for row in rows if (k := _knee(row, "p99")) is not None]
    return {
        f"{prefix}-sat": {
            "kind": "saturation",
            "figure": "rate",
            "datasets": [_rate_line(row, found) for row, found in probes],
            "retaken": _retaken_points(probes, "rate"),
            "knees": rate_knees,
            "span": [min(both), max(both)] if both else span,
            "yTitle": "achieved (successful req/s)",
        },
        f"{prefix}-sp99": {
            "kind": "saturation",
            "figure": "p99",
            "datasets": [_p99_line(row, found) for row, found in probes],
            "retaken": _retaken_points(probes, "p99"),
            "knees": p99_knees,
            "span": span,
            "target": slo,
            "targetLabel": f"target {slo_text(slo)}",
            "yTitle": "p99 latency (ms, log scale)",
        },
    }
