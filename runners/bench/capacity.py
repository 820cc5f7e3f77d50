"""The capacity search: the highest request rate a server sustains within a latency target.

A *probe* offers load for a short window and reports what came back
(``ProbeObservation``). ``search`` decides which probes to run:

1. a saturation probe: a closed loop with enough users to keep every worker
   busy, whose successful requests/s (``X``) is the most the server did when
   pushed, an upper bound to start from, never the answer. A server without a fixed
   number of slots (async) whose CPUs stayed under ``GALLOP_CPU_PERCENT`` was held back
   by the users, not by itself: the probe is taken again with the users Little's law
   gives for a busy CPU (at most ``Plan.saturation_tries`` times);
2. open-loop probes, first at 0.9 X: one that passes (p99 within the target,
   errors under the budget, the offered rate achieved, no queue building up
   through the window, the load generator keeping its schedule) raises the
   lower bound and, until one has failed, steps up: by ``gallop`` while the server's
   CPUs stayed under ``GALLOP_CPU_PERCENT`` (a low start crawls no more), else by
   ``step_up``; one that fails lowers the upper bound and, until one has passed,
   steps down by ``step_down``; once both bounds exist the next rate is their
   geometric mean, until they are within ``tolerance`` of each other or
   ``max_probes`` are spent.
   A probe's rate is the one its window's arrivals actually offered (a short
   window of a Poisson schedule holds N +- sqrt(N) arrivals: a probe that
   happened to offer 20 % less must not vouch for the nominal rate). A rate
   just above the server's capacity passes a short window on p99 alone (the
   queue has no time to grow), so a probe whose second half's median latency
   is well above its first half's fails too;
3. a probe that cannot be believed is taken again at the same rate, not believed
   (``Plan.max_retakes`` per search, counted apart from ``max_probes``: a noisy
   machine costs time, not accuracy): a failure while the hypervisor or another
   program took the run's CPUs (``steal``, ``interference``), while the load
   generator stalled with CPU to spare, or from a short burst (under
   ``BURST_SHARE`` of the requests over the target, no queue building); and any
   probe that contradicts the curve (a failure below a rate that passed, a pass
   above one that failed). The search uses the retake; two takes that disagree are
   settled by a third, or the point is recorded ``disputed``. The curve keeps every
   take, the earlier ones marked ``retaken``;
4. the caller confirms the highest passing rate with a full measured window;
   those figures are the run's. The capacity is a band: its low end the highest
   rate that passed twice (a probe and the confirmation), its high end the lowest
   rate that failed (after its retake).

``bound`` says what limited the server at the first rate it could not
sustain: ``loadgen`` (the load generator's CPUs, or its busiest process, were
saturated, so the figure measured the generator), ``errors`` (the latency held but
more than the error budget failed), ``server-cpu`` (the server's CPUs were
saturated), ``server-slots`` (every worker or thread was busy while CPU was left: a
sync server's concurrency limit), ``memory`` (the host ran out of available memory,
or the kernel OOM-killed a process at the server's memory limit: a probe with an OOM
kill fails, like one with errors).
Late tickets with the generator's CPU under ``LOADGEN_STALL_CPU_PERCENT`` are not the
generator's limit but a stall of the host: retaken, never the ``loadgen`` bound.

Nothing here starts a process: the probe is a function the caller passes in,
so the search can be tested against a model server.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from runners.results.criteria import (
    ACHIEVED_SHARE,
    BURST_SHARE,
    DEFAULT_SLO_P99_MS,
    DRIFT_RATIO,
    DRIFT_SHARE,
    GALLOP_CPU_PERCENT,
    INTERFERENCE_SHARE,
    LATE_SHARE,
    LOADGEN_CPU_PERCENT,
    LOADGEN_STALL_CPU_PERCENT,
    LOW_MEMORY_SHARE,
    MAX_ERROR_RATE,
    SERVER_CPU_PERCENT,
    STEAL_SHARE,
)
from runners.vocabulary import Bound, Load


@dataclass(frozen=True)
class Target:
    """What a rate must meet to count as sustained."""

    slo_p99_ms: float = DEFAULT_SLO_P99_MS
    max_error_rate: float = MAX_ERROR_RATE


def cpu_load(percent: float | None, cap_percent: float) -> float | None:
    """``percent`` of the server's CPUs as a percent of ``cap_percent``, the most it can
    reach (100, or a CPU quota's share of those CPUs)."""
    if percent is None:
        return None
    return 100.0 * percent / max(cap_percent, 1e-9)


@dataclass(frozen=True)
class ProbeObservation:
    """One probe: what was offered, what came back, and how busy everything was."""

    mode: Load
    offered_rps: float | None
    """The rate the schedule offered in the window: its arrivals / the window (a Poisson
    schedule's window holds more or fewer than the nominal rate says); None: closed."""
    achieved_rps: float
    """Successful responses per second of the window."""
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    failures: int
    users: int
    server_cpu_percent: float | None = None
    loadgen_cpu_percent: float | None = None
    """Busy share of the load-generator CPUs, everything running there counted."""
    loadgen_process_percent: float | None = None
    """The busiest load-generating process, percent of one core."""
    upstream_cpu_percent: float | None = None
    """The upstream service's share of the load generator's CPUs (within
    ``loadgen_cpu_percent``)."""
    late_share: float = 0.0
    memory_available_share: float | None = None
    scheduled: int = 0
    """Requests the schedule intended inside the window (open loop; 0: unknown)."""
    served: int | None = None
    """Successful responses that arrived inside the window (None: unknown)."""
    nominal_rps: float | None = None
    """The rate the schedule was asked for (None: ``offered_rps``)."""
    p50_halves_ms: tuple[float | None, float | None] = (None, None)
    """Median latency of the requests intended in the window's first and second half."""
    over_target_share: float = 0.0
    """The share of the window's requests slower than the latency target."""
    steal_share: float | None = None
    """The larger of the server's and the load generator's CPUs' steal in the window."""
    interference_share: float | None = None
    """The larger side's share of the window that other programs used."""
    retaken: bool = False
    """Taken again at the same rate: the search used a later take."""
    disputed: bool = False
    """Its takes disagreed and no retake was left to settle them."""
    oom_kills: int = 0
    """Processes the kernel OOM-killed in the server's cgroup during the window."""
    server_cpu_cap_percent: float = 100.0
    """The most ``server_cpu_percent`` can reach: 100, or a CPU quota's share of the
    server's CPUs (``--cpu-limit 0.5`` on one CPU: 50)."""

    @property
    def server_cpu_load(self) -> float | None:
        """The server's CPU use as a percent of what it may use (its quota, else its CPUs):
        what the search's CPU rules read, so a throttled server counts as busy."""
        return cpu_load(self.server_cpu_percent, self.server_cpu_cap_percent)

    def drifting(self, target: Target) -> bool:
        """The latency grew through the window: a queue was building up."""
        first, second = self.p50_halves_ms
        if self.mode != "open" or first is None or second is None:
            return False
        return second > DRIFT_RATIO * first and second - first > DRIFT_SHARE * target.slo_p99_ms

    @property
    def successes(self) -> int:
        return self.requests - self.failures

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def late(self) -> bool:
        """More than ``LATE_SHARE`` of its tickets left late although a user was free."""
        return self.late_share > LATE_SHARE

    @property
    def loadgen_bound(self) -> bool:
        """The load generator was the limit: its CPUs or its busiest process saturated, or
        its tickets late while it was busy."""
        cpu = self.loadgen_cpu_percent or 0.0
        return (
            cpu > LOADGEN_CPU_PERCENT
            or (self.loadgen_process_percent or 0.0) > LOADGEN_CPU_PERCENT
            or (self.late and cpu >= LOADGEN_STALL_CPU_PERCENT)
        )

    def loadgen_share(self) -> str:
        """How busy the load generator was, and how much of it the upstream service."""
        cpu = self.loadgen_cpu_percent
        parts = [f"its CPUs {cpu:.0f}% busy" if cpu is not None else "its CPUs unread"]
        if self.upstream_cpu_percent is not None:
            parts.append(f"the upstream service {self.upstream_cpu_percent:.0f}% of them")
        if self.loadgen_process_percent is not None:
            parts.append(f"the busiest Locust process {self.loadgen_process_percent:.0f}%")
        return ", ".join(parts)

    @property
    def loadgen_stalled(self) -> bool:
        """Tickets left late while the generator had CPU to spare: the host stalled it."""
        return self.late and not self.loadgen_bound

    def disturbed(self, target: Target) -> str | None:
        """Why this failure may say more about the machine than about the server (None:
        it is the server's): steal, other programs, a stalled load generator, or a
        short burst (few requests over the target, no queue building)."""
        if (self.steal_share or 0.0) > STEAL_SHARE:
            return f"the hypervisor took {self.steal_share:.0%} of the CPUs (steal)"
        if (self.interference_share or 0.0) > INTERFERENCE_SHARE:
            return f"other programs used {self.interference_share:.0%} of the run's CPUs"
        if self.loadgen_stalled:
            cpu = self.loadgen_cpu_percent or 0.0
            return f"the load generator stalled ({self.late_share:.1%} late at {cpu:.0f}% CPU)"
        problems = self.problems(target)
        only_p99 = len(problems) == 1 and self.p99_over(target)
        if only_p99 and self.over_target_share < BURST_SHARE:
            return f"a short burst ({self.over_target_share:.2%} of requests over the target)"
        return None

    def p99_over(self, target: Target) -> bool:
        return self.p99_ms is not None and self.p99_ms > target.slo_p99_ms

    def problems(self, target: Target) -> list[str]:
        """Why this probe does not count as sustained ([] when it does)."""
        found = []
        if self.requests == 0 or self.p99_ms is None:
            return ["no request completed"]
        if self.p99_ms > target.slo_p99_ms:
            found.append(f"p99 {self.p99_ms:.1f} ms > {target.slo_p99_ms:g} ms")
        if self.error_rate > target.max_error_rate:
            found.append(f"{self.error_rate:.2%} of requests failed")
        if self.drifting(target):
            first, second = self.p50_halves_ms
            found.append(
                f"median latency grew from {first:.1f} to {second:.1f} ms: a queue built up"
            )
        if self.scheduled:
            # Against what was scheduled, not the nominal rate (a Poisson schedule's window
            # holds more or fewer arrivals than rate x duration); what the server answered
            # inside the window, not later (a backlog worked off after it is no throughput).
            served = self.successes if self.served is None else self.served
            if served < ACHIEVED_SHARE * self.scheduled:
                found.append(f"{served} of {self.scheduled} scheduled requests served in time")
        elif self.offered_rps and self.achieved_rps < ACHIEVED_SHARE * self.offered_rps:
            found.append(f"{self.achieved_rps:.0f} of {self.offered_rps:.0f} req/s came back")
        if self.loadgen_bound:
            found.append(f"the load generator could not keep up ({self.loadgen_share()})")
        elif self.loadgen_stalled:
            found.append(f"{self.late_share:.1%} of the tickets left late")
        if self.oom_kills:
            found.append(f"{self.oom_kills} process(es) OOM-killed at the memory limit")
        return found

    def passes(self, target: Target) -> bool:
        return self.mode == "open" and not self.problems(target)


SATURATION_USERS = 64
"""Users of the saturation probe for a server without a fixed number of slots (async)."""


@dataclass(frozen=True)
class Plan:
    """How hard to look."""

    saturation_users: int = SATURATION_USERS
    first_share: float = 0.9
    step_up: float = 1.15
    step_down: float = 0.7
    tolerance: float = 0.05
    """Stop when the lowest failing rate is within this of the highest passing one."""
    max_probes: int = 8
    """Open-loop probes after the saturation probe (retakes not counted)."""
    min_rps: float = 1.0
    max_retakes: int = 2
    """Probes taken again at the same rate, per search (``retakes`` in the docstring)."""
    gallop: float = 2.0
    """The step up while no probe has failed and the server's CPUs were not busy."""
    grow_saturation: bool = False
    """A server without a fixed number of slots: its saturation probe's users may grow."""
    saturation_tries: int = 3
    max_users: int = 1024


Prober = Callable[[Load, float | None, int], ProbeObservation]
"""``probe(mode, rate, users)``: offer load, return what was observed."""


@dataclass
class Search:
    """What the search saw: every probe, in order, and the bounds it found."""

    target: Target
    curve: list[ProbeObservation] = field(default_factory=list)
    saturation: ProbeObservation | None = None
    passed: ProbeObservation | None = None
    """The highest passing open-loop probe."""
    failed: ProbeObservation | None = None
    """The lowest failing open-loop probe (its last take)."""
    retakes: int = 0

    @property
    def rate(self) -> float | None:
        """The rate to confirm (None: no rate passed)."""
        return self.passed.offered_rps if self.passed is not None else None

    def contradicts(self, observed: ProbeObservation) -> bool:
        """A failure below a rate that passed, or a pass above a rate that failed."""
        rate = observed.offered_rps or 0.0
        if observed.passes(self.target):
            return self.failed is not None and rate > (self.failed.offered_rps or math.inf)
        return self.passed is not None and rate < (self.passed.offered_rps or 0.0)

    def suspect(self, observed: ProbeObservation) -> bool:
        """Not to be believed without a retake (see the module's docstring)."""
        if self.contradicts(observed):
            return True
        return not observed.passes(self.target) and observed.disturbed(self.target) is not None

    def record(self, observed: ProbeObservation) -> None:
        """A probe the search believes: it moves the bounds."""
        offered = observed.offered_rps or 0.0
        if observed.passes(self.target):
            if self.passed is None or offered > (self.passed.offered_rps or 0.0):
                self.passed = observed
        elif self.failed is None or offered < (self.failed.offered_rps or math.inf):
            self.failed = observed


def pool_size(rate: float, target: Target, floor: int = 16, ceiling: int = 1024) -> int:
    """Users an open-loop probe needs to keep ``rate`` with every request up to the
    latency target in flight at once (Little's law), with some margin."""
    return max(floor, min(ceiling, math.ceil(rate * target.slo_p99_ms / 1000.0 * 1.5) + 8))


def saturate(probe: Prober, plan: Plan, found: Search) -> ProbeObservation:
    """The saturation probe, taken again with more users while an async server's CPUs
    stayed idle-ish: Little's law (users = rate x latency) for the rate a busy CPU would
    serve, at most ``saturation_tries`` takes."""
    users = plan.saturation_users
    for attempt in range(plan.saturation_tries):
        observed = probe("closed", None, users)
        found.curve.append(observed)
        cpu = observed.server_cpu_load
        if (
            not plan.grow_saturation
            or attempt + 1 == plan.saturation_tries
            or cpu is None
            or cpu >= GALLOP_CPU_PERCENT
            or users >= plan.max_users
        ):
            return observed
        found.curve[-1] = dataclasses.replace(observed, retaken=True)
        users = min(plan.max_users, math.ceil(users * 100.0 / max(cpu, 10.0)))
    raise AssertionError("unreachable")


def take(probe: Prober, rate: float, users: int, plan: Plan, found: Search) -> ProbeObservation:
    """One open-loop probe at ``rate``, taken again while it cannot be believed and
    retakes are left; the take the search believes (the curve holds them all)."""
    first = probe("open", rate, users)
    found.curve.append(first)
    if not found.suspect(first) or found.retakes >= plan.max_retakes:
        return first
    takes = [first]
    while found.retakes < plan.max_retakes:
        found.retakes += 1
        found.curve[-1] = dataclasses.replace(found.curve[-1], retaken=True)
        takes.append(probe("open", rate, users))
        found.curve.append(takes[-1])
        latest, before = takes[-1], takes[-2]
        if latest.passes(found.target) == before.passes(found.target) or len(takes) == 3:
            return latest  # two agree (or a third settled a disagreement)
    if takes[-1].passes(found.target) != takes[-2].passes(found.target):
        found.curve[-1] = dataclasses.replace(takes[-1], disputed=True)
        return found.curve[-1]
    return takes[-1]


def search(probe: Prober, target: Target, plan: Plan = Plan()) -> Search:
    """Find the highest rate that passes (see the module's docstring)."""
    found = Search(target)
    saturation = saturate(probe, plan, found)
    found.saturation = saturation
    rate = max(plan.min_rps, plan.first_share * saturation.achieved_rps)
    users = 0
    for _ in range(plan.max_probes):
        users = max(users, pool_size(rate, target))
        observed = take(probe, rate, users, plan, found)
        found.record(observed)
        low = found.passed.offered_rps if found.passed is not None else None
        high = found.failed.offered_rps if found.failed is not None else None
        if low is not None and high is not None:
            if high <= low * (1.0 + plan.tolerance):
                break
            rate = math.sqrt(low * high)
        elif low is not None:
            idle = (observed.server_cpu_load or 0.0) < GALLOP_CPU_PERCENT
            rate = low * (plan.gallop if idle else plan.step_up)
        else:
            assert high is not None
            # Never above what came back when the server was pushed.
            rate = min(high * plan.step_down, max(observed.achieved_rps, plan.min_rps))
            if rate < plan.min_rps:
                break
    return found


def bound(found: Search, slots: int | None) -> Bound:
    """What limited the server: judged at the lowest failing rate (or, when every
    probe passed, at the busiest one)."""
    at = found.failed
    if at is None:
        opens = [o for o in found.curve if o.mode == "open"] or found.curve
        at = max(opens, key=lambda o: o.offered_rps or o.achieved_rps)
    if at.loadgen_bound:
        return "loadgen"
    if at.oom_kills:
        return "memory"
    latency_held = at.p99_ms is not None and at.p99_ms <= found.target.slo_p99_ms
    if latency_held and at.error_rate > found.target.max_error_rate:
        return "errors"
    if at.memory_available_share is not None and at.memory_available_share < LOW_MEMORY_SHARE:
        return "memory"
    if (at.server_cpu_load or 0.0) >= SERVER_CPU_PERCENT:
        return "server-cpu"
    if slots is not None:
        return "server-slots"
    return "server-cpu"


def describe(found: Search, chosen: Bound, held: float | None = None) -> str:
    """One sentence: what bounded the server, with the figures that say so (``held``:
    the rate the confirmation window held, when it differs from the search's)."""
    at = found.failed
    rate = found.rate if held is None else held
    if rate is None:
        head = "no rate passed"
    else:
        head = f"sustained {rate:.0f} req/s within p99 {found.target.slo_p99_ms:g} ms"
    if at is None:
        return f"{head}; no probe failed within the search budget ({chosen})"
    why = "; ".join(at.problems(found.target)) or "failed"
    cpu = ""
    if at.server_cpu_percent is not None:
        cpu = f", server CPU {at.server_cpu_percent:.0f}%"
        if at.server_cpu_cap_percent < 100.0:
            cpu += f" of a {at.server_cpu_cap_percent:.0f}% quota"
    return f"{head}; at {at.offered_rps or 0:.0f} req/s: {why}{cpu} ({chosen})"
