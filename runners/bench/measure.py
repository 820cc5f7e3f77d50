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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from loadtests.window import ProbeCommand, ProbeResult
from runners.bench import capacity, soak
from runners.bench.capacity import ProbeObservation, Target
from runners.bench.defaults import MAX_PROBE_S
from runners.bench.host_usage import WindowUsage
from runners.bench.incidents import Incidents, worker_changes
from runners.bench.options import Options
from runners.hosting import CgroupWindow, Hosted
from runners.load.locust import LoadGenerator
from runners.results import latency
from runners.results.criteria import (
    CONFIRM_BACKOFF,
    INTERFERENCE_SHARE,
    STEAL_SHARE,
    USER_BOUND_CPU_PERCENT,
)
from runners.results.figures import per_gib
from runners.results.pods import Hold
from runners.results.record import (
    Capacity,
    CgroupMemory,
    DatabaseUsage,
    Interference,
    Measurement,
    Memory,
    Probe,
    SoakSeries,
    UpstreamUsage,
)
from runners.sampling import interference
from runners.sampling.memory import TreeSample
from runners.serving.net import http_get
from runners.vocabulary import Load

PROBE_WARMUP_S = 0.5
"""Load at a probe's own setting before its window opens (the first probe: ``--warmup``)."""
MIN_PROBE_REQUESTS = 150
"""A probe's window lasts long enough to hold about this many requests, up to
``MAX_PROBE_S``."""
MIN_CONFIRM_REQUESTS = 200
"""The confirmation window is stretched (up to 2x ``--duration``) to hold this many."""
CONFIRM_ATTEMPTS = 3
"""The rate found, ``CONFIRM_BACKOFF`` of it, then the band's low end (``confirm``)."""
IDLE_HEALTH_S = 0.1
"""A server that answers ``/health`` this fast has nothing queued."""
IDLE_TIMEOUT_S = 30.0
WORKER_RESTART_WAIT_S = 3.0
"""After a window, how long a master gets to replace a worker killed at its end."""


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


@dataclass(frozen=True)
class WindowRequest:
    """One measured window as the measurement asks for it."""

    mode: Load
    rate: float | None
    """Open loop: requests per second offered (None: closed loop)."""
    users: int
    duration_s: float
    sample: bool = False
    """Sample the server's memory over the window (the run's measured window)."""
    reset_stats: bool = False
    """Locust's own CSV and HTML cover this window only."""
    max_requests: int = 0
    """End the window once Locust counted this many requests (0: at its duration)."""


class WindowHooks(Protocol):
    """Called as a measured window opens and as it closes (the profiler, a soak's marks)."""

    def opened(self) -> None: ...

    def closed(self) -> None: ...


class NoHooks:
    """Nothing to do at a window's edges."""

    def opened(self) -> None:
        pass

    def closed(self) -> None:
        pass


NO_HOOKS = NoHooks()


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
    loadgen_steal_share: float | None = None
    """Steal on the load generator's CPUs, where nothing else of the host is read (the
    server on the agent's host)."""
    upstream: UpstreamUsage | None = None
    """The upstream service's CPU in the window (it shares the load generator's CPUs)."""
    cgroup: CgroupWindow | None = None
    """The server's cgroup over the window: its peak and OOM kills (None: no cgroup)."""
    server_cpus: int = 0
    """How many CPUs the server was pinned to (0: unknown)."""

    @property
    def server_cpu_cap_percent(self) -> float:
        """The most the server's CPUs' busy percent can reach under its CPU quota."""
        quota = self.cgroup.cpu_limit_cores if self.cgroup is not None else None
        if quota is None or self.server_cpus <= 0:
            return 100.0
        return min(100.0, 100.0 * quota / self.server_cpus)

    @property
    def oom_kills(self) -> int:
        """OOM kills in the window."""
        return (self.cgroup.oom_kills or 0) if self.cgroup is not None else 0

    @property
    def oom_kills_total(self) -> int:
        """OOM kills since the server's cgroup was made (the whole run, at the window's end)."""
        return (self.cgroup.oom_kills_total or 0) if self.cgroup is not None else 0

    def cgroup_memory(self) -> CgroupMemory | None:
        """The window's cgroup figures (from its samples), or None."""
        return cgroup_memory(self.samples, self.cgroup)

    def upstream_cpu_percent(self) -> float | None:
        """The upstream service's share of the load generator's CPUs' time."""
        return self.upstream.cpu_percent if self.upstream is not None else None

    def observation(self, slo_p99_ms: float | None = None) -> ProbeObservation:
        """The search's view of the window (``slo_p99_ms``: to count the requests over it)."""
        r = self.result
        hist = latency.merged([r.latency_hdr])
        lat = latency.latency(hist)
        host = self.interference
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
            over_target_share=latency.share_over(hist, slo_p99_ms) if slo_p99_ms else 0.0,
            upstream_cpu_percent=self.upstream_cpu_percent(),
            steal_share=host.steal_share if host is not None else self.loadgen_steal_share,
            interference_share=host.share if host is not None else None,
            oom_kills=self.oom_kills,
            server_cpu_cap_percent=self.server_cpu_cap_percent,
        )


def cgroup_memory(
    samples: Sequence[TreeSample], window: CgroupWindow | None
) -> CgroupMemory | None:
    """A window's cgroup figures from its samples and its ``CgroupWindow`` (None: none)."""
    if window is None:
        return None
    return CgroupMemory.from_samples(
        samples,
        version=window.version,
        limit_bytes=window.memory_limit_bytes,
        peak_bytes=window.peak_bytes,
        peak_scope=window.peak_scope,
        oom_kills=window.oom_kills,
        oom_kills_total=window.oom_kills_total,
    )


class Probing:
    """Measured windows against one server through one load generator."""

    def __init__(
        self,
        loadgen: LoadGenerator,
        server: Hosted,
        options: Options,
        check: Callable[[], None] | None = None,
        upstream_url: str | None = None,
    ) -> None:
        self.loadgen = loadgen
        self.server = server
        self.options = options
        self.check = check
        self.upstream_url = upstream_url
        """The upstream service beside the load generator, whose CPU each window records."""
        self.seq = 0
        self.target = Target(slo_p99_ms=options.slo_p99_ms)
        # Who else used the run's CPUs, and what a local database used, are read only
        # where the server runs on this host.
        self.database_pid = (
            interference.database_server_pid(options.database_url) if server.here else None
        )

    def command(self, request: WindowRequest) -> ProbeCommand:
        """The plugin's command for ``request``: the next sequence number, the warm-up (the
        first window's: ``--warmup``), the drain and lateness limits of the options."""
        options = self.options
        self.seq += 1
        return ProbeCommand(
            seq=self.seq,
            mode=request.mode,
            users=request.users,
            rate=request.rate,
            duration_s=request.duration_s,
            warmup_s=options.warmup_s if self.seq == 1 else PROBE_WARMUP_S,
            arrival=options.arrival,
            drain_s=self.drain_s,
            late_s=options.slo_p99_ms / 1000.0 / 10.0,
            reset_stats=request.reset_stats,
            max_requests=request.max_requests,
        )

    @property
    def drain_s(self) -> float:
        return self.options.request_timeout_s + 0.5

    def settle(self) -> None:
        """From an idle server: the load generator stops sending and its requests end, then
        the server works off what clients gave up on (queued in its listen backlog)."""
        if self.seq:
            self.seq += 1
            self.loadgen.pause(self.seq, self.drain_s, self.check)
            wait_idle(self.server)

    def run(self, request: WindowRequest, hooks: WindowHooks = NO_HOOKS) -> ProbeWindow:
        """One measured window; ``hooks`` are called as it opens and closes."""
        self.settle()
        command = self.command(request)
        # The load generator's CPUs here, the server's on its host (``runners.hosting``).
        window = self.server.window(
            sample=request.sample, interval=sample_interval(request.duration_s)
        )
        usage = WindowUsage(
            self.options.placement, self.server.here, self.database_pid, self.upstream_url
        )

        def opened() -> None:
            usage.mark()
            window.open()
            hooks.opened()

        def closed() -> None:
            usage.close()
            window.close()
            hooks.closed()

        try:
            result = self.loadgen.probe(command, on_start=opened, on_end=closed, check=self.check)
        finally:
            figures = window.close()  # idempotent: the sampling never outlives the probe
        if request.sample and figures.error is not None:
            raise ServerDied(f"the server died during the run ({figures.error})")
        return ProbeWindow(
            result,
            server_cpu_percent=figures.server_cpu_percent,
            loadgen_cpu_percent=usage.loadgen_cpu_percent(),
            samples=list(figures.samples),
            sampler_cpu_percent=figures.sampler_cpu_percent,
            interference=usage.interference(),
            database=usage.database(),
            loadgen_steal_share=usage.loadgen_steal_share(),
            upstream=usage.upstream(),
            # Counted by the load generator as its users connect (loadtests/locustfile.py).
            connections=result.connects,
            cgroup=figures.cgroup,
            server_cpus=len(self.options.placement.server),
        )

    def probe_seconds(self, rate: float | None) -> float:
        """A search probe's window: ``probe_s``, longer at low rates (up to ``MAX_PROBE_S``)."""
        base = self.options.probe_s
        if rate is None or rate <= 0:
            return base
        return max(base, min(MAX_PROBE_S, MIN_PROBE_REQUESTS / rate))

    def observe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
        """``capacity.search``'s probe."""
        window = self.run(WindowRequest(mode, rate, users, self.probe_seconds(rate)))
        return window.observation(self.target.slo_p99_ms)


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
    """The server's root process ended during a run (``oom_kills``: what its cgroup
    counted, when the OOM killer may have been what ended it)."""

    def __init__(self, message: str, oom_kills: int | None = None) -> None:
        super().__init__(message)
        self.oom_kills = oom_kills


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
    hold: Hold | None = None
    """``--fit-memory``: the capacity rate held through the soak."""


def measurement(
    window: ProbeWindow, options: Options, locust_rps: float | None, memory: Memory | None = None
) -> Measurement:
    """The run's figures from its measured window (``memory``: from its samples)."""
    r = window.result
    if memory is None:
        memory = Memory.from_samples(
            window.samples,
            sampler_cpu_percent=window.sampler_cpu_percent,
            cgroup=window.cgroup_memory(),
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
        upstream=window.upstream,
        connections=window.connections,
    )


def window_flags(window: ProbeWindow, target: Target) -> list[str]:
    """Flags every measured window can earn, in either mode."""
    observed = window.observation(target.slo_p99_ms)
    flags = []
    if observed.loadgen_bound:
        flags.append("loadgen-bound")
    elif observed.loadgen_stalled:
        flags.append("loadgen-stalls")
    if observed.error_rate > (target.max_error_rate if observed.mode == "open" else 0.0):
        flags.append("failures")
    if window.interference is not None and window.interference.share > INTERFERENCE_SHARE:
        flags.append("interference")
    if (observed.steal_share or 0.0) > STEAL_SHARE:
        flags.append("steal")
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
        upstream_cpu_percent=_round(observed.upstream_cpu_percent),
        late_share=round(observed.late_share, 5),
        passed=observed.passes(target),
        problems=tuple(observed.problems(target)),
        over_target_share=round(observed.over_target_share, 5),
        steal_share=_round(observed.steal_share, 4),
        interference_share=_round(observed.interference_share, 4),
        retaken=observed.retaken,
        disputed=observed.disputed,
        disturbed=observed.disturbed(target) if not observed.passes(target) else None,
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def confirm_seconds(rate: float, options: Options) -> float:
    """``--duration``, stretched at low rates to hold ``MIN_CONFIRM_REQUESTS`` (up to 2x)."""
    base = options.duration_s
    return max(base, min(2 * base, MIN_CONFIRM_REQUESTS / rate)) if rate > 0 else base


def search_plan(options: Options, server_slots: int | None) -> capacity.Plan:
    return capacity.Plan(
        saturation_users=saturation_users(server_slots),
        max_probes=options.max_probes,
        max_retakes=options.max_retakes,
        grow_saturation=server_slots is None,
    )


def confirm_rates(found: capacity.Search) -> list[float]:
    """Where the confirmation window is tried, in order: the rate the search found, then
    (``None`` placeholders are filled as windows fail) ``CONFIRM_BACKOFF`` of what the
    last one served, then the highest passing probe's rate below that, if any."""
    rates = [] if found.rate is None else [found.rate]
    passed = sorted(
        {
            o.offered_rps
            for o in found.curve
            if o.mode == "open" and o.offered_rps and not o.retaken and o.passes(found.target)
        },
        reverse=True,
    )
    return rates + passed[1:2]


def confirm(
    probing: Probing, found: capacity.Search, hooks: WindowHooks
) -> tuple[ProbeWindow, list[ProbeObservation], bool]:
    """The measured window at the rate the search found, retaken before it is given up:
    at ``CONFIRM_BACKOFF`` of the lower of that rate and what it served, then at the
    next lower rate that passed a probe (the band's low end); (the last window, the
    confirmation windows' observations, whether one passed)."""
    curve = found.curve
    if found.rate is not None:
        rate = found.rate
    else:
        # Nothing passed: the window is measured at the gentlest rate probed, for its
        # memory and figures; the run has no capacity.
        rate = min(o.offered_rps for o in curve if o.offered_rps) if len(curve) > 1 else 1.0
    users = max(o.users for o in curve if o.mode == "open") if len(curve) > 1 else 16
    seen: list[ProbeObservation] = []
    window: ProbeWindow | None = None
    lower = confirm_rates(found)[1:]
    for attempt in range(CONFIRM_ATTEMPTS if found.rate is not None else 1):
        request = WindowRequest(
            "open", rate, users, confirm_seconds(rate, probing.options), sample=True
        )
        window = probing.run(replace(request, reset_stats=True), hooks)
        observed = window.observation(probing.target.slo_p99_ms)
        seen.append(observed)
        if found.rate is not None and observed.passes(probing.target):
            return window, seen, True
        if attempt == 0:
            # An overloaded window served less than it was offered: what it did serve is
            # the better guess of what the server sustains.
            rate = CONFIRM_BACKOFF * min(rate, observed.achieved_rps or rate)
        else:
            below = [r for r in lower if r < rate]
            if not below:
                break
            rate = below[0]
    assert window is not None
    return window, seen, False


def open_loop(
    loadgen: LoadGenerator,
    server: Hosted,
    options: Options,
    check: Callable[[], None],
    hooks: WindowHooks = NO_HOOKS,
    upstream_url: str | None = None,
) -> RunFindings:
    """The capacity search, then the confirmation window at the rate it found."""
    probing = Probing(loadgen, server, options, check, upstream_url)
    target = probing.target
    server_slots = slots(server)
    workers_before = server.worker_pids()
    found = capacity.search(probing.observe, target, search_plan(options, server_slots))
    window, confirmations, confirmed = confirm(probing, found, hooks)
    held: tuple[ProbeWindow, Hold] | None = None
    if options.hold is not None:
        held = hold_at_capacity(probing, window, options)
    outcome = loadgen.finish()
    memory = None
    if held is not None:
        # --fit-memory: the memory is the hold's (the same rate, held through the soak);
        # the CPU seconds stay the confirmation window's, as its other figures.
        memory = replace(memory_of(held[0]), cpu_seconds=memory_of(window).cpu_seconds)
    result = measurement(window, options, outcome.stats.locust_rps, memory)
    chosen = capacity.bound(found, server_slots)
    # Unconfirmed: the last window's figure, flagged (None only when no rate passed).
    rps = result.rps if found.rate is not None else None
    pss = result.memory.pss_peak_bytes
    low = window.observation().offered_rps if confirmed else None
    high = found.failed.offered_rps if found.failed is not None else None
    cap = Capacity(
        slo_p99_ms=options.slo_p99_ms,
        rps=round(rps, 2) if rps is not None else None,
        rps_per_gib=_round(per_gib(rps, pss) if rps else None),
        offered_rps=round(window.result.rate or 0.0, 2) if window.result.rate else None,
        confirmed=confirmed,
        bound=chosen,
        reason=capacity.describe(found, chosen, rps if confirmed else None),
        saturation_rps=round(found.saturation.achieved_rps, 2) if found.saturation else None,
        curve=tuple(probe_record(o, target) for o in [*found.curve, *confirmations]),
        low_rps=_round(low),
        high_rps=_round(high),
        lower_bound=chosen == "loadgen" or (rps is not None and high is None),
        retakes=found.retakes,
    )
    flags = window_flags(window, target)
    if chosen == "loadgen" and "loadgen-bound" not in flags:
        # The search stopped where the load generator did: the capacity is a lower bound.
        flags.append("loadgen-bound")
    if "loadgen-stalls" not in flags and any(
        o.loadgen_stalled and not o.retaken for o in found.curve
    ):
        flags.append("loadgen-stalls")
    if "steal" not in flags and any(
        (o.steal_share or 0.0) > STEAL_SHARE and not o.retaken for o in found.curve
    ):
        flags.append("steal")
    if not confirmed:
        flags.append("unconfirmed")
    last = held[0] if held is not None else window
    gone, new = worker_changes(workers_before, last.samples, workers_after(server, workers_before))
    incidents = Incidents(gone, new, window.result.timeouts, last.oom_kills_total)
    return RunFindings(
        result, incidents, tuple(flags), cap, hold=held[1] if held is not None else None
    )


def workers_after(
    server: Hosted, before: set[int], timeout: float = WORKER_RESTART_WAIT_S
) -> set[int] | None:
    """The server's workers after a window, once there are as many as before (a master
    replacing a killed worker takes a moment: one killed at the window's end is not
    "lost"), or those up after ``timeout``; None when there were none before."""
    if not before:
        return None
    deadline = time.monotonic() + timeout
    while True:
        now = server.worker_pids()
        if len(now) >= len(before) or time.monotonic() >= deadline:
            return now
        time.sleep(0.1)


def memory_of(window: ProbeWindow) -> Memory:
    """A sampled window's memory record (its cgroup's figures included)."""
    return Memory.from_samples(
        window.samples,
        sampler_cpu_percent=window.sampler_cpu_percent,
        cgroup=window.cgroup_memory(),
    )


def hold_at_capacity(
    probing: Probing, confirmed: ProbeWindow, options: Options
) -> tuple[ProbeWindow, Hold]:
    """``--fit-memory``: the confirmation window's rate held for the soak's length (a
    request target: its requests at that rate), sampled; whether the working set stayed
    under the size with no OOM kill in the run."""
    target = options.hold
    assert target is not None
    rate = confirmed.result.rate or 1.0
    duration = target.duration_s or (target.requests or 0) / rate
    users = confirmed.result.users
    window = probing.run(WindowRequest("open", rate, users, max(1.0, duration), sample=True))
    cgroup = window.cgroup_memory()
    peak = cgroup.working_set_peak_bytes if cgroup is not None else None
    limit = options.fit_memory
    r = window.result
    hold = Hold(
        rate_rps=round(rate, 2),
        duration_s=round(r.duration_s, 3),
        requests=r.requests,
        failures=r.failures,
        rps=round(r.served / r.duration_s, 2) if r.duration_s > 0 else 0.0,
        working_set_peak_bytes=peak,
        pss_peak_bytes=max((s.pss for s in window.samples), default=None),
        oom_kills=window.oom_kills if window.cgroup is not None else None,
        fits=window.oom_kills_total == 0 and peak is not None and (limit is None or peak < limit),
    )
    return window, hold


def closed_loop(
    loadgen: LoadGenerator,
    server: Hosted,
    options: Options,
    users: int,
    check: Callable[[], None],
    hooks: WindowHooks = NO_HOOKS,
    upstream_url: str | None = None,
) -> RunFindings:
    """One window of ``users`` users sending back to back."""
    probing = Probing(loadgen, server, options, check, upstream_url)
    workers_before = server.worker_pids()
    request = WindowRequest(
        "closed", None, users, options.duration_s, sample=True, reset_stats=True
    )
    window = probing.run(request, hooks)
    outcome = loadgen.finish()
    result = measurement(window, options, outcome.stats.locust_rps)
    flags = window_flags(window, probing.target)
    server_slots = slots(server)
    cpu = capacity.cpu_load(window.server_cpu_percent, window.server_cpu_cap_percent)
    if (
        "loadgen-bound" not in flags
        and cpu is not None
        and cpu < USER_BOUND_CPU_PERCENT
        and (server_slots is None or users < server_slots)
    ):
        flags.append("user-bound")
    now = workers_after(server, workers_before)
    gone, new = worker_changes(workers_before, window.samples, now)
    incidents = Incidents(gone, new, window.result.timeouts, window.oom_kills_total)
    return RunFindings(result, incidents, tuple(flags))


@dataclass
class SoakMarks:
    """A soak's window edges on the soak series' time axis, passed on to ``hooks``."""

    began: float
    hooks: WindowHooks
    start: float | None = None
    end: float | None = None

    def opened(self) -> None:
        if self.start is None:
            self.start = time.monotonic() - self.began
        self.hooks.opened()

    def closed(self) -> None:
        if self.end is None:
            self.end = time.monotonic() - self.began
        self.hooks.closed()


def soak_loop(
    loadgen: LoadGenerator,
    server: Hosted,
    options: Options,
    users: int,
    check: Callable[[], None],
    hooks: WindowHooks = NO_HOOKS,
    soak_started: Callable[[float], object] | None = None,
) -> RunFindings:
    """``--soak``: a closed loop of ``users`` for a number of requests or a duration, the
    server sampled from now (before any request: the state right after the fork) to the
    end. The figures are the window's, as in a closed-loop run; the series covers it all.
    ``soak_started`` is called with the series' origin before the first request."""
    target = options.soak
    assert target is not None
    interval = soak.sample_interval(target, options.duration_s)
    began = time.monotonic()
    sampling = server.window(sample=True, interval=interval)
    probing = Probing(loadgen, server, options, check)
    marks = SoakMarks(began, hooks)
    workers_before = server.worker_pids()
    sampling.open()
    if soak_started is not None:
        soak_started(began)
    try:
        request = WindowRequest(
            "closed",
            None,
            users,
            options.duration_s,
            reset_stats=True,
            max_requests=target.requests or 0,
        )
        window = probing.run(request, marks)
    finally:
        figures = sampling.close()
    samples = list(figures.samples)
    if figures.error is not None or server.exit_status() is not None:
        raise ServerDied(f"the server died during the soak ({figures.error})")
    outcome = loadgen.finish()
    start = marks.start or 0.0
    end = marks.end if marks.end is not None else time.monotonic() - began
    in_window = [s for s in samples if s.t >= start - 0.05] or samples[-1:]
    memory = Memory.from_samples(
        in_window,
        sampler_cpu_percent=figures.sampler_cpu_percent,
        # The OOM kills of the whole soak (its sampling window), not only of the load's.
        cgroup=cgroup_memory(in_window, figures.cgroup),
    )
    window.samples = in_window
    result = measurement(window, options, outcome.stats.locust_rps, memory)
    series = soak.series(
        samples,
        target=target,
        interval_s=interval,
        window_start_s=start,
        window_end_s=end,
        requests=window.result.requests,
    )
    oom_total = figures.cgroup.oom_kills_total if figures.cgroup is not None else None
    # Workers killed and replaced over the soak (under a memory limit: the OOM killer's).
    gone, new = worker_changes(workers_before, samples, workers_after(server, workers_before))
    return RunFindings(
        replace(result, memory=soak.downsample_memory(memory)),
        Incidents(gone, new, window.result.timeouts, oom_total or 0),
        tuple(window_flags(window, probing.target)),
        soak_series=series,
    )
