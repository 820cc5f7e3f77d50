"""Measuring one running server with Locust's probes: the open-loop capacity search with
its confirmation window (``--load open``, the default), one closed-loop window at a
fixed user count (``--load closed``), or a soak. The windows themselves are
``runners.bench.probing``'s; the confirmation window's (or the closed loop's one
window's) figures are the run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from runners.bench import capacity, soak
from runners.bench.capacity import ProbeObservation, Target
from runners.bench.incidents import Incidents, worker_changes
from runners.bench.options import Options
from runners.bench.probing import (
    NO_HOOKS,
    ProbeWindow,
    Probing,
    ServerDied,
    WindowHooks,
    WindowRequest,
    cgroup_memory,
)
from runners.hosting import Hosted
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
    Measurement,
    Memory,
    Probe,
    SoakSeries,
)

MIN_CONFIRM_REQUESTS = 200
"""The confirmation window is stretched (up to 2x ``--duration``) to hold this many."""
CONFIRM_ATTEMPTS = 3
"""The rate found, ``CONFIRM_BACKOFF`` of it, then the band's low end (``confirm``)."""
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
