"""Measuring one running server with Locust's probes: the open-loop capacity search with
its confirmation window (``--load open``, the default), or one closed-loop window at a
fixed user count (``--load closed``).

Every probe starts from an idle server (the plugin pauses the load and lets the
requests in flight end), has a short warm-up at its own setting, and is
measured from the plugin's window markers: the server's CPUs and the
load-generator CPUs are read from ``/proc/stat`` (``runners.sampling.cpustat``:
everything pinned there counts, the upstream service beside Locust included)
between the window's start and end. The confirmation window (or the closed
loop's one window) also samples the server's memory; its figures are the run's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from loadtests.window import ProbeCommand, ProbeResult
from runners.bench import capacity, soak
from runners.bench.capacity import ProbeObservation, Target
from runners.bench.defaults import MAX_PROBE_S
from runners.bench.host_usage import database_record, interference_record
from runners.bench.incidents import Incidents, worker_changes
from runners.bench.options import Options
from runners.bench.profiles import Profiler
from runners.hosting import Hosted
from runners.load.locust import LocustProcess
from runners.results import latency
from runners.results.criteria import CONFIRM_BACKOFF, INTERFERENCE_SHARE, USER_BOUND_CPU_PERCENT
from runners.results.figures import per_gib
from runners.results.record import (
    Capacity,
    DatabaseUsage,
    Interference,
    Measurement,
    Memory,
    Probe,
    SoakSeries,
)
from runners.sampling import cpustat, interference
from runners.sampling.memory import TreeSample, summarize
from runners.serving.net import http_get
from runners.vocabulary import Load

PROBE_WARMUP_S = 0.5
"""Load at a probe's own setting before its window opens (the first probe: ``--warmup``)."""
MIN_PROBE_REQUESTS = 150
"""A probe's window lasts long enough to hold about this many requests, up to
``MAX_PROBE_S``."""
MIN_CONFIRM_REQUESTS = 200
"""The confirmation window is stretched (up to 2x ``--duration``) to hold this many."""
CONFIRM_ATTEMPTS = 2
IDLE_HEALTH_S = 0.1
"""A server that answers ``/health`` this fast has nothing queued."""
IDLE_TIMEOUT_S = 30.0


def slots(server: Hosted) -> int | None:
    """Requests the server can work on at once: workers x threads for sync servers,
    None for async ones (no fixed limit)."""
    if server.runner.family == "async":
        return None
    return server.workers * (server.threads or 1)


def saturation_users(server_slots: int | None) -> int:
    """Enough users to keep every slot busy, with requests queued behind them."""
    if server_slots is None:
        return capacity.SATURATION_USERS
    return max(8, 4 * server_slots)


@dataclass
class ProbeWindow:
    """A measured window: what Locust saw, the CPUs around it, the memory samples."""

    result: ProbeResult
    server_cpu_percent: float | None
    loadgen_cpu_percent: float | None
    samples: list[TreeSample] = field(default_factory=list)
    sampler_cpu_percent: float = 0.0
    interference: Interference | None = None
    database: DatabaseUsage | None = None
    connections: int | None = None
    """New TCP connections the load generator opened to the server in the window."""

    def observation(self) -> ProbeObservation:
        r = self.result
        hist = latency.merged([r.latency_hdr])
        lat = latency.latency(hist)
        halves = tuple(latency.latency(latency.merged([h])).p50 for h in r.halves_hdr)
        offered = r.rate
        if r.mode == "open" and r.scheduled and r.duration_s > 0:
            offered = r.scheduled / r.duration_s  # the arrivals the window really held
        return ProbeObservation(
            mode=r.mode,
            offered_rps=offered,
            nominal_rps=r.rate,
            p50_halves_ms=(halves[0], halves[1]),
            # The server's throughput: what it answered inside the window (an overloaded
            # server's backlog, answered once the window is over, is not throughput).
            achieved_rps=r.served / r.duration_s if r.duration_s > 0 else 0.0,
            p50_ms=lat.p50,
            p99_ms=lat.p99,
            requests=r.requests,
            failures=r.failures,
            users=r.users,
            server_cpu_percent=self.server_cpu_percent,
            loadgen_cpu_percent=self.loadgen_cpu_percent,
            loadgen_process_percent=r.busiest_process_percent,
            late_share=r.late_fraction,
            scheduled=r.scheduled if r.mode == "open" else 0,
            served=r.served,
        )


class Probing:
    """Probes against one server through one Locust process."""

    def __init__(
        self,
        locust: LocustProcess,
        server: Hosted,
        options: Options,
        check: Callable[[], None] | None = None,
        profiler: Profiler | None = None,
    ) -> None:
        self.locust = locust
        self.server = server
        self.options = options
        self.check = check
        self.profiler = profiler
        self.seq = 0
        self.target = Target(slo_p99_ms=options.slo_p99_ms)
        self.local = options.agent is None
        """The server runs on this host (not through ``--agent``): who else used its CPUs
        and what a local database used are measured here."""
        self.database_pid = (
            interference.database_server_pid(options.database_url) if self.local else None
        )

    def run(
        self,
        mode: Load,
        rate: float | None,
        users: int,
        duration_s: float,
        *,
        sample: bool = False,
        reset_stats: bool = False,
        max_requests: int = 0,
        on_start: Callable[[], object] | None = None,
        on_end: Callable[[], object] | None = None,
        profile: bool | None = None,
    ) -> ProbeWindow:
        """One probe; ``sample``: sample the server's memory over its window; ``on_start``
        and ``on_end`` are called as the window opens and closes; ``profile`` (default:
        ``sample``): the profiler's hooks too."""
        profiler = self.profiler if (sample if profile is None else profile) else None
        options = self.options
        placement = options.placement
        drain_s = options.request_timeout_s + 0.5
        if self.seq:
            # From an idle server: Locust stops sending and its requests end, then the
            # server works off what clients gave up on (queued in its listen backlog).
            self.seq += 1
            self.locust.pause(self.seq, drain_s, self.check)
            wait_idle(self.server)
        self.seq += 1
        command = ProbeCommand(
            seq=self.seq,
            mode=mode,
            users=users,
            rate=rate,
            duration_s=duration_s,
            warmup_s=options.warmup_s if self.seq == 1 else PROBE_WARMUP_S,
            arrival=options.arrival,
            drain_s=drain_s,
            late_s=options.slo_p99_ms / 1000.0 / 10.0,
            reset_stats=reset_stats,
            max_requests=max_requests,
        )
        # The load generator's CPUs here, the server's on its host (``hosting``).
        window = self.server.window(sample=sample, interval=sample_interval(duration_s))
        marks: list[interference.Mark] = []
        loadgen_marks: list[cpustat.CpuTimes] = []
        database: list[interference.DatabaseMemory | None] = []

        def mark() -> None:
            if self.local:
                marks.append(
                    interference.mark(placement.server, placement.loadgen, self.database_pid)
                )
                loadgen_marks.append(marks[-1].cpus)
            else:
                # Through an agent the server's CPUs are another host's: only the load
                # generator's are read here (and no one else's use of them is told apart).
                loadgen_marks.append(cpustat.read())

        def opened() -> None:
            mark()
            window.open()
            if profiler is not None:
                profiler.window_opened()
            if on_start is not None:
                on_start()

        def closed() -> None:
            mark()
            if self.database_pid is not None:
                database.append(interference.database_memory(self.database_pid))
            window.close()
            if profiler is not None:
                profiler.window_closed()
            if on_end is not None:
                on_end()

        try:
            result = self.locust.probe(command, on_start=opened, on_end=closed, check=self.check)
        finally:
            figures = window.close()  # idempotent: the sampling never outlives the probe
        if sample and figures.error is not None:
            raise ServerDied(f"the server died during the run ({figures.error})")
        return ProbeWindow(
            result,
            server_cpu_percent=figures.server_cpu_percent,
            loadgen_cpu_percent=cpustat.busy_percent(
                loadgen_marks[0], loadgen_marks[-1], placement.loadgen
            ),
            samples=list(figures.samples),
            sampler_cpu_percent=figures.sampler_cpu_percent,
            interference=interference_record(marks[0], marks[-1], options) if marks else None,
            database=database_record(
                marks[0], marks[-1], database[-1] if database else None, options
            )
            if marks
            else None,
            # Counted by the load generator as its users connect (loadtests/locustfile.py).
            connections=result.connects,
        )

    def probe_seconds(self, rate: float | None) -> float:
        """A search probe's window: ``probe_s``, longer at low rates (up to ``MAX_PROBE_S``)."""
        base = self.options.probe_s
        if rate is None or rate <= 0:
            return base
        return max(base, min(MAX_PROBE_S, MIN_PROBE_REQUESTS / rate))

    def observe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
        """``capacity.search``'s probe."""
        return self.run(mode, rate, users, self.probe_seconds(rate)).observation()


def wait_idle(server: Hosted, timeout: float = IDLE_TIMEOUT_S) -> float:
    """Wait until the server answers ``/health`` within ``IDLE_HEALTH_S`` (a busy sync
    server answers it only after the requests queued before it); the seconds waited."""
    began = time.monotonic()
    while True:
        asked = time.monotonic()
        with contextlib.suppress(OSError):
            http_get(server.host, server.port, "/health", timeout=timeout)
        now = time.monotonic()
        if now - asked < IDLE_HEALTH_S or now - began >= timeout:
            return now - began
        time.sleep(0.05)


class ServerDied(RuntimeError):
    """The server's root process ended during a run."""


def sample_interval(duration_s: float) -> float:
    """About ten samples over short windows, one a second over long ones."""
    return min(1.0, max(0.25, duration_s / 10))


@dataclass(frozen=True)
class RunFindings:
    """What one run measured: the window's figures, what went wrong, the run's flags."""

    measurement: Measurement
    incidents: Incidents
    flags: tuple[str, ...]
    capacity: Capacity | None = None
    soak_series: SoakSeries | None = None


def measurement(window: ProbeWindow, options: Options, locust_rps: float | None) -> Measurement:
    """The run's figures from its measured window."""
    r = window.result
    memory = Memory.from_dict(
        summarize(window.samples, sampler_cpu_percent=window.sampler_cpu_percent)
    )
    return Measurement(
        window_s=r.duration_s,
        requests=r.requests,
        failures=r.failures,
        latency=latency.latency(latency.merged([r.latency_hdr])),
        locust_rps=locust_rps,
        memory=memory,
        cpu_seconds=memory.cpu_seconds,
        loadgen_cpu_seconds=r.loadgen_cpu_seconds,
        loadgen_cpus=max(1, min(len(options.placement.loadgen), len(r.processes) or 1)),
        server_cpus=len(options.placement.server),
        latency_hdr=r.latency_hdr or None,
        offered_rps=r.rate,
        timeouts=r.timeouts,
        interference=window.interference,
        database=window.database,
        connections=window.connections,
    )


def window_flags(window: ProbeWindow, target: Target) -> list[str]:
    """Flags every measured window can earn, in either mode."""
    observed = window.observation()
    flags = []
    if observed.loadgen_bound:
        flags.append("loadgen-bound")
    if observed.error_rate > (target.max_error_rate if observed.mode == "open" else 0.0):
        flags.append("failures")
    if window.interference is not None and window.interference.share > INTERFERENCE_SHARE:
        flags.append("interference")
    if window.database is not None and window.database.shares_server_cpus:
        flags.append("database-shared-cpus")
    return flags


def probe_record(observed: ProbeObservation, target: Target) -> Probe:
    return Probe(
        mode=observed.mode,
        offered_rps=_round(observed.offered_rps),
        nominal_rps=_round(observed.nominal_rps) if observed.mode == "open" else None,
        p50_first_ms=_round(observed.p50_halves_ms[0], 3),
        p50_second_ms=_round(observed.p50_halves_ms[1], 3),
        achieved_rps=round(observed.achieved_rps, 2),
        p50_ms=_round(observed.p50_ms, 3),
        p99_ms=_round(observed.p99_ms, 3),
        errors=observed.failures,
        requests=observed.requests,
        users=observed.users,
        server_cpu_percent=_round(observed.server_cpu_percent),
        loadgen_cpu_percent=_round(observed.loadgen_cpu_percent),
        loadgen_process_percent=_round(observed.loadgen_process_percent),
        late_share=round(observed.late_share, 5),
        passed=observed.passes(target),
        problems=tuple(observed.problems(target)),
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def confirm_seconds(rate: float, options: Options) -> float:
    """``--duration``, stretched at low rates to hold ``MIN_CONFIRM_REQUESTS`` (up to 2x)."""
    base = options.duration_s
    return max(base, min(2 * base, MIN_CONFIRM_REQUESTS / rate)) if rate > 0 else base


def search_plan(options: Options, server_slots: int | None) -> capacity.Plan:
    return capacity.Plan(
        saturation_users=saturation_users(server_slots), max_probes=options.max_probes
    )


def open_loop(
    locust: LocustProcess,
    server: Hosted,
    options: Options,
    check: Callable[[], None],
    profiler: Profiler | None = None,
) -> RunFindings:
    """The capacity search, then the confirmation window at the rate it found."""
    probing = Probing(locust, server, options, check, profiler)
    target = probing.target
    server_slots = slots(server)
    workers_before = server.worker_pids()
    found = capacity.search(probing.observe, target, search_plan(options, server_slots))
    curve = list(found.curve)
    if found.rate is not None:
        rate = found.rate
    else:
        # Nothing passed: the window is measured at the gentlest rate probed, for its
        # memory and figures; the run has no capacity.
        rate = min(o.offered_rps for o in curve if o.offered_rps) if len(curve) > 1 else 1.0
    users = max(o.users for o in curve if o.mode == "open") if len(curve) > 1 else 16
    confirmed = False
    window: ProbeWindow | None = None
    for _ in range(CONFIRM_ATTEMPTS if found.rate is not None else 1):
        window = probing.run(
            "open", rate, users, confirm_seconds(rate, options), sample=True, reset_stats=True
        )
        observed = window.observation()
        curve.append(observed)
        if found.rate is not None and observed.passes(target):
            confirmed = True
            break
        # An overloaded window served less than it was offered: what it did serve is the
        # better guess of what the server sustains.
        rate = CONFIRM_BACKOFF * min(rate, observed.achieved_rps or rate)
    assert window is not None
    outcome = locust.finish()
    result = measurement(window, options, outcome.stats.locust_rps)
    chosen = capacity.bound(found, server_slots)
    # Unconfirmed: the last window's figure, flagged (None only when no rate passed).
    rps = result.rps if found.rate is not None else None
    cap = Capacity(
        slo_p99_ms=options.slo_p99_ms,
        rps=round(rps, 2) if rps is not None else None,
        rps_per_gib=_round(per_gib(rps, result.memory.pss_peak_bytes) if rps else None),
        offered_rps=round(window.result.rate or 0.0, 2) if window.result.rate else None,
        confirmed=confirmed,
        bound=chosen,
        reason=capacity.describe(found, chosen, rps if confirmed else None),
        saturation_rps=round(found.saturation.achieved_rps, 2) if found.saturation else None,
        curve=tuple(probe_record(o, target) for o in curve),
    )
    flags = window_flags(window, target)
    if chosen == "loadgen" and "loadgen-bound" not in flags:
        # The search stopped where the load generator did: the capacity is a lower bound.
        flags.append("loadgen-bound")
    if not confirmed:
        flags.append("unconfirmed")
    gone, new = worker_changes(workers_before, window.samples)
    incidents = Incidents(gone, new, window.result.timeouts)
    return RunFindings(result, incidents, tuple(flags), cap)


def closed_loop(
    locust: LocustProcess,
    server: Hosted,
    options: Options,
    users: int,
    check: Callable[[], None],
    profiler: Profiler | None = None,
) -> RunFindings:
    """One window of ``users`` users sending back to back."""
    probing = Probing(locust, server, options, check, profiler)
    workers_before = server.worker_pids()
    window = probing.run("closed", None, users, options.duration_s, sample=True, reset_stats=True)
    outcome = locust.finish()
    result = measurement(window, options, outcome.stats.locust_rps)
    flags = window_flags(window, probing.target)
    server_slots = slots(server)
    cpu = window.server_cpu_percent
    if (
        "loadgen-bound" not in flags
        and cpu is not None
        and cpu < USER_BOUND_CPU_PERCENT
        and (server_slots is None or users < server_slots)
    ):
        flags.append("user-bound")
    gone, new = worker_changes(workers_before, window.samples)
    return RunFindings(result, Incidents(gone, new, window.result.timeouts), tuple(flags))


def soak_loop(
    locust: LocustProcess,
    server: Hosted,
    options: Options,
    users: int,
    check: Callable[[], None],
    profiler: Profiler | None = None,
) -> RunFindings:
    """``--soak``: a closed loop of ``users`` for a number of requests or a duration, the
    server sampled from now (before any request: the state right after the fork) to the
    end. The figures are the window's, as in a closed-loop run; the series covers it all."""
    target = options.soak
    assert target is not None
    interval = soak.sample_interval(target, options.duration_s)
    began = time.monotonic()
    sampling = server.window(sample=True, interval=interval)
    probing = Probing(locust, server, options, check, profiler)
    marks: dict[str, float] = {}
    sampling.open()
    if profiler is not None:
        profiler.soak_started(began)
    try:
        window = probing.run(
            "closed",
            None,
            users,
            options.duration_s,
            reset_stats=True,
            max_requests=target.requests or 0,
            on_start=lambda: marks.setdefault("start", time.monotonic() - began),
            on_end=lambda: marks.setdefault("end", time.monotonic() - began),
            profile=True,
        )
    finally:
        figures = sampling.close()
    samples = list(figures.samples)
    if figures.error is not None or server.exit_status() is not None:
        raise ServerDied(f"the server died during the soak ({figures.error})")
    outcome = locust.finish()
    start, end = marks.get("start", 0.0), marks.get("end", time.monotonic() - began)
    in_window = [s for s in samples if s.t >= start - 0.05] or samples[-1:]
    window.samples = in_window
    window.sampler_cpu_percent = figures.sampler_cpu_percent
    result = measurement(window, options, outcome.stats.locust_rps)
    memory = Memory.from_dict(soak.downsample_memory(result.memory.to_dict()))
    block = soak.series(
        samples,
        target=target,
        interval_s=interval,
        window_start_s=start,
        window_end_s=end,
        requests=window.result.requests,
    )
    return RunFindings(
        replace(result, memory=memory),
        Incidents(timeouts=window.result.timeouts),
        tuple(window_flags(window, probing.target)),
        soak_series=SoakSeries.from_dict(block),
    )
