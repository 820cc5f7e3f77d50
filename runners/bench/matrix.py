"""The matrix: every run one invocation makes, in the order it makes them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runners.bench.options import Options
from runners.bench.pods import NO_POD, PodSpec, pod_specs
from runners.results.document import Matrix, RuntimeInfo, SoakPlan
from runners.results.record import PythonInfo, run_id, sweep_qualifiers
from runners.runtimes import axes
from runners.runtimes.interpreters import Interpreter
from runners.runtimes.venvs import Runtime
from runners.serving.registry import (
    RUNNERS,
    Runner,
    sweep_counts,
    takes_threads,
    takes_workers,
)


@dataclass(frozen=True)
class RunSpec:
    """One planned run of the matrix: runner x workload x users x repeat x runtime x
    workers x threads (users 0: an open-loop capacity search)."""

    runner: Runner
    workload: str
    users: int
    repeat: int
    runtime: axes.RuntimeSpec = axes.DEFAULT_RUNTIME
    """Interpreter, Django and gc mode (None: the default); qualifiers when they vary."""
    workers: int | None = None
    """Server workers (None: the runner's rule)."""
    threads: int | None = None
    """Threads per worker (None: the runner's count)."""
    sweep: tuple[str, ...] = ()
    """``w2``, ``t4``: the counts that vary among the runner's runs (a sweep)."""
    pod: PodSpec = NO_POD
    """The limits it runs under and what its worker rule reads (``--memory-limit`` ...)."""

    @property
    def qualifiers(self) -> tuple[str, ...]:
        return (*self.sweep, *self.pod.qualifiers, *self.runtime.qualifiers)

    @property
    def id(self) -> str:
        base = run_id(self.runner.name, self.workload, self.users, self.repeat)
        return axes.qualified(base, self.qualifiers)

    @property
    def load(self) -> str:
        return f"u{self.users}" if self.users else "open"

    @property
    def stem(self) -> str:
        base = f"{self.runner.name}-{self.workload}-{self.load}-r{self.repeat}"
        return axes.qualified(base, self.qualifiers, "-")

    @property
    def label(self) -> str:
        load = f"u={self.users}" if self.users else "open"
        base = f"{self.runner.name} {self.workload} {load} r{self.repeat}"
        return axes.qualified(base, self.qualifiers, " ")


def concurrency_specs(
    runner: Runner, options: Options
) -> list[tuple[int | None, int | None, tuple[str, ...]]]:
    """The runner's (workers, threads) and the qualifiers that tell its runs apart."""
    pairs = concurrency(options, runner)
    vary_workers = len({w for w, _ in pairs}) > 1
    vary_threads = len({t for _, t in pairs}) > 1
    return [
        (w, t, sweep_qualifiers(w if vary_workers else None, t if vary_threads else None))
        for w, t in pairs
    ]


def pods_of(runner: Runner, options: Options) -> list[PodSpec]:
    """The pods ``runner`` runs as (``--memory-limit`` x ``--cpu-limit`` x ``--worker-rule``)."""
    return pod_specs(runner, options.memory_limits, options.cpu_limits, options.worker_rules)


def plan(options: Options) -> list[RunSpec]:
    """Every run, repeats outermost; a sweep's counts and the pods innermost (one after
    the other, so that a limited run is measured right beside the unlimited one)."""
    return [
        RunSpec(RUNNERS[runner], workload, users, repeat, runtime, workers, threads, sweep, pod)
        for repeat in range(1, options.repeat + 1)
        for runner in options.runners
        for workload in options.workloads
        for users in options.users
        for runtime in axes.runtime_specs(
            RUNNERS[runner], options.pythons, options.djangos, options.gcs
        )
        for workers, threads, sweep in concurrency_specs(RUNNERS[runner], options)
        for pod in pods_of(RUNNERS[runner], options)
    ]


def matrix_block(options: Options) -> Matrix:
    soak = options.soak
    return Matrix(
        runners=tuple(options.runners),
        workloads=tuple(options.workloads),
        users=tuple(options.users),
        duration_s=options.duration_s,
        warmup_s=options.warmup_s,
        repeat=options.repeat,
        quick=options.quick,
        workers=options.workers[0] if len(options.workers) == 1 else None,
        threads=options.threads[0] if len(options.threads) == 1 else None,
        worker_counts=options.workers if len(options.workers) > 1 else None,
        thread_counts=options.threads if len(options.threads) > 1 else None,
        sweep=options.sweep or None,
        variant=options.variant,
        middleware=options.middleware,
        spawn_rate=options.spawn_rate,
        upstream_ms=options.upstream_ms,
        request_timeout_s=options.request_timeout_s,
        seed=options.seed or None,
        pythons=tuple(python_record(p) for p in options.pythons),
        djangos=tuple(options.djangos),
        gcs=tuple(options.gcs),
        soak=None if soak is None else SoakPlan(requests=soak.requests, duration_s=soak.duration_s),
        order="repeat-major",
        server_lifecycle="a fresh server per run",
        locust=(
            "open loop: a capacity search per run (probes, then a confirmation window)"
            if options.load == "open"
            else "closed loop, back to back"
        )
        + f", {locust_processes(options)}, headless subprocess",
        load=options.load,
        slo_p99_ms=options.slo_p99_ms,
        arrival=options.arrival,
        loadgen_processes=options.loadgen_processes,
        expect_workers=options.expect_workers,
        memory_limits=options.memory_limits or None,
        cpu_limits=options.cpu_limits or None,
        worker_rules=options.worker_rules or None,
        fit_memory_bytes=options.fit_memory,
    )


def locust_processes(options: Options) -> str:
    if options.loadgen_processes <= 1 and not options.expect_workers:
        return "one process"
    remote = f" + {options.expect_workers} from elsewhere" if options.expect_workers else ""
    return f"distributed: a master and {options.loadgen_processes} workers here{remote}"


def python_record(interpreter: Interpreter) -> PythonInfo:
    """What results.json records of an interpreter."""
    return PythonInfo(
        implementation=interpreter.implementation,
        version=interpreter.version,
        path=interpreter.path,
    )


def runtime_python(runtime: Runtime) -> PythonInfo:
    """A run's ``python``: the interpreter (plus the venv it ran from)."""
    info = python_record(runtime.interpreter)
    return info if runtime.venv is None else dataclasses.replace(info, venv=runtime.python)


def runtime_record(runtime: Runtime) -> RuntimeInfo:
    """An element of results.json's ``runtimes``."""
    return RuntimeInfo(
        python=runtime_python(runtime),
        django=runtime.django,
        django_requested=runtime.django_spec,
        venv=None if runtime.venv is None else str(runtime.venv),
        packages=dict(runtime.packages),
    )


def concurrency(options: Options, runner: Runner) -> list[tuple[int | None, int | None]]:
    """The (workers, threads) ``runner`` runs at, one run each (None: its own count).
    A ``--workers`` or ``--threads`` value that does not apply to the runner does not
    multiply its runs."""
    if options.sweep:
        return sweep_counts(runner, len(options.placement.server))
    workers: tuple[int | None, ...] = (
        options.workers if options.workers and takes_workers(runner) else (None,)
    )
    threads: tuple[int | None, ...] = (
        options.threads if options.threads and takes_threads(runner) else (None,)
    )
    return [(w, t) for w in workers for t in threads]


def run_count(options: Options) -> int:
    """How many runs the matrix makes (``len(plan(options))``, without building it)."""
    per_repeat = sum(
        len(axes.runtime_specs(RUNNERS[name], options.pythons, options.djangos, options.gcs))
        * len(concurrency(options, RUNNERS[name]))
        * len(pods_of(RUNNERS[name], options))
        for name in options.runners
    )
    return options.repeat * per_repeat * len(options.workloads) * len(options.users)
