"""The driver's defaults: the matrix, and how long each part of a run lasts."""

from __future__ import annotations

from dataclasses import dataclass

from runners import REPO_ROOT
from runners.vocabulary import Load

REPORTS_DIR = REPO_ROOT / "reports"

# The default matrix: the main contrasts (pre-fork with and without the
# copy-on-write pattern, threads, three async servers) on a CPU-bound, a
# template, a database, an I/O-bound and a mixed workload. 30 capacity
# searches, about 17 minutes on a 2-core machine (17:20 measured).
DEFAULT_RUNNERS = (
    "gunicorn-sync",
    "gunicorn-sync-freeze",
    "gunicorn-gthread",
    "uvicorn",
    "gunicorn-asgi",
    "granian-asgi",
)


DEFAULT_WORKLOADS = ("json", "fortunes", "feed", "upstream", "mixed")


DEFAULT_USERS = (32,)
"""``--load closed``: the users of the closed loop."""


@dataclass(frozen=True)
class Timing:
    """How long each part of a run lasts, per load mode, with and without ``--quick``."""

    warmup_s: float
    """Served, not measured: before the first probe (the saturation probe, or the closed
    loop's window)."""
    duration_s: float
    """The measured window: the capacity's confirmation window, or the closed loop's."""
    probe_s: float = 0.0
    """Each search probe's window (longer at low rates, see ``runners.bench.probing``)."""
    max_probes: int = 0
    """Open-loop probes after the saturation probe."""
    max_retakes: int = 0
    """Probes taken again at the same rate when they cannot be believed (a noisy machine
    costs this many more probes, at most, not accuracy)."""


TIMINGS: dict[tuple[Load, bool], Timing] = {
    ("open", False): Timing(warmup_s=2.0, duration_s=8.0, probe_s=1.5, max_probes=4, max_retakes=2),
    ("open", True): Timing(warmup_s=2.0, duration_s=4.0, probe_s=1.0, max_probes=3, max_retakes=2),
    ("closed", False): Timing(warmup_s=5.0, duration_s=20.0),
    ("closed", True): Timing(warmup_s=3.0, duration_s=8.0),
}

MAX_PROBE_S = 2.5
"""A probe is stretched at low rates to hold enough requests, up to this long."""
PROBE_OVERHEAD_S = 1.2
"""Per probe, besides its window: the pause that lets the previous probe's requests
end, the probe's own warm-up, and the wait for its last requests."""


# --quick: one runner of each family on a CPU-bound and an I/O-bound workload.
QUICK_RUNNERS = {"prefork": "gunicorn-sync", "threaded": "gunicorn-gthread", "async": "uvicorn"}


QUICK_WORKLOADS = ("json", "upstream")


QUICK_USERS = (16,)


RUN_OVERHEAD_S = 3.0
"""Per-run time besides warm-up and window: server start (Locust starts beside it) and
stop, Locust's spawning and the settle time before it quits (2.1-2.6 s measured)."""


SETUP_S = 20.0
"""Per-invocation time: database preparation (about 17 s to seed a fresh clone), upstream start."""


MICRO_ESTIMATE_S = 240.0
"""``--micro``: pyperf --fast over the 18 micro-benchmarks, measured on a 2-core machine."""


CALIBRATE_S = 15.0
"""``--calibrate``: a server and Locust started, 1 s of warm-up and a 3 s window."""
