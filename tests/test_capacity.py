"""The capacity search against model servers: no process, no network."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest

from runners.bench.capacity import (
    Plan,
    ProbeObservation,
    Target,
    bound,
    describe,
    pool_size,
    search,
)
from runners.vocabulary import Load


@dataclass
class ModelServer:
    """A server of known capacity: p99 grows like a queue's as the rate nears it."""

    capacity: float
    service_ms: float = 2.0
    cpu_bound: bool = True
    error_rate: float = 0.0
    calls: int = 0

    def p99(self, rate: float) -> float:
        load = rate / self.capacity
        if load >= 1:
            return 10_000.0
        return self.service_ms * (1 + 4 * load / (1 - load))

    def true_capacity(self, slo_ms: float) -> float:
        # p99(r) = slo  <=>  load = (k - 1) / (k + 3) with k = slo / service
        k = slo_ms / self.service_ms
        return self.capacity * (k - 1) / (k + 3)

    def probe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
        self.calls += 1
        if mode == "closed":
            achieved = self.capacity
            return ProbeObservation(mode, None, achieved, 1.0, 50.0, 1000, 0, users, 99.0)
        assert rate is not None
        achieved = min(rate, self.capacity)
        requests = round(achieved * 2)
        return ProbeObservation(
            mode,
            rate,
            achieved * (1 - self.error_rate),
            self.service_ms,
            self.p99(rate),
            requests,
            math.ceil(requests * self.error_rate),
            users,
            server_cpu_percent=min(100.0, 100.0 * rate / self.capacity) if self.cpu_bound else 30.0,
        )


@pytest.mark.parametrize("capacity", [60.0, 700.0, 5000.0])
@pytest.mark.parametrize("slo", [20.0, 100.0, 1000.0])
def test_the_search_finds_the_rate_within_the_target(capacity: float, slo: float) -> None:
    server = ModelServer(capacity)
    target = Target(slo_p99_ms=slo)
    found = search(server.probe, target)
    truth = server.true_capacity(slo)
    assert found.rate is not None
    assert found.rate <= truth * 1.001  # never above what passes
    assert found.rate >= truth * 0.90, (found.rate, truth)
    assert server.calls <= 1 + Plan().max_probes
    assert found.passed is not None and found.passed.passes(target)
    assert found.failed is not None and not found.failed.passes(target)
    assert bound(found, slots=None) == "server-cpu"


def test_a_tighter_target_finds_a_lower_rate() -> None:
    server = ModelServer(100.0)
    generous = search(server.probe, Target(slo_p99_ms=1000.0)).rate
    tight = search(server.probe, Target(slo_p99_ms=10.0)).rate
    assert generous is not None and tight is not None
    assert tight < generous


def test_slot_bound_when_cpu_is_left() -> None:
    server = ModelServer(80.0, service_ms=50.0, cpu_bound=False)
    found = search(server.probe, Target(slo_p99_ms=1000.0))
    assert bound(found, slots=4) == "server-slots"
    assert "server-slots" in describe(found, bound(found, slots=4))


def test_errors_bound_when_latency_holds() -> None:
    server = ModelServer(1000.0, error_rate=0.01)
    found = search(server.probe, Target(slo_p99_ms=100.0))
    assert found.rate is None  # nothing passes with 1% errors
    assert bound(found, slots=None) == "errors"


def test_loadgen_bound_when_the_generator_falls_behind() -> None:
    @dataclass
    class Saturated(ModelServer):
        def probe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
            seen = super().probe(mode, rate, users)
            # Past 3000 req/s the generator's CPU is saturated and its tickets leave late.
            busy = rate is not None and rate > 3000
            late, cpu = (0.1, 97.0) if busy else (0.0, 60.0)
            return ProbeObservation(
                **{**seen.__dict__, "late_share": late, "loadgen_cpu_percent": cpu}
            )

    found = search(Saturated(10_000.0).probe, Target(slo_p99_ms=100.0))
    assert found.rate is not None and found.rate <= 3000
    assert bound(found, slots=None) == "loadgen"


def test_a_rate_that_is_not_achieved_fails() -> None:
    short = ProbeObservation("open", 100.0, 80.0, 1.0, 2.0, 160, 0, 16)
    assert not short.passes(Target())
    assert any("came back" in p for p in short.problems(Target()))


def test_pool_size_follows_littles_law() -> None:
    target = Target(slo_p99_ms=100.0)
    assert pool_size(10.0, target) == 16
    assert pool_size(1000.0, target) == math.ceil(1000 * 0.1 * 1.5) + 8
    assert pool_size(1e6, target) == 1024


def test_a_queue_building_up_through_the_window_fails_a_short_probe() -> None:
    """Just above capacity, a short window's p99 can stay within the target while the
    queue grows: the second half's median, far above the first half's, fails it."""
    target = Target(slo_p99_ms=100.0)
    growing = ProbeObservation(
        "open", 1073.0, 1066.0, 43.0, 75.0, 1600, 0, 179, p50_halves_ms=(20.0, 65.0)
    )
    assert growing.drifting(target)
    assert not growing.passes(target)
    assert any("queue built up" in p for p in growing.problems(target))
    # A steady window: the halves differ by noise only (a few ms, or a small share).
    steady = ProbeObservation(
        "open", 1015.0, 1006.0, 9.6, 24.0, 1500, 0, 179, p50_halves_ms=(9.0, 11.0)
    )
    assert not steady.drifting(target) and steady.passes(target)
    slow_but_steady = ProbeObservation(
        "open", 40.0, 40.0, 60.0, 90.0, 100, 0, 16, p50_halves_ms=(58.0, 66.0)
    )
    assert not slow_but_steady.drifting(target)
    # Twice as slow, but by 4 ms of a 100 ms target: noise at this scale.
    assert not ProbeObservation(
        "open", 100.0, 100.0, 3.0, 9.0, 200, 0, 16, p50_halves_ms=(2.0, 6.0)
    ).drifting(target)


def test_the_search_counts_the_rate_a_window_really_offered() -> None:
    """A Poisson window that happened to hold 20 % fewer arrivals passed at what it
    offered, not at the nominal rate: the search's lower bound is the realised rate."""

    @dataclass
    class Unlucky(ModelServer):
        def probe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
            if mode == "closed" or rate is None:
                return super().probe(mode, rate, users)
            realised = 0.8 * rate  # every window holds fewer arrivals than asked
            seen = super().probe(mode, realised, users)
            return ProbeObservation(**{**seen.__dict__, "nominal_rps": rate})

    server = Unlucky(100.0)
    target = Target(slo_p99_ms=20.0)
    found = search(server.probe, target)
    assert found.passed is not None and found.rate is not None
    assert found.rate == found.passed.offered_rps
    assert found.passed.nominal_rps is not None and found.rate < found.passed.nominal_rps
    assert found.rate <= server.true_capacity(20.0) * 1.001


# --- a noisy machine: retakes, stalls, galloping ------------------------------------------


@dataclass
class StallingServer(ModelServer):
    """A model whose ``stall_on``-th probe (the saturation probe is the first) hits a
    300 ms stall of the machine: its p99 misses the target, and the hypervisor's steal
    shows it (``steal_share``); every fifth window after it stalls again."""

    stall_on: int = 2
    steal: float | None = 0.2

    def probe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
        seen = super().probe(mode, rate, users)
        if mode == "closed" or (self.calls - self.stall_on) % 5 != 0 or self.calls < self.stall_on:
            return seen
        return dataclasses.replace(
            seen,
            p99_ms=max(seen.p99_ms or 0.0, 300.0),
            over_target_share=0.15,
            steal_share=self.steal,
        )


def test_a_probe_disturbed_by_a_stall_is_retaken_and_the_search_finds_the_capacity() -> None:
    target = Target(slo_p99_ms=100.0)
    server = StallingServer(1000.0, service_ms=0.2)
    truth = server.true_capacity(100.0)
    found = search(server.probe, target, Plan(max_probes=3, max_retakes=2))
    assert found.rate is not None and 0.9 * truth <= found.rate <= truth * 1.001, found.rate
    retaken = [o for o in found.curve if o.retaken]
    assert retaken and retaken[0].disturbed(target) is not None
    assert "steal" in (retaken[0].disturbed(target) or "")
    assert found.retakes >= 1


def test_without_retakes_the_same_stall_costs_over_a_fifth_of_the_capacity() -> None:
    """The test above sees the difference: the stalled first probe, believed, caps the
    search far below the model's capacity."""
    target = Target(slo_p99_ms=100.0)
    server = StallingServer(1000.0, service_ms=0.2)
    truth = server.true_capacity(100.0)
    found = search(server.probe, target, Plan(max_probes=3, max_retakes=0))
    assert found.rate is not None and found.rate < 0.8 * truth, (found.rate, truth)
    assert not any(o.retaken for o in found.curve)


def test_a_failure_below_a_passed_rate_is_retaken_without_any_other_sign() -> None:
    """No steal, no burst: a failure that contradicts the curve is still retaken."""
    target = Target(slo_p99_ms=100.0)
    server = StallingServer(1000.0, service_ms=0.2, stall_on=4, steal=None)
    found = search(server.probe, target, Plan(max_probes=4, max_retakes=2))
    assert any(o.retaken for o in found.curve)
    assert found.rate is not None and found.rate >= 0.9 * server.true_capacity(100.0)


def test_two_takes_that_disagree_are_settled_by_a_third_or_disputed() -> None:
    target = Target(slo_p99_ms=100.0)
    server = StallingServer(1000.0, service_ms=0.2)
    settled = search(server.probe, target, Plan(max_probes=3, max_retakes=2))
    first_rate = next(o for o in settled.curve if o.mode == "open").offered_rps
    takes = [o for o in settled.curve if o.offered_rps == first_rate]
    assert len(takes) == 3 and [t.retaken for t in takes] == [True, True, False]
    one = search(
        StallingServer(1000.0, service_ms=0.2).probe, target, Plan(max_probes=3, max_retakes=1)
    )
    assert any(o.disputed for o in one.curve)


def test_late_tickets_with_a_quiet_generator_are_a_stall_never_the_loadgen_bound() -> None:
    @dataclass
    class Stalled(ModelServer):
        def probe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
            seen = super().probe(mode, rate, users)
            late = 0.05 if rate is not None and rate > 500 else 0.0
            return dataclasses.replace(seen, late_share=late, loadgen_cpu_percent=40.0)

    target = Target(slo_p99_ms=100.0)
    found = search(Stalled(1000.0).probe, target, Plan(max_probes=4, max_retakes=2))
    stalls = [o for o in found.curve if o.late_share > 0]
    assert stalls and all(o.loadgen_stalled and not o.loadgen_bound for o in stalls)
    assert "stalled" in (stalls[0].disturbed(target) or "")
    assert any(o.retaken for o in stalls)
    assert bound(found, slots=None) != "loadgen"


def test_an_idle_async_saturation_probe_grows_its_users_and_the_search_gallops() -> None:
    """Capacity 2,000 req/s, but 64 users at 320 ms each read 200: the saturation probe's
    CPU says the users held it back; the search finds the capacity in the quick budget."""

    @dataclass
    class UserBound(ModelServer):
        latency_s: float = 0.32

        def probe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
            if mode != "closed":
                return super().probe(mode, rate, users)
            self.calls += 1
            achieved = min(self.capacity, users / self.latency_s)
            cpu = 100.0 * achieved / self.capacity
            return ProbeObservation(mode, None, achieved, 320.0, 400.0, 1000, 0, users, cpu)

    target = Target(slo_p99_ms=100.0)
    server = UserBound(2000.0, service_ms=0.2)
    quick = Plan(max_probes=3, max_retakes=2, grow_saturation=True)
    found = search(server.probe, target, quick)
    truth = server.true_capacity(100.0)
    assert found.rate is not None and found.rate >= 0.9 * truth, (found.rate, truth)
    saturation = [o for o in found.curve if o.mode == "closed"]
    assert len(saturation) >= 2 and saturation[-1].users > saturation[0].users
    # A slot-bound server's users do not grow (its slots, not its users, limit it)...
    fixed = search(UserBound(2000.0, service_ms=0.2).probe, target, Plan(max_probes=3))
    assert len([o for o in fixed.curve if o.mode == "closed"]) == 1
    # ...but a passing probe at low CPU doubles the rate instead of crawling by x1.15.
    opens = [o.offered_rps or 0.0 for o in fixed.curve if o.mode == "open"]
    assert opens[1] == pytest.approx(2 * opens[0])


def test_a_server_at_its_cpu_quota_is_busy_not_idle() -> None:
    """--cpu-limit 0.5 on one CPU: the server's CPUs read 50 % busy at most. The search's
    CPU rules read the share of the quota, so a throttled server neither gallops past its
    capacity nor is judged slot-bound with CPU left."""

    @dataclass
    class Quota(ModelServer):
        def probe(self, mode: Load, rate: float | None, users: int) -> ProbeObservation:
            seen = super().probe(mode, rate, users)
            cpu = (seen.server_cpu_percent or 0.0) / 2
            return dataclasses.replace(seen, server_cpu_percent=cpu, server_cpu_cap_percent=50.0)

    target = Target(slo_p99_ms=100.0)
    server = Quota(500.0)
    found = search(server.probe, target, Plan(max_probes=3))
    opens = [o for o in found.curve if o.mode == "open"]
    assert opens[0].server_cpu_load is not None and opens[0].server_cpu_load >= 50.0
    # Busy at its quota: the second probe steps up by x1.15, it does not double.
    assert (opens[1].offered_rps or 0.0) < 1.5 * (opens[0].offered_rps or 0.0)
    assert bound(found, slots=4) == "server-cpu"
    assert "of a 50% quota" in describe(found, bound(found, slots=4))
