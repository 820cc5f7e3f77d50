"""Every flag a run or a cell can carry: its threshold, what the console says about it,
what the report says, whether it keeps a cell out of the ranking, and where it is listed.

The driver sets the run flags (a measured window's in ``runners.bench.measure``, a
lost worker's and timeouts' in ``runners.bench.incidents``, profiling's in
``runners.bench.profiles``); the aggregation marks the runs of a ``noisy`` cell
(``runners.results.cells``); their thresholds are in ``runners.results.criteria``;
the console prints each flag's ``note``; the report shows ``help`` beside each badge
and ranks no cell that carries an ``unranked`` flag. ``failed`` and ``partly-confirmed``
are cell flags of the report only (a repetition of the cell failed; some repeats were
confirmed and others not, and the cell is ranked by the confirmed ones).

What a flag does to the ranking is one of three things:

- ``unranked``: the figure cannot be trusted or compared with the others (a repeat
  failed, the confirmation missed the target, requests failed or timed out, a worker
  died, a profiler slowed the server, a closed loop measured its user count). The cell
  is shown without a rank, and the report's headline says what to rerun;
- ``lower_bound``: the figure is what the server did at least (the load generator
  could not push harder, other programs took some of its CPUs). The cell is ranked as
  ``≥ X``: its band is open above, so it ties with every cell above it whose band
  reaches X, and a lower bound that beats every other cell still wins;
- neither: a footnote (the same for every run of an invocation, like ``shared-cpus``,
  or shown by the band itself, like ``noisy`` and ``steal``). It never decides a rank.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runners.results.criteria import (
    CONFIRM_BACKOFF,
    INTERFERENCE_SHARE,
    LATE_SHARE,
    LOADGEN_CPU_PERCENT,
    LOADGEN_STALL_CPU_PERCENT,
    NOISY_CV,
    NOISY_SPREAD,
    STEAL_SHARE,
    USER_BOUND_CPU_PERCENT,
)


@dataclass(frozen=True)
class Flag:
    name: str
    help: str
    """The report's short explanation (a badge's title, the legend under a table)."""
    note: str | None
    """The console's explanation and remedy; None for a flag the driver never sets."""
    unranked: bool
    """A cell carrying it is shown but given no rank: its figure cannot be trusted."""
    order: int | None = None
    """Its place in a cell's list of flags; None: after those with one, by name."""
    threshold: float | None = None
    lower_bound: bool = False
    """A cell carrying it is ranked by its figure as a lower bound (``≥ X``)."""


FLAGS: dict[str, Flag] = {
    flag.name: flag
    for flag in (
        Flag(
            "failed",
            help="a repetition of this cell failed (see Failed runs)",
            note=None,
            unranked=True,
            order=0,
        ),
        Flag(
            "loadgen-bound",
            help="the load generator ran out of CPU or fell behind its schedule: the server "
            "may be able to do more, so its figure is a lower bound (ranked as ≥)",
            note=(
                f"the load generator was saturated (over {LOADGEN_CPU_PERCENT:.0f}% of the CPU "
                "it can use, everything pinned to its CPUs counted) or fell behind its "
                "schedule, so this run's figure is a lower bound of the server's (the report "
                "ranks it as ≥ X): give Locust more CPU, i.e. more --loadgen-cpus and Locust "
                "processes (one Locust process uses one core at most), or fewer --server-cpus"
            ),
            # What the server did at least: ranked as such (a lower bound that beats every
            # other cell still wins), never dropped.
            unranked=False,
            lower_bound=True,
            order=1,
            threshold=LOADGEN_CPU_PERCENT,
        ),
        Flag(
            "noisy",
            help=(
                f"its repetitions differ by more than ±{NOISY_SPREAD:.0%} around their mean "
                f"rps, or its ranking figure varies by more than {NOISY_CV:.0%} (CV): ranked, "
                "its band (the repeats' lowest low to highest high) shows the spread"
            ),
            note=(
                f"the repeats of this cell lie more than {NOISY_SPREAD:.0%} from their mean rps "
                "(half the max-min range), or their capacity (rps) per GiB has a coefficient of "
                f"variation over {NOISY_CV:.0%}: the cell's band is wide, so it may tie with "
                "its neighbours; run on a quieter machine, with a longer --duration or more "
                "--repeat"
            ),
            # The spread is in the band, which decides the ties: the flag only says so.
            unranked=False,
            order=2,
            threshold=NOISY_SPREAD,
        ),
        Flag(
            "user-bound",
            help="closed loop: the server had CPU and workers to spare, so the figure "
            "measured the user count",
            note=(
                f"a closed loop whose server CPUs stayed under {USER_BOUND_CPU_PERCENT:.0f}% "
                "while the load generator was not saturated and the server had free "
                "workers or threads: throughput = users / latency, so this run measured "
                "--users, not the server. Use the default open-loop capacity search "
                "(--load open), or more --users"
            ),
            unranked=True,
            order=3,
            threshold=USER_BOUND_CPU_PERCENT,
        ),
        Flag(
            "unconfirmed",
            help="the confirmation window at the rate found missed the latency target (or "
            "no rate passed): the capacity is uncertain",
            note=(
                "the capacity search's confirmation window did not hold the latency target at "
                f"the rate the probes found, nor at {CONFIRM_BACKOFF:g} x of it (or no rate passed "
                "at all): the server's latency varies over time (a noisy machine, gc pauses, "
                "a worker restart). Its figures are those of the last window; use a longer "
                "--duration, --repeat, or a quieter machine"
            ),
            unranked=True,
            order=4,
        ),
        Flag(
            "partly-confirmed",
            help="some repeats' confirmation windows missed the latency target: the cell is "
            "ranked by the repeats that held it (the others are in its runs)",
            note=None,
            unranked=False,
            order=4,
        ),
        Flag(
            "failures",
            help="some requests failed",
            note="some requests failed (wrong status or body): see the Locust report",
            unranked=True,
            order=4,
        ),
        Flag(
            "shared-cpus",
            help="the server and the load generator shared CPUs",
            note=(
                "server and load generator shared CPUs, so they competed: use --server-cpus "
                "and --loadgen-cpus on a machine with at least two CPUs"
            ),
            # Every run of an invocation carries it alike: it ranks nothing lower.
            unranked=False,
            order=5,
        ),
        Flag(
            "interference",
            help=f"other processes used over {INTERFERENCE_SHARE:.0%} of the server's or the "
            "load generator's CPUs during the window: the figure is what the server did while "
            "sharing them, a lower bound (ranked as ≥)",
            note=(
                f"processes outside the run used over {INTERFERENCE_SHARE:.0%} of the time of the "
                "server's or the load generator's CPUs during the measured window (their busy "
                "time minus the server's, Locust's, the upstream's and the driver's CPU time: "
                "see the run's interference figures), so they competed with the run and its "
                "figure is a lower bound (the report ranks it as ≥ X): run on a quiet machine, "
                "or keep other jobs off these CPUs"
            ),
            # Competing for its CPUs only takes from the server: it did at least this much.
            unranked=False,
            lower_bound=True,
            order=5,
            threshold=INTERFERENCE_SHARE,
        ),
        Flag(
            "steal",
            help=f"the hypervisor took over {STEAL_SHARE:.0%} of the server's or the load "
            "generator's CPUs during the window (steal: a busy neighbour on a shared VM)",
            note=(
                f"the hypervisor took over {STEAL_SHARE:.0%} of the time of the server's or the "
                "load generator's CPUs during the measured window (steal time in /proc/stat: "
                "the virtual CPUs were ready to run and were not run), so the figures may "
                "understate the server; the capacity search retook the probes it disturbed. "
                "Rerun on a quieter host, or with --repeat to see the spread"
            ),
            unranked=False,
            order=5,
            threshold=STEAL_SHARE,
        ),
        Flag(
            "loadgen-stalls",
            help="the load generator's tickets left late while it had CPU to spare: the host "
            "stalled it (not its limit)",
            note=(
                f"more than {LATE_SHARE:.0%} of the load generator's requests left late while "
                f"its CPUs were under {LOADGEN_STALL_CPU_PERCENT:.0f}% busy: not the generator's "
                "capacity but a stall of the host (steal, a burst of another job); the probes "
                "were retaken and it persisted. See the probes' late shares and CPU figures"
            ),
            unranked=False,
            order=5,
        ),
        Flag(
            "database-shared-cpus",
            help="the PostgreSQL server on this host may run on the server's CPUs: its CPU "
            "time competed with the server's",
            note=(
                "the PostgreSQL server runs on this host and is not pinned, so its processes "
                "ran on the server's CPUs too (see the run's database figures): the server's "
                "throughput includes sharing its CPUs with the database. Pin PostgreSQL to "
                "other CPUs (e.g. taskset, or systemd's CPUAffinity=) or use a database on "
                "another host for figures of the server alone"
            ),
            # Every run against the same database carries it alike: it ranks nothing lower.
            unranked=False,
            order=6,
        ),
        Flag(
            "precheck-failed",
            help="before anything was timed, this runner answered a URL with 5xx or not at all, "
            "or differently from another runner (measured anyway: --allow-errors)",
            note=(
                "the pre-check found this runner serving some URL of the project wrong (a 5xx, "
                "no answer, or a status or body size unlike another runner's: see "
                "environment.project.precheck), and --allow-errors measured it anyway: its "
                "figures include those pages' errors"
            ),
            unranked=True,
            order=4,
        ),
        Flag(
            "worker-restarted",
            help="a worker died during a run; the master replaced it (recovered)",
            note=(
                "a worker died during the run and the server's master started a new one: the "
                "server recovered, but the figures include the lost requests and the restart"
            ),
            unranked=True,
        ),
        Flag(
            "worker-lost",
            help="a worker died during a run and was not replaced",
            note=(
                "a worker died during the run and was not replaced: the server ran the rest "
                "of the run with fewer workers"
            ),
            unranked=True,
        ),
        Flag(
            "oom-killed",
            help="the kernel OOM-killed a process of the server at its cgroup's memory limit "
            "(--memory-limit): the figures include the lost requests and the restart",
            note=(
                "the kernel OOM-killed a process of the server at its cgroup's memory limit, as "
                "a container platform would (see the run's memory.cgroup.oom_kills and events): "
                "the requests it was serving failed, and a pre-fork master started a new worker "
                "(worker-restarted). The pod does not fit its limit under this load: give it "
                "more memory (--memory-limit), fewer workers (--fit-memory finds how many fit), "
                "or recycle workers (gunicorn --max-requests)"
            ),
            unranked=True,
        ),
        Flag(
            "profiled",
            help="run with --profile or --memory-profile: the profiler slowed the server "
            "(json: tracemalloc by 67-84 %, py-spy by 6-47 %), so its figures are not comparable",
            note=(
                "this run was profiled (--profile: py-spy; --memory-profile: tracemalloc in every "
                "worker), which slows the server (json on 1 server CPU, python -m "
                "runners.cli.profilecheck: tracemalloc -84 % requests/s under "
                "gunicorn-sync-preload and -67 % under uvicorn, py-spy -47 % and -6 %), so it "
                "is not ranked: compare its profiles, not its throughput"
            ),
            unranked=True,
        ),
        Flag(
            "timeouts",
            help="some requests got no answer within the request timeout (a hang?)",
            note=(
                "some requests got no answer within --request-timeout: the server hung or was "
                "overloaded (see the server log and the Locust failures)"
            ),
            unranked=True,
        ),
    )
}

UNRANKED = frozenset(name for name, flag in FLAGS.items() if flag.unranked)
"""Flags that keep a cell out of the ranking."""
LOWER_BOUND = frozenset(name for name, flag in FLAGS.items() if flag.lower_bound)
"""Flags that make a cell's figure a lower bound: ranked as ``≥ X``."""


def notes_for(flags: Iterable[str]) -> list[str]:
    """``flag: note`` for each flag that has a note."""
    return [f"{name}: {FLAGS[name].note}" for name in flags if name in FLAGS and FLAGS[name].note]


def order_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """Each flag once: those with an ``order`` by it, then the others by name."""
    unique = set(flags)

    def key(name: str) -> tuple[int, int, str]:
        order = FLAGS[name].order if name in FLAGS else None
        return (0, order, name) if order is not None else (1, 0, name)

    return tuple(sorted(unique, key=key))


def help_texts() -> dict[str, str]:
    """The report's short explanation of every flag, by name."""
    return {name: flag.help for name, flag in FLAGS.items()}
