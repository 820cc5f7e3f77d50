"""How long an invocation will take: per run and in all, from the options alone.

The console prints the estimate before the matrix starts and the remaining time while
it runs (``runners.bench.console``); Locust's own time limit is a safety net well past
a run's estimate (``runners.bench.run``)."""

from __future__ import annotations

from loadtests.catalog import needs_upstream
from runners.bench.defaults import (
    CALIBRATE_S,
    MAX_PROBE_S,
    MICRO_ESTIMATE_S,
    PROBE_OVERHEAD_S,
    RUN_OVERHEAD_S,
    SETUP_S,
)
from runners.bench.matrix import run_count
from runners.bench.options import Options


def run_estimate_s(options: Options, workload: str | None = None) -> float:
    """One run: server start and stop, Locust, the warm-up, probes and the window.

    A workload that waits on the upstream runs at tens of requests/s on sync
    servers: its probes and window are stretched to hold enough requests."""
    if options.load == "open":
        slow = workload is not None and needs_upstream(workload)
        probe_s = MAX_PROBE_S if slow else options.probe_s
        window_s = 2 * options.duration_s if slow else options.duration_s
        probes = (1 + options.max_probes) * (probe_s + PROBE_OVERHEAD_S)
        return options.warmup_s + probes + window_s + RUN_OVERHEAD_S
    spawn = max(options.users) / (options.spawn_rate or max(options.users))
    return options.warmup_s + options.duration_s + RUN_OVERHEAD_S + spawn


def estimate_s(options: Options) -> float:
    """The whole invocation: setup, calibration, every run, the micro-benchmarks."""
    micro = MICRO_ESTIMATE_S if options.micro else 0.0
    calibrate = CALIBRATE_S if options.calibrate else 0.0
    per_workload = run_count(options) // max(1, len(options.workloads))
    runs = sum(per_workload * run_estimate_s(options, w) for w in options.workloads)
    return SETUP_S + calibrate + runs + micro
