"""Measured windows against one running server (``Probing``), each from an idle server.

Every probe starts from an idle server (the plugin pauses the load and lets the
requests in flight end), has a short warm-up at its own setting, and is
measured from the plugin's window markers: the server's CPUs and the
load-generator CPUs are read from ``/proc/stat`` (``runners.sampling.cpustat``:
everything pinned there counts, the upstream service beside Locust included)
between the window's start and end. A window asked to sample (the confirmation
window, a closed loop's one window) also samples the server's memory.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from loadtests.window import ProbeCommand, ProbeResult
from runners.bench.capacity import ProbeObservation, Target
from runners.bench.defaults import MAX_PROBE_S
from runners.bench.host_usage import WindowUsage
from runners.bench.options import Options
from runners.hosting import CgroupWindow, Hosted
from runners.load.locust import LoadGenerator
from runners.results import latency
from runners.results.record import (
    CgroupMemory,
    DatabaseUsage,
    Interference,
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
IDLE_HEALTH_S = 0.1
"""A server that answers ``/health`` this fast has nothing queued."""
IDLE_TIMEOUT_S = 30.0


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
