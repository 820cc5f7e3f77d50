"""``--fit-memory SIZE``: per runner and workload, the most workers (pre-fork) or workers
x threads (threaded, async: the runner's own thread count) whose working set stays under
SIZE at their capacity rate through a soak of ``--soak``'s length, and the capacity of
that pod.

The search is bounded before it starts:

1. The idle footprint bounds it from above: the runner's working set idle at one and
   at two workers (two server starts, a few seconds) gives a base and a per-worker
   figure; no more than ``W = min(FIT_MAX_WORKERS, (SIZE - base) / per worker)``
   workers can fit, as load only adds memory. A runner that runs one process tries
   that one.
2. A bisection over ``1..W``: each trial is one run under SIZE as its memory limit
   (``--cpu-limit`` as its quota, if given): the capacity search, its confirmation
   window, then the confirmed rate held for the soak's length
   (``runners.bench.measure.hold_at_capacity``). A trial fits when no process was
   OOM-killed in it and the working set stayed under SIZE. A fit raises the lower
   bound, a miss lowers the upper one, until they meet: at most ``ceil(log2(W + 1))``
   trials, each at most the capacity search's probe budget plus its confirmation
   window plus the hold.

The answer (``PodFit``) goes into results.json's ``fits``; every trial is an ordinary run
(its id ends in ``wN``), so the report and the planner read them as a sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from runners.bench.matrix import RunSpec
from runners.bench.pods import PodSpec, idle_footprint
from runners.bench.run import Context, run_one
from runners.results.criteria import FIT_MAX_WORKERS
from runners.results.document import ResultsFile
from runners.results.pods import FitTrial, PodFit
from runners.results.record import Run, sweep_qualifiers
from runners.serving.registry import RUNNERS, Runner, takes_workers

RunHook = Callable[[RunSpec, Callable[[], Run]], Run]
"""Runs one trial (the progress view's wrapper around ``run_one``)."""


def upper_bound(size: int, base: float, per_worker: float) -> int:
    """The most workers whose *idle* working set fits ``size`` (load only adds memory),
    at most ``FIT_MAX_WORKERS``; 0 when not even one does."""
    if base + per_worker > size:
        return 0
    if per_worker <= 0:
        return FIT_MAX_WORKERS
    return max(0, min(FIT_MAX_WORKERS, math.floor((size - base) / per_worker)))


def trial_budget(bound: int) -> int:
    """Trials the bisection over ``1..bound`` needs at most."""
    return math.ceil(math.log2(bound + 1)) if bound > 0 else 0


def next_count(low: int, high: int) -> int:
    """The next worker count between the largest that fit (``low``, 0: none yet) and the
    smallest that did not (``high``)."""
    return (low + high) // 2


def idle_model(runner: Runner, ctx: Context) -> tuple[float, float]:
    """(base, per worker) of the runner's idle working set, from one and two workers
    (a single-process runner: its one process is the base). Kept an upper bound of what
    fits: per worker is what the second worker added, but no more than the whole of one
    (uvicorn at one worker runs without its master, which the second brings)."""
    env = dict(ctx.server_env)
    cpus = ctx.options.placement.server
    one = idle_footprint(runner, cpus, env) or 0
    if not takes_workers(runner):
        return float(one), 0.0
    two = idle_footprint(runner, cpus, env, workers=2) or one
    per = float(max(0, min(one, two - one)))
    return one - per, per


def trial(
    runner: Runner, workload: str, workers: int, ctx: Context, run: RunHook
) -> tuple[Run, FitTrial]:
    """One worker count under the size: its run, and what it says."""
    options = ctx.options
    assert options.fit_memory is not None
    cpu = options.cpu_limits[0] if options.cpu_limits else None
    spec = RunSpec(
        runner,
        workload,
        0,
        1,
        workers=workers if takes_workers(runner) else None,
        sweep=sweep_qualifiers(workers, None) if takes_workers(runner) else (),
        pod=PodSpec(options.fit_memory, cpu),
    )
    done = run(spec, lambda: run_one(spec, ctx))
    hold = done.hold
    cgroup = done.memory.cgroup if done.memory is not None else None
    fits = done.ok and hold is not None and hold.fits
    reason = ""
    if not done.ok:
        reason = done.error or "failed"
    elif hold is not None and not hold.fits:
        kills = cgroup.oom_kills_total if cgroup is not None else None
        reason = f"{kills} OOM kill(s)" if kills else "working set reached the size"
    return done, FitTrial(
        workers=done.workers or workers,
        threads=done.threads,
        run_id=done.id,
        fits=fits,
        capacity_rps=done.capacity.rps if done.capacity is not None else None,
        working_set_peak_bytes=hold.working_set_peak_bytes if hold is not None else None,
        oom_kills=cgroup.oom_kills_total if cgroup is not None else None,
        reason=reason,
    )


def fit(
    runner: Runner,
    workload: str,
    bound: int,
    ctx: Context,
    results: ResultsFile,
    run: RunHook,
) -> PodFit:
    """The bisection over ``1..bound`` (see the module's docstring)."""
    options = ctx.options
    assert options.fit_memory is not None
    low, high = 0, bound + 1
    trials: list[FitTrial] = []
    best: FitTrial | None = None
    while high - low > 1:
        count = next_count(low, high)
        done, found = trial(runner, workload, count, ctx, run)
        results.add_run(done)
        trials.append(found)
        if found.fits:
            low, best = count, found
        else:
            high = count
    note = (
        f"{best.workers} worker(s) fit; {high} did not"
        if best is not None and high <= bound
        else f"{bound} fit, the most the search tries ({FIT_MAX_WORKERS}): more may"
        if best is not None and bound == FIT_MAX_WORKERS
        else "every count up to the idle bound fit"
        if best is not None
        else "not even one worker fits"
        if bound
        else "one worker's idle footprint is over the size"
    )
    return PodFit(
        runner=runner.name,
        workload=workload,
        memory_bytes=options.fit_memory,
        cpu_limit_cores=options.cpu_limits[0] if options.cpu_limits else None,
        threads=runner.threads,
        workers=best.workers if best is not None else None,
        capacity_rps=best.capacity_rps if best is not None else None,
        working_set_peak_bytes=best.working_set_peak_bytes if best is not None else None,
        upper_bound=bound,
        note=note,
        trials=tuple(trials),
    )


def fit_all(ctx: Context, results: ResultsFile, run: RunHook, say: Callable[[str], None]) -> None:
    """Every runner x workload of the options, each fit saved as it ends."""
    options = ctx.options
    assert options.fit_memory is not None
    for name in options.runners:
        runner = RUNNERS[name]
        base, per = idle_model(runner, ctx)
        if takes_workers(runner):
            bound = upper_bound(options.fit_memory, base, per)
        else:
            bound = 1 if base <= options.fit_memory else 0
        say(
            f"{name}: idle {base / 2**20:.0f} MiB + {per / 2**20:.0f} MiB per worker: at most "
            f"{bound} worker(s) can fit, {trial_budget(bound)} trial(s) per workload at most"
        )
        for workload in options.workloads:
            found = fit(runner, workload, bound, ctx, results, run)
            results.update(fits=(*results.results.fits, found))
            say(f"{name} on {workload}: {found.note}")


def budget(runners: int, workloads: int) -> int:
    """The most trial runs ``--fit-memory`` makes (for the progress view)."""
    return runners * workloads * trial_budget(FIT_MAX_WORKERS)


def describe(runners: int, workloads: int, size: int, hold_s: float | None) -> str:
    """The plan of a ``--fit-memory`` invocation, for the console."""
    hold = f"{hold_s:g} s" if hold_s is not None else "the soak's requests"
    return (
        f"Plan: --fit-memory {size / 2**20:.0f} MiB for {runners} runner(s) x {workloads} "
        f"workload(s): per runner, its idle footprint at one and two workers bounds the "
        f"workers (at most {FIT_MAX_WORKERS}), then a bisection of at most "
        f"{trial_budget(FIT_MAX_WORKERS)} trials per workload, each a capacity search under "
        f"the size as memory limit and its rate held for {hold}."
    )
