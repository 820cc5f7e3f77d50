"""What the driver prints: the plan, progress lines (plain for logs, a rich bar on a
terminal), the final table and the notes for each flag."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

from loadtests.catalog import (
    WORKLOADS,
)
from runners.bench.defaults import (
    DEFAULT_RUNNERS,
    DEFAULT_USERS,
    DEFAULT_WORKLOADS,
    MICRO_ESTIMATE_S,
    QUICK_USERS,
    QUICK_WORKLOADS,
    RUN_OVERHEAD_S,
    SETUP_S,
    TIMINGS,
    Timing,
)
from runners.bench.estimate import estimate_s, run_estimate_s
from runners.bench.matrix import RunSpec, concurrency, pods_of, run_count
from runners.bench.options import Options, quick_runners
from runners.bench.soak import SoakTarget
from runners.results.bands import (
    Band,
    capacity_band,
    capacity_band_per_gib,
    is_lower_bound,
    points,
)
from runners.results.criteria import DEFAULT_SLO_P99_MS
from runners.results.flags import notes_for
from runners.results.record import Run
from runners.runtimes.interpreters import Interpreter
from runners.serving.cpus import Placement
from runners.serving.registry import RUNNERS, format_table
from runners.vocabulary import DEFAULT_ARRIVAL, GcMode

MIB = 2**20


def fmt_count(value: float | None) -> str:
    if value is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}"


def run_label(run: Run) -> str:
    """The runner and the qualifiers of its run id: ``gunicorn-sync-preload py3.12.1 gc-off``."""
    return " ".join([run.runner, *run.qualifiers])


def band_text(band: Band | None) -> str:
    """``[2600, 2667]`` or ``[4491, ∞)`` (a lower bound); '' for no band or a point."""
    if band is None or band.point:
        return ""
    if band.high is None:
        return f"[{band.low:.0f}, ∞)"
    return f"[{band.low:.0f}, {band.high:.0f}]"


def rate_text(value: float | None, band: Band | None) -> str:
    """``2600``, or ``≥4491`` when the band says the figure is a lower bound."""
    if band is not None and band.open:
        return f"≥{band.low:.0f}"
    return "-" if value is None else f"{value:.0f}"


def summary_line(run: Run) -> str:
    if not run.ok:
        return f"FAILED: {run.error}"
    pss = run.memory.pss_peak_bytes if run.memory else None
    p99 = run.latency_ms.p99
    cap = run.capacity
    head = f"{run.rps:.0f} rps"
    if cap is not None:
        band = capacity_band(run)
        shown = band_text(band)
        head = (
            f"capacity {rate_text(cap.rps, band)} req/s{f' {shown}' if shown else ''} within "
            f"p99 {cap.slo_p99_ms:g} ms, bound {cap.bound}"
            if cap.rps is not None
            else f"no rate held p99 {cap.slo_p99_ms:g} ms ({run.rps:.0f} rps at the gentlest)"
        )
    parts = [
        head,
        f"{pss / MIB:.0f} MiB PSS" if pss else "- PSS",
        f"{fmt_count(run.rps_per_gib)} rps/GiB",
        f"p99 {p99:.3g} ms" if p99 is not None else "p99 -",
        f"loadgen {run.loadgen_cpu_percent:.0f}%"
        if run.loadgen_cpu_percent is not None
        else "loadgen -",
    ]
    if run.failures:
        parts.append(f"{run.failures} failed requests")
    line = ", ".join(parts)
    if run.flags:
        line += f" [{', '.join(run.flags)}]"
    for event in run.events or ():
        line += f"; {event}"
    return line


class ProgressView(Protocol):
    def starting(self, index: int, spec: RunSpec, elapsed: float, remaining: float) -> None: ...

    def finished(
        self, index: int, spec: RunSpec, run: Run, elapsed: float, remaining: float
    ) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """One line per event: readable in a CI log."""

    def __init__(self, total: int, stream: TextIO = sys.stdout) -> None:
        self.total = total
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def starting(self, index: int, spec: RunSpec, elapsed: float, remaining: float) -> None:
        self._print(
            f"[{index}/{self.total}] {spec.label}: running "
            f"(elapsed {fmt_duration(elapsed)}, ~{fmt_duration(remaining)} left)"
        )

    def finished(
        self, index: int, spec: RunSpec, run: Run, elapsed: float, remaining: float
    ) -> None:
        self._print(f"[{index}/{self.total}] {spec.label}: {summary_line(run)}")

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        pass


class RichProgress:
    """A live bar for the whole matrix on a terminal, with a line per finished run."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.total = total
        self.last = ""
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[times]}"),
            transient=False,
        )
        self.task = self.progress.add_task("matrix", total=total, times="")
        self.progress.start()

    def starting(self, index: int, spec: RunSpec, elapsed: float, remaining: float) -> None:
        last = f" | last: {self.last}" if self.last else ""
        self.progress.update(
            self.task,
            description=f"[{index}/{self.total}] {spec.label}",
            times=f"{fmt_duration(elapsed)} elapsed, ~{fmt_duration(remaining)} left{last}",
        )

    def finished(
        self, index: int, spec: RunSpec, run: Run, elapsed: float, remaining: float
    ) -> None:
        line = summary_line(run)
        if run.ok:
            self.last = f"{run.rps:.0f} rps, {fmt_count(run.rps_per_gib)} rps/GiB"
        self.progress.console.print(f"[{index}/{self.total}] {spec.label}: {line}", markup=False)
        self.progress.update(self.task, advance=1)

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False)

    def close(self) -> None:
        self.progress.stop()


def make_progress(total: int) -> ProgressView:
    if sys.stdout.isatty() and os.environ.get("CI") is None:
        with contextlib.suppress(ImportError):
            return RichProgress(total)
    return PlainProgress(total)


def load_label(run: Run) -> str:
    """``open p99<=100ms`` for a capacity search, ``u=32`` for a closed loop."""
    if run.capacity is not None:
        return f"open p99<={run.capacity.slo_p99_ms:g}ms"
    return "open" if run.load == "open" else f"u={run.users}"


def results_table(runs: Sequence[Run]) -> str:
    """A plain-text table of the runs, for the end of the log: for a capacity search,
    rps is the rate held within the latency target (its confirmation window), ``≥`` when
    it is a lower bound, and band what the search knows of it: ``[low, high]``, from
    the highest rate that passed twice to the lowest that failed after its retake
    (``[low, ∞)``: a lower bound)."""
    header = (
        "runner",
        "workload",
        "load",
        "rps",
        "band",
        "p99 ms",
        "PSS MiB",
        "rps/GiB",
        "bound",
        "loadgen",
        "flags",
    )
    rows = [header]
    for run in runs:
        if not run.ok:
            rows.append(
                (
                    run_label(run),
                    run.workload,
                    load_label(run),
                    "FAILED",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                )
            )
            continue
        pss = run.memory.pss_peak_bytes if run.memory else None
        p99 = run.latency_ms.p99
        lg = run.loadgen_cpu_percent
        # A closed loop has no band: a lower bound's figure is still shown as one.
        lower = run.capacity is None and is_lower_bound(run)
        band = capacity_band(run) or (points([run.rps], True) if lower else None)
        per_gib = capacity_band_per_gib(run) or (points([run.rps_per_gib], True) if lower else None)
        rows.append(
            (
                run_label(run),
                run.workload,
                load_label(run),
                rate_text(run.rps, band),
                band_text(band),
                "-" if p99 is None else f"{p99:.3g}",
                "-" if not pss else f"{pss / MIB:.1f}",
                rate_text(run.rps_per_gib, per_gib),
                run.capacity.bound if run.capacity is not None else "",
                "-" if lg is None else f"{lg:.0f}%",
                ",".join(run.flags),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def flag_notes(runs: Sequence[Run]) -> list[str]:
    """One explanation per flag that some run carries, naming the runs."""
    flagged: dict[str, list[str]] = {}
    for run in runs:
        for flag in run.flags:
            flagged.setdefault(flag, []).append(run.id)
    return [
        f"{note} ({', '.join(flagged[flag])})" for flag in flagged for note in notes_for([flag])
    ]


def describe_runtimes(
    pythons: Sequence[Interpreter],
    djangos: Sequence[str],
    gcs: Sequence[GcMode],
    target: SoakTarget | None,
) -> str:
    """One line for the plan printed before the matrix starts ('' when nothing varies)."""
    parts: list[str] = []
    if pythons:
        parts.append("interpreters " + ", ".join(f"{p.label} ({p.path})" for p in pythons))
    if djangos:
        parts.append("Django " + ", ".join(djangos))
    if gcs:
        parts.append("gc " + ", ".join(gcs) + " (preloading pre-fork runners; others: default)")
    if target is not None:
        parts.append(f"soak: {target.describe()} per run, per-worker memory sampled throughout")
    return "Runtimes: " + "; ".join(parts) + "." if parts else ""


def _timing(t: Timing) -> str:
    probes = f" (up to {t.max_probes} probes of {t.probe_s:g} s)" if t.max_probes else ""
    return f"--warmup {t.warmup_s:g} --duration {t.duration_s:g}{probes}"


def describe_plan(options: Options) -> str:
    per_run = sum(run_estimate_s(options, w) for w in options.workloads) / len(options.workloads)
    if options.load == "open":
        each = (
            f"each a capacity search within p99 {options.slo_p99_ms:g} ms ({options.arrival} "
            f"arrivals): {options.warmup_s:g} s warm-up, a saturation probe and up to "
            f"{options.max_probes} open-loop probes of {options.probe_s:g} s (and up to "
            f"{options.max_retakes} retakes of a disturbed probe on a noisy machine, not in "
            f"the estimate), then a {options.duration_s:g} s confirmation window"
        )
        levels = ""
    else:
        spawn = max(options.users) / (options.spawn_rate or max(options.users))
        each = (
            f"each a closed loop: {options.warmup_s:g} s warm-up + {options.duration_s:g} s "
            f"measured + ~{RUN_OVERHEAD_S + spawn:.0f} s start/stop"
        )
        levels = f" x {len(options.users)} user levels"
    sweep = describe_sweep(options)
    text = (
        f"Plan: {run_count(options)} runs = {len(options.runners)} runners"
        f"{' x their worker/thread counts' if sweep else ''}"
        f"{' x their pods (memory/CPU limits, worker rules)' if any_pods(options) else ''} x "
        f"{len(options.workloads)} workloads{levels} x {options.repeat} repeats; {each}.\n"
        f"{f'Sweep: {sweep}.' + chr(10) if sweep else ''}"
        f"Estimated time: ~{fmt_duration(estimate_s(options))} "
        f"({run_count(options)} x ~{per_run:.0f} s + ~{SETUP_S:.0f} s setup"
        f"{f' + ~{MICRO_ESTIMATE_S:.0f} s micro-benchmarks' if options.micro else ''}). "
        f"{options.placement.describe()}."
    )
    line = describe_runtimes(options.pythons, options.djangos, options.gcs, options.soak)
    return f"{text}\n{line}" if line else text


def any_pods(options: Options) -> bool:
    """Some runner runs as several pods (``--memory-limit``, ``--cpu-limit``,
    ``--worker-rule`` with several values)."""
    return any(len(pods_of(RUNNERS[name], options)) > 1 for name in options.runners)


def describe_sweep(options: Options) -> str:
    """``gunicorn-sync workers 1,2,3; waitress threads 1,2,4,8``: the runners run at
    several worker or thread counts (empty when none is)."""
    parts = []
    for name in options.runners:
        pairs = concurrency(options, RUNNERS[name])
        if len(pairs) < 2:
            continue
        workers = list(dict.fromkeys(w for w, _ in pairs))
        threads = list(dict.fromkeys(t for _, t in pairs))
        if len(workers) > 1 and len(threads) > 1 and len(pairs) < len(workers) * len(threads):
            text = "workers x threads " + ",".join(f"{w}x{t}" for w, t in pairs)
        else:
            text = " x ".join(
                f"{what} {','.join(map(str, values))}"
                for what, values in (("workers", workers), ("threads", threads))
                if len(values) > 1
            )
        parts.append(f"{name} {text}")
    return "; ".join(parts)


def list_text(placement: Placement) -> str:
    lines = [
        f"Runners (workers on {len(placement.server)} server CPUs):",
        format_table(len(placement.server)),
        "",
        "Workloads (Locust user class, loadtests/locustfile.py):",
    ]
    width = max(len(w) for w in WORKLOADS)
    lines += [
        f"  {w.name.ljust(width)}  {w.user_class:<18} {w.description}" for w in WORKLOADS.values()
    ]
    lines += [
        "",
        f"Default: --runners {','.join(DEFAULT_RUNNERS)} --workloads {','.join(DEFAULT_WORKLOADS)} "
        f"--load open --slo-p99 {DEFAULT_SLO_P99_MS:g} --arrival {DEFAULT_ARRIVAL} "
        f"{_timing(TIMINGS[('open', False)])}",
        f"--quick:  --runners {','.join(quick_runners())} --workloads {','.join(QUICK_WORKLOADS)} "
        f"{_timing(TIMINGS[('open', True)])}",
        f"--load closed: --users {','.join(map(str, DEFAULT_USERS))} "
        f"{_timing(TIMINGS[('closed', False)])} (--quick: --users "
        f"{','.join(map(str, QUICK_USERS))} {_timing(TIMINGS[('closed', True)])})",
    ]
    return "\n".join(lines)
