"""What a measured figure is judged against: the capacity target's defaults and every
threshold a probe, a bound, a flag or the planner uses, each defined once.

The capacity search (``runners.bench.capacity``), the flags
(``runners.results.flags``), the planner and the report take them from here; the
report passes them to its templates.
"""

from __future__ import annotations

DEFAULT_SLO_P99_MS = 100.0
"""The latency target of the capacity search (``--slo-p99``)."""
MAX_ERROR_RATE = 0.001
"""At most 0.1% of the requests of a passing probe may fail."""
ACHIEVED_SHARE = 0.95
"""A probe that got fewer than this share of the offered rate back as successes fails."""
LOADGEN_CPU_PERCENT = 90.0
"""Load-generator CPUs (everything pinned there counted) or one Locust process busier
than this measured the generator, not the server (Locust warns at 90% too)."""
LATE_SHARE = 0.02
"""More than this share of requests sent late by the generator: it fell behind."""
LOADGEN_STALL_CPU_PERCENT = 70.0
"""Late tickets with the load generator's CPUs under this: not its limit, a stall of the
host (steal, a burst): the probe is retaken, and the run flagged ``loadgen-stalls`` if
it persists, never bound by ``loadgen``."""
BURST_SHARE = 0.01
"""A probe whose p99 missed the target with fewer than this share of its requests over
it (and no queue building) failed on a short burst: it is retaken."""
GALLOP_CPU_PERCENT = 50.0
"""A passing probe (or an async server's saturation probe) whose server CPUs stayed
under this was far from the server's limit: the search steps up by doubling."""
SERVER_CPU_PERCENT = 85.0
"""Server CPUs busier than this: the server ran out of CPU (at a probe's failing rate;
for the planner, a saturated configuration)."""
LOW_MEMORY_SHARE = 0.05
"""Less than this share of the host's memory available: memory-bound."""
DRIFT_RATIO = 1.5
DRIFT_SHARE = 0.1
"""A probe whose second half's median latency is over ``DRIFT_RATIO`` times its first
half's, and higher by over ``DRIFT_SHARE`` of the target, was building a queue: its rate
is above what the server sustains, however short the probe that hid it."""
CONFIRM_BACKOFF = 0.9
"""A confirmation window that misses the target is retried at this share of the lower of
its rate and what it served."""
NOISY_SPREAD = 0.05
"""A cell whose repeats' rps lie further than this from their mean (half the
max - min range, relative to the mean) is noisy."""
NOISY_CV = 0.05
"""A cell whose ranking figure varies more than this over its repeats
(coefficient of variation: stdev / mean) is noisy."""
USER_BOUND_CPU_PERCENT = 70.0
"""A closed-loop run whose server CPUs stayed below this (with the load generator
not saturated and free server slots) measured its user count, not the server."""
INTERFERENCE_SHARE = 0.05
"""Above this share of the window on the server's or the load generator's CPUs, other
processes used enough CPU to move the figures (``runners.sampling.interference``)."""
STEAL_SHARE = 0.05
"""Above this share of the window on the server's or the load generator's CPUs, the
hypervisor took enough of their time to move the figures (``runners.sampling.cpustat``)."""
WORKING_SET_GAP = 0.10
"""A run whose cgroup working set and summed PSS differ by more than this share gets a
sentence in the report saying which part explains it."""
FIT_HOLD_S = 30.0
"""``--fit-memory`` without ``--soak``: how long each trial holds its capacity rate."""
FIT_MAX_WORKERS = 16
"""``--fit-memory`` never tries more workers than this (nor more than the idle footprint
allows)."""
