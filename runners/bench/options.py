"""The bench command line: defaults, options, and their checks.

``parse_options`` turns argv into an ``Options`` record (or a one-line
``UsageError``, exit status 2, before anything starts)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtests.catalog import (
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_UPSTREAM_MS,
    WORKLOADS,
)
from runners.bench import pods, soak
from runners.bench.arguments import build_parser
from runners.bench.defaults import (
    DEFAULT_RUNNERS,
    DEFAULT_USERS,
    DEFAULT_WORKLOADS,
    QUICK_RUNNERS,
    QUICK_USERS,
    QUICK_WORKLOADS,
    REPORTS_DIR,
    TIMINGS,
    Timing,
)
from runners.bench.project_options import ProjectOptions, parse_project
from runners.bench.soak import SoakTarget
from runners.cli.args import UsageError, parse_seed, parse_size, split_list
from runners.results.criteria import DEFAULT_SLO_P99_MS, FIT_HOLD_S
from runners.runtimes.axes import check_gcs, gc_capable, parse_gcs
from runners.runtimes.interpreters import (
    Interpreter,
    InterpreterNotFound,
    current_interpreter,
    find_interpreters,
)
from runners.runtimes.releases import DjangoUnavailable, check_djangos, parse_django
from runners.serving import preflight
from runners.serving.cpus import (
    Placement,
    available_cpus,
    check_available,
    parse_cpus,
    placement_from,
)
from runners.serving.registry import RUNNERS
from runners.vocabulary import (
    DEFAULT_ARRIVAL,
    FAMILIES,
    GC_MODES,
    VARIANTS,
    Arrival,
    GcMode,
    Load,
    Variant,
    WorkerBasis,
)


@dataclass(frozen=True)
class Options:
    runners: tuple[str, ...]
    workloads: tuple[str, ...]
    users: tuple[int, ...]
    duration_s: float
    warmup_s: float
    repeat: int
    workers: tuple[int, ...]
    """``--workers``: each a run of the runners that take it (empty: the runner's rule)."""
    threads: tuple[int, ...]
    """``--threads``: each a run of the threaded runners (empty: the runner's count)."""
    placement: Placement
    database_url: str | None
    output: Path
    seed: dict[str, int]
    upstream_ms: int
    variant: Variant | None
    middleware: str
    spawn_rate: float | None
    quick: bool
    report: bool
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    # --python, --django, --gc, --soak (runners.runtimes, runners.bench.soak); empty: the default.
    pythons: tuple[Interpreter, ...] = ()
    djangos: tuple[str, ...] = ()
    gcs: tuple[GcMode, ...] = ()
    soak: SoakTarget | None = None
    micro: bool = False
    load: Load = "open"
    slo_p99_ms: float = DEFAULT_SLO_P99_MS
    arrival: Arrival = DEFAULT_ARRIVAL
    loadgen_processes: int = 1
    expect_workers: int = 0
    master_bind_host: str = "127.0.0.1"
    master_port: int | None = None
    calibrate: bool = False
    # --profile, --memory-profile (runners.bench.profiles): profiled runs are not ranked.
    profile: bool = False
    memory_profile: bool = False
    # --sweep: worker and thread counts per runner (runners.serving.registry.sweep_counts).
    sweep: bool = False

    # --project (runners.bench.project_options): a user's Django project, its traffic.
    project: ProjectOptions | None = None
    # --agent (runners.agent): the servers run on the agent's host.
    agent: str | None = None
    agent_token_file: Path | None = None

    # --memory-limit, --cpu-limit, --worker-rule, --fit-memory (runners.bench.pods): each a
    # dimension of the matrix (empty: not asked for).
    memory_limits: tuple[int | None, ...] = ()
    cpu_limits: tuple[float | None, ...] = ()
    worker_rules: tuple[WorkerBasis, ...] = ()
    fit_memory: int | None = None
    """``--fit-memory``: the pod memory whose most workers are searched (runners.bench.fitting)."""
    hold: SoakTarget | None = None
    """``--fit-memory``: how long each trial holds its capacity rate (``--soak``'s length)."""

    @property
    def pods(self) -> bool:
        """Any pod option was given: the runs record the pod they ran as."""
        return bool(self.memory_limits or self.cpu_limits or self.worker_rules or self.fit_memory)

    @property
    def timing(self) -> Timing:
        return TIMINGS[(self.load, self.quick)]

    @property
    def probe_s(self) -> float:
        return self.timing.probe_s

    @property
    def max_probes(self) -> int:
        return self.timing.max_probes

    @property
    def max_retakes(self) -> int:
        return self.timing.max_retakes


def names(
    text: str | None, default: Sequence[str], known: Mapping[str, Any], what: str
) -> tuple[str, ...]:
    if text is None:
        return tuple(default)
    chosen = split_list(text, what)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UsageError(
            f"--{what}: unknown {what[:-1]} {', '.join(map(repr, unknown))} "
            f"(accepted: {', '.join(known)})"
        )
    return chosen


def positive_ints(text: str | None, default: Sequence[int], what: str) -> tuple[int, ...]:
    if text is None:
        return tuple(default)
    values = []
    for item in split_list(text, what):
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--{what}: {item!r} is not a whole number") from None
        if value < 1:
            raise UsageError(f"--{what}: {value} is not positive")
        values.append(value)
    return tuple(values)


def positive(value: float | None, what: str, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not zero_ok):
        raise UsageError(f"--{what}: {value:g} must be {'>= 0' if zero_ok else '> 0'}")


def parse_database(text: str | None) -> str | None:
    """None for SQLite, else a postgres URL."""
    value = text if text is not None else os.environ.get("DATABASE_URL") or "sqlite"
    if value == "sqlite":
        return None
    if urlsplit(value).scheme not in {"postgres", "postgresql"}:
        raise UsageError(f"--database: expected sqlite or a postgres:// URL, got {value!r}")
    return value


def check_database(url: str | None, what: str) -> None:
    """A usage error, before any server starts, if the PostgreSQL database does not answer."""
    if url is None:
        return
    problem = preflight.database_problem(url)
    if problem is not None:
        raise UsageError(
            f"{what} {preflight.redact(url)}: {problem} "
            "(accepted: sqlite or a reachable postgres:// URL)"
        )


def parse_variant(text: str | None) -> Variant | None:
    for variant in VARIANTS:
        if text == variant:
            return variant
    return None


def default_output() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return REPORTS_DIR / stamp


def check_output(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output: {path} exists and is not a folder")
    if (path / "results.json").exists():
        raise UsageError(f"--output: {path} already holds a results.json; choose another folder")
    return path


def quick_runners() -> tuple[str, ...]:
    chosen = []
    for family in FAMILIES:
        preferred = QUICK_RUNNERS.get(family)
        if preferred in RUNNERS:
            chosen.append(preferred)
        else:
            chosen.extend([r.name for r in RUNNERS.values() if r.family == family][:1])
    return tuple(chosen)


def parse_options(argv: Sequence[str]) -> tuple[Options | None, argparse.Namespace]:
    """Options from the command line (``None`` with ``--list``); ``UsageError`` if bad."""
    a = build_parser().parse_args(list(argv))
    try:
        placement = agent_placement(a) if a.agent else placement_from(a.server_cpus, a.loadgen_cpus)
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(f"--server-cpus/--loadgen-cpus: {exc}") from None
    if a.list:
        return None, a
    check_numbers(a)
    pod = pod_arguments(a)
    quick = bool(a.quick)
    load: Load = "closed" if a.load == "closed" or a.soak is not None else "open"
    if load == "open" and a.users is not None:
        raise UsageError(
            "--users: a user count belongs to a closed loop (--load closed --users N); the "
            "default open loop finds each server's capacity whatever the user count"
        )
    timing = TIMINGS[(load, quick)]
    project = parse_project(a)
    slo_p99_ms = a.slo_p99 or DEFAULT_SLO_P99_MS
    duration_s = a.duration or timing.duration_s
    options = Options(
        runners=names(a.runners, quick_runners() if quick else DEFAULT_RUNNERS, RUNNERS, "runners"),
        workloads=project.workloads
        if project is not None
        else names(
            a.workloads, QUICK_WORKLOADS if quick else DEFAULT_WORKLOADS, WORKLOADS, "workloads"
        ),
        users=positive_ints(a.users, QUICK_USERS if quick else DEFAULT_USERS, "users")
        if load == "closed"
        else (0,),
        duration_s=duration_s,
        warmup_s=a.warmup if a.warmup is not None else timing.warmup_s,
        repeat=a.repeat or 1,
        workers=positive_ints(a.workers, (), "workers"),
        threads=positive_ints(a.threads, (), "threads"),
        placement=placement,
        database_url=None if project is not None else parse_database(a.database),
        output=check_output(Path(a.output) if a.output else default_output()),
        seed=parse_seed(a.seed),
        upstream_ms=a.upstream_ms if a.upstream_ms is not None else DEFAULT_UPSTREAM_MS,
        variant=parse_variant(a.variant),
        middleware=a.middleware or "minimal",
        spawn_rate=a.spawn_rate,
        quick=quick,
        report=not a.no_report,
        request_timeout_s=a.request_timeout or default_request_timeout(slo_p99_ms, duration_s),
        micro=bool(a.micro),
        load=load,
        slo_p99_ms=slo_p99_ms,
        arrival="constant" if a.arrival == "constant" else DEFAULT_ARRIVAL,
        **loadgen_processes(a, placement),
        calibrate=bool(a.calibrate),
        profile=bool(a.profile),
        memory_profile=bool(a.memory_profile),
        sweep=check_sweep(a),
        agent=a.agent,
        agent_token_file=Path(a.agent_token_file) if a.agent_token_file else None,
        project=project,
        **pod,
    )
    try:
        options = replace(
            options, **from_args(a, options.runners, options.workloads, options.users)
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if options.agent is None and project is None:
        # Through an agent the database is the server host's: the agent checks it; a
        # project's is its settings'.
        check_database(options.database_url, "--database" if a.database else "$DATABASE_URL")
    return options, a


def check_numbers(a: argparse.Namespace) -> None:
    """``UsageError`` for a number that must be positive (or at least 0) and is not."""
    for value, what, zero_ok in (
        (a.duration, "duration", False),
        (a.warmup, "warmup", True),
        (a.repeat, "repeat", False),
        (a.upstream_ms, "upstream-ms", True),
        (a.spawn_rate, "spawn-rate", False),
        (a.request_timeout, "request-timeout", False),
        (a.slo_p99, "slo-p99", False),
        (a.loadgen_processes, "loadgen-processes", True),
        (a.expect_workers, "expect-workers", True),
        (a.master_port, "master-port", False),
    ):
        positive(value, what, zero_ok=zero_ok)


def pod_arguments(a: argparse.Namespace) -> dict[str, Any]:
    """``--memory-limit``, ``--cpu-limit``, ``--worker-rule`` and ``--fit-memory``, checked
    (``runners.bench.pods``). With ``--fit-memory``, ``--soak`` is each trial's hold at
    capacity (taken off ``a``: it does not make this a soak)."""
    memory_limits = pods.parse_memory_limits(a.memory_limit)
    cpu_limits = pods.parse_cpu_limits(a.cpu_limit)
    rules = pods.parse_worker_rules(a.worker_rule)
    if rules and (a.workers is not None or a.sweep):
        raise UsageError(
            "--worker-rule: it says what a worker rule reads; with --workers or --sweep no "
            "rule is applied"
        )
    fit = parse_size(a.fit_memory, "--fit-memory") if a.fit_memory is not None else None
    hold = None
    if fit is not None:
        given = next(
            (
                option
                for option, value in (
                    ("--workers", a.workers),
                    ("--threads", a.threads),
                    ("--sweep", a.sweep or None),
                    ("--memory-limit", a.memory_limit),
                    ("--worker-rule", a.worker_rule),
                )
                if value is not None
            ),
            None,
        )
        if given is not None:
            raise UsageError(
                f"--fit-memory: it searches the worker count under SIZE as the pods' memory "
                f"limit itself; give {given} or --fit-memory, not both"
            )
        if a.load == "closed" or len(cpu_limits) > 1:
            raise UsageError(
                "--fit-memory: it searches at capacity (the open loop), with one --cpu-limit"
            )
        try:
            hold = soak.parse_soak(a.soak) if a.soak is not None else None
        except ValueError as exc:
            raise UsageError(f"--soak: {exc}") from None
        a.soak = None
        hold = hold or soak.SoakTarget(duration_s=FIT_HOLD_S)
    pods.check_cgroups((*memory_limits, fit), cpu_limits)
    return {
        "memory_limits": memory_limits,
        "cpu_limits": cpu_limits,
        "worker_rules": rules,
        "fit_memory": fit,
        "hold": hold,
    }


def check_sweep(a: argparse.Namespace) -> bool:
    """``--sweep`` picks the worker and thread counts itself: not with ``--workers`` or
    ``--threads``."""
    if a.sweep and (a.workers is not None or a.threads is not None):
        given = "--workers" if a.workers is not None else "--threads"
        raise UsageError(
            f"--sweep: it picks the worker and thread counts per runner itself; give {given} "
            "or --sweep, not both"
        )
    return bool(a.sweep)


AGENT_REFUSES = {
    "server_cpus": "--server-cpus (the agent's own --server-cpus place its servers)",
    "python": "--python (the agent serves with its own interpreter)",
    "django": "--django (the agent serves with its own Django)",
    "profile": "--profile (the profilers read the server's processes on this host)",
    "memory_profile": "--memory-profile (the profilers read the server's processes here)",
    "micro": "--micro (the micro-benchmarks run on this host)",
    "memory_limit": "--memory-limit (the agent serves without pod limits)",
    "cpu_limit": "--cpu-limit (the agent serves without pod limits)",
    "worker_rule": "--worker-rule (the agent serves without pod limits)",
    "fit_memory": "--fit-memory (the agent serves without pod limits)",
}


def agent_placement(a: argparse.Namespace) -> Placement:
    """``--agent``: the options it cannot honour refused, the agent URL and token checked;
    the load generator gets ``--loadgen-cpus`` or every CPU here (the server's CPUs are the
    agent's, filled in once it answers)."""
    from runners.agent.client import client_token, parse_url

    for key, what in AGENT_REFUSES.items():
        if getattr(a, key):
            raise UsageError(f"--agent: {what} does not apply")
    try:
        parse_url(a.agent)
        client_token(Path(a.agent_token_file) if a.agent_token_file else None)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--agent: {exc}") from None
    loadgen = parse_cpus(a.loadgen_cpus) if a.loadgen_cpus else available_cpus()
    check_available(loadgen)
    return Placement(server=(), loadgen=loadgen)


def loadgen_processes(a: argparse.Namespace, placement: Placement) -> dict[str, Any]:
    """``--loadgen-processes``, ``--expect-workers`` and the master's address, checked."""
    expect = a.expect_workers or 0
    processes = len(placement.loadgen) if a.loadgen_processes is None else a.loadgen_processes
    if processes == 0 and expect == 0:
        raise UsageError(
            "--loadgen-processes: 0 processes here needs --expect-workers N from elsewhere"
        )
    if a.master_port is not None and a.master_port > 65535:
        raise UsageError(f"--master-port: {a.master_port} is not a port")
    return {
        "loadgen_processes": processes,
        "expect_workers": expect,
        "master_bind_host": a.master_bind_host or "127.0.0.1",
        "master_port": a.master_port,
    }


def default_request_timeout(slo_p99_ms: float, duration_s: float) -> float:
    """Ten times the latency target (at least 1 s), but at most half the window: a hung
    server ends as counted timeouts inside the window, never as requests dropped at its end."""
    return min(max(1.0, 10.0 * slo_p99_ms / 1000.0), max(0.5, duration_s / 2.0))


def from_args(
    a: argparse.Namespace,
    runners: Sequence[str],
    workloads: Sequence[str],
    users: Sequence[int],
) -> dict[str, Any]:
    """What ``--python``, ``--django``, ``--gc`` and ``--soak`` change in the bench options
    (``runners``, ``workloads``, ``users``: the matrix chosen so far). ``ValueError`` with a
    one-line message naming the option, raised before anything runs."""
    pythons: tuple[Interpreter, ...] = ()
    if a.python is not None:
        wanted = split_list(a.python, "python")
        try:
            pythons = find_interpreters(wanted)
        except (InterpreterNotFound, ValueError) as exc:
            raise ValueError(f"--python: {exc}") from None
    djangos: tuple[str, ...] = ()
    if a.django is not None:
        asked = split_list(a.django, "django")
        try:
            djangos = tuple(dict.fromkeys(parse_django(s) for s in asked))
        except ValueError as exc:
            raise ValueError(f"--django: {exc}") from None
        try:
            check_djangos(djangos, pythons or (current_interpreter(),))
        except DjangoUnavailable as exc:
            raise ValueError(str(exc)) from None
    gcs: tuple[GcMode, ...] = ()
    if a.gc is not None:
        try:
            gcs = parse_gcs(a.gc)
        except ValueError as exc:
            raise ValueError(f"--gc: {exc}") from None
    out: dict[str, Any] = {}
    if a.soak is not None:
        try:
            target = soak.parse_soak(a.soak)
        except ValueError as exc:
            raise ValueError(f"--soak: {exc}") from None
        runner = runners[0] if a.runners is not None else soak.DEFAULT_RUNNER
        if a.gc is None:
            gcs = GC_MODES if gc_capable(RUNNERS[runner]) else ()
        out.update(
            runners=(runner,),
            workloads=(
                workloads[0]
                if a.workloads is not None or a.project is not None
                else soak.DEFAULT_WORKLOAD,
            ),
            users=(users[0] if a.users is not None else soak.DEFAULT_USERS,),
            warmup_s=a.warmup if a.warmup is not None else 0.0,
            duration_s=target.cap_s(a.duration),
            soak=target,
        )
    try:
        check_gcs([RUNNERS[r] for r in out.get("runners", runners)], gcs)
    except ValueError as exc:
        raise ValueError(f"--gc {exc}") from None
    out.update(pythons=pythons, djangos=djangos, gcs=gcs)
    return out
