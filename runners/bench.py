"""The benchmark driver: runners x workloads x concurrency levels -> results.json.

    tox -e bench -- [options]            python -m runners.bench [options]

One results folder per invocation (default ``reports/<UTC timestamp>/``):
``results.json`` (schema: ``runners/results.schema.json``), the HTML report
(``index.html``) and, under ``runs/``, every run's Locust HTML report, CSV
files, Locust log and server log, named ``<runner>-<workload>-u<users>-r<repeat>``.

How a run goes (one run = one runner x workload x users x repeat):

1. a fresh server is started for the run, pinned to the server CPUs, and
   stopped after it (no carry-over of memory, caches or connections from one
   run to the next; repeats are independent), which costs a few seconds of
   start-up per run;
2. Locust runs headless as a subprocess pinned to the load-generator CPUs,
   closed-loop at a fixed user count, spawning all users within a second;
3. the warm-up is served but not measured: ``loadtests/measure.py`` resets
   Locust's statistics once all users have spawned and the warm-up has
   passed, and tells the driver, which starts sampling the server's process
   tree (PSS/USS/RSS per process, CPU) right then; at the end of the window
   the plugin stops every user and the driver stops sampling;
4. the run's record (figures defined in ``runners/results.py``) is appended
   and results.json is rewritten, so an interrupted matrix keeps every
   finished run. A run whose server does not start or dies is recorded as
   ``failed`` with the error and the log's tail, and the matrix goes on.

The matrix is walked repeat-major (every cell once, then every cell again),
so slow drifts of a shared machine spread over the cells instead of hitting
one. The database is prepared once per invocation; the upstream service (for
``upstream`` and ``mixed``) runs once per invocation on the load-generator
CPUs.

Faults: a server whose root dies mid-run ends its run at once (``failed``,
"the server died during the run (killed by SIGKILL)", with the log's tail); a
worker that dies and is replaced marks the run ``worker-restarted`` (recovered);
a request with no answer within ``--request-timeout`` fails (``timeouts``).
Ctrl-C or SIGTERM stops Locust, the server and the upstream (later signals are
ignored until that is done), keeps every finished run, writes the report and
exits 130. Every process tree the driver starts is listed in
``.data/running/<driver pid>.json`` (``runners/orphans.py``); the next
invocation stops what a driver killed with ``kill -9`` left behind.

Exit status: 0 when every run succeeded, 1 when some run failed, 2 for a bad
option (one line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

from loadtests.catalog import (
    DEFAULT_MAX_POST_ID,
    DEFAULT_MAX_USER_ID,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_UPSTREAM_MS,
    WORKLOADS,
)
from runners import environment as env_capture
from runners import micro as micro_bench
from runners import orphans, preflight, runtimes, soak
from runners.cli import SEED_KEYS, Parser, UsageError, parse_seed, split_list
from runners.cpus import Placement, placement_from
from runners.interpreters import Interpreter, Runtime
from runners.locust_run import LocustError, LocustPlan, LocustProcess
from runners.memory import Sampler, TreeSample, sample_tree, summarize
from runners.process import (
    RunningServer,
    ServeConfig,
    log_tail,
    prepare_database,
    serve,
    upstream,
)
from runners.registry import (
    FAMILIES,
    RUNNERS,
    VARIANTS,
    GcMode,
    Runner,
    Variant,
    format_table,
    worker_count,
)
from runners.results import (
    Measurement,
    ResultsFile,
    empty_figures,
    notes_for,
    run_id,
    utc_now,
)
from runners.runtimes import RuntimeKey
from runners.soak import SoakTarget

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORTS_DIR = REPO_ROOT / "reports"
MIB = 2**20

# The default matrix: the main contrasts (pre-fork with and without the
# copy-on-write pattern, threads, three async servers) on a CPU-bound, a
# template, a database, an I/O-bound and a mixed workload. 30 runs, about
# 17 minutes on a 2-core machine.
DEFAULT_RUNNERS = (
    "gunicorn-sync",
    "gunicorn-sync-freeze",
    "gunicorn-gthread",
    "uvicorn",
    "gunicorn-asgi",
    "granian-asgi",
)
DEFAULT_WORKLOADS = ("json", "fortunes", "feed", "upstream", "mixed")
DEFAULT_USERS = (32,)
DEFAULT_WARMUP_S = 5.0
DEFAULT_DURATION_S = 20.0

# --quick: one runner of each family on a CPU-bound and an I/O-bound workload.
QUICK_RUNNERS = {"prefork": "gunicorn-sync", "threaded": "gunicorn-gthread", "async": "uvicorn"}
QUICK_WORKLOADS = ("json", "upstream")
QUICK_USERS = (16,)
QUICK_WARMUP_S = 3.0
QUICK_DURATION_S = 8.0

RUN_OVERHEAD_S = 6.0
"""Per-run time besides warm-up and window: server start and stop, Locust
start-up and spawning, the settle time before Locust quits."""
SETUP_S = 20.0
# `--micro`: pyperf --fast over the 18 micro-benchmarks, measured on a 2-core machine.
MICRO_ESTIMATE_S = 240.0
"""Per-invocation time: database preparation (about 17 s to seed a fresh clone), upstream start."""

MIDDLEWARES = ("minimal", "default")


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    runners: tuple[str, ...]
    workloads: tuple[str, ...]
    users: tuple[int, ...]
    duration_s: float
    warmup_s: float
    repeat: int
    workers: int | None
    threads: int | None
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
    # --python, --django, --gc, --soak (runners.runtimes, runners.soak); empty: the default.
    pythons: tuple[Interpreter, ...] = ()
    djangos: tuple[str, ...] = ()
    gcs: tuple[GcMode, ...] = ()
    soak: SoakTarget | None = None
    micro: bool = False

    @property
    def runs(self) -> int:
        return len(plan(self))

    def estimate_s(self) -> float:
        spawn = max(self.users) / (self.spawn_rate or max(self.users))
        per_run = self.warmup_s + self.duration_s + RUN_OVERHEAD_S + spawn
        return SETUP_S + self.runs * per_run + (MICRO_ESTIMATE_S if self.micro else 0.0)

    def locust_options(self) -> tuple[str, ...]:
        return (
            "--upstream-ms",
            str(self.upstream_ms),
            "--max-user-id",
            str(self.seed.get("users", DEFAULT_MAX_USER_ID)),
            "--max-post-id",
            str(self.seed.get("posts", DEFAULT_MAX_POST_ID)),
            *soak.locust_options(self.soak),
        )


def build_parser() -> Parser:
    p = Parser(
        prog="python -m runners.bench",
        description=(
            "Run the benchmark matrix (runners x workloads x users x repeats) and write "
            "results.json, Locust reports, server logs and an HTML report into one folder."
        ),
        epilog="Lists are comma separated. `--list` shows runners and workloads.",
    )
    p.add_argument("--runners", help=f"runners (default: {','.join(DEFAULT_RUNNERS)})")
    p.add_argument("--workloads", help=f"workloads (default: {','.join(DEFAULT_WORKLOADS)})")
    p.add_argument(
        "--users",
        help=f"concurrency levels, Locust users (default: {','.join(map(str, DEFAULT_USERS))})",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help=f"measured window in seconds (default {DEFAULT_DURATION_S:g})",
    )
    p.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help=f"warm-up in seconds, served but not measured (default {DEFAULT_WARMUP_S:g})",
    )
    p.add_argument("--repeat", type=int, metavar="K", help="runs per cell (default 1)")
    p.add_argument(
        "--workers", type=int, metavar="N", help="server workers (multi-process runners only)"
    )
    p.add_argument(
        "--threads", type=int, metavar="N", help="threads per worker (threaded runners only)"
    )
    p.add_argument("--server-cpus", metavar="CPUS", help="CPUs of the server, e.g. 0 or 0-3")
    p.add_argument("--loadgen-cpus", metavar="CPUS", help="CPUs of Locust and the upstream")
    p.add_argument(
        "--database",
        metavar="sqlite|URL",
        help="sqlite (default, or $DATABASE_URL when set) or a postgres:// URL",
    )
    p.add_argument(
        "--seed",
        metavar="KEY=N,...",
        help=f"database seed sizes ({', '.join(SEED_KEYS)}), e.g. users=100,posts=2000",
    )
    p.add_argument(
        "--upstream-ms", type=int, metavar="MS", help="upstream latency in ms (default 50)"
    )
    p.add_argument(
        "--variant", choices=VARIANTS, help="view variant for every runner (default: the runner's)"
    )
    p.add_argument(
        "--middleware", choices=MIDDLEWARES, help="Django middleware profile (default minimal)"
    )
    p.add_argument(
        "--spawn-rate", type=float, metavar="R", help="users started per second (default: all)"
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        metavar="S",
        help=(
            "a request unanswered for S seconds fails, so a hung server ends as failures "
            f"(default {DEFAULT_REQUEST_TIMEOUT_S:g})"
        ),
    )
    p.add_argument(
        "--python",
        metavar="3.11,3.12|PATH",
        help="run the servers on each interpreter (versions found on PATH and in pyenv, or "
        "paths), each in a virtual environment with the locked versions (default: this one)",
    )
    p.add_argument(
        "--django",
        metavar="5.2,6.1",
        help="run the servers with each Django release instead of the locked one",
    )
    p.add_argument(
        "--gc",
        metavar="default,freeze,off",
        help="gc modes for the runners whose pre-fork master preloads the app (others: default)",
    )
    p.add_argument(
        "--soak",
        metavar="N|120s",
        help="soak: one runner (default gunicorn-sync-preload) on mixed for N requests or a "
        "duration, per gc mode (default all) and interpreter; per-worker memory over time",
    )
    p.add_argument("--output", metavar="DIR", help="results folder (default reports/<timestamp>)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="one runner per family on json and upstream, short windows (< 3 minutes)",
    )
    p.add_argument(
        "--micro",
        action="store_true",
        help="after the matrix, also run the pyperf micro-benchmarks (tox -e micro, --fast) "
        "on the server CPUs into micro.json; the report shows them",
    )
    p.add_argument("--no-report", action="store_true", help="do not render the HTML report")
    p.add_argument("--list", action="store_true", help="list runners and workloads, then exit")
    return p


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
        placement = placement_from(a.server_cpus, a.loadgen_cpus)
    except ValueError as exc:
        raise UsageError(f"--server-cpus/--loadgen-cpus: {exc}") from None
    if a.list:
        return None, a
    for value, what, zero_ok in (
        (a.duration, "duration", False),
        (a.warmup, "warmup", True),
        (a.repeat, "repeat", False),
        (a.workers, "workers", False),
        (a.threads, "threads", False),
        (a.upstream_ms, "upstream-ms", True),
        (a.spawn_rate, "spawn-rate", False),
        (a.request_timeout, "request-timeout", False),
    ):
        positive(value, what, zero_ok=zero_ok)
    quick = bool(a.quick)
    options = Options(
        runners=names(a.runners, quick_runners() if quick else DEFAULT_RUNNERS, RUNNERS, "runners"),
        workloads=names(
            a.workloads, QUICK_WORKLOADS if quick else DEFAULT_WORKLOADS, WORKLOADS, "workloads"
        ),
        users=positive_ints(a.users, QUICK_USERS if quick else DEFAULT_USERS, "users"),
        duration_s=a.duration or (QUICK_DURATION_S if quick else DEFAULT_DURATION_S),
        warmup_s=a.warmup
        if a.warmup is not None
        else (QUICK_WARMUP_S if quick else DEFAULT_WARMUP_S),
        repeat=a.repeat or 1,
        workers=a.workers,
        threads=a.threads,
        placement=placement,
        database_url=parse_database(a.database),
        output=check_output(Path(a.output) if a.output else default_output()),
        seed=parse_seed(a.seed),
        upstream_ms=a.upstream_ms if a.upstream_ms is not None else DEFAULT_UPSTREAM_MS,
        variant=parse_variant(a.variant),
        middleware=a.middleware or "minimal",
        spawn_rate=a.spawn_rate,
        quick=quick,
        report=not a.no_report,
        request_timeout_s=a.request_timeout or DEFAULT_REQUEST_TIMEOUT_S,
        micro=bool(a.micro),
    )
    try:
        options = replace(
            options, **runtimes.from_args(a, options.runners, options.workloads, options.users)
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_database(options.database_url, "--database" if a.database else "$DATABASE_URL")
    return options, a


# --- the matrix ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One run of the matrix."""

    runner: Runner
    workload: str
    users: int
    repeat: int
    runtime: runtimes.RunVariant = runtimes.DEFAULT_VARIANT
    """Interpreter, Django and gc mode (None: the default); qualifiers when they vary."""

    @property
    def id(self) -> str:
        base = run_id(self.runner.name, self.workload, self.users, self.repeat)
        return runtimes.qualified(base, self.runtime.qualifiers)

    @property
    def stem(self) -> str:
        base = f"{self.runner.name}-{self.workload}-u{self.users}-r{self.repeat}"
        return runtimes.qualified(base, self.runtime.qualifiers, "-")

    @property
    def label(self) -> str:
        base = f"{self.runner.name} {self.workload} u={self.users} r{self.repeat}"
        return runtimes.qualified(base, self.runtime.qualifiers, " ")


def plan(options: Options) -> list[Cell]:
    return [
        Cell(RUNNERS[runner], workload, users, repeat, variant)
        for repeat in range(1, options.repeat + 1)
        for runner in options.runners
        for workload in options.workloads
        for users in options.users
        for variant in runtimes.variants(
            RUNNERS[runner], options.pythons, options.djangos, options.gcs
        )
    ]


def worker_override(runner: Runner, options: Options) -> int | None:
    """``--workers`` applies to runners that run several processes."""
    return options.workers if runner.workers != "1" else None


def thread_override(runner: Runner, options: Options) -> int | None:
    """``--threads`` applies to threaded runners."""
    return options.threads if runner.threads is not None else None


@dataclass
class Context:
    """What every run of one invocation shares."""

    options: Options
    out_dir: Path
    server_env: dict[str, str]
    upstream_url: str | None = None
    built_runtimes: dict[RuntimeKey, Runtime] = field(default_factory=dict)

    def runtime(self, cell: Cell) -> Runtime:
        """The interpreter and packages the cell's server runs on (built in ``execute``)."""
        key = runtimes.runtime_key(cell.runtime)
        if key not in self.built_runtimes:
            self.built_runtimes.update(
                runtimes.build_runtimes(self.options.pythons, self.options.djangos)
            )
        return self.built_runtimes[key]

    @property
    def runs_dir(self) -> Path:
        return self.out_dir / "runs"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()


def sample_interval(duration_s: float) -> float:
    """About ten samples over short windows, one a second over long ones."""
    return min(1.0, max(0.25, duration_s / 10))


class ServerDied(RuntimeError):
    """The server's root process ended during a run."""


def server_watch(server: RunningServer) -> Callable[[], None]:
    """A check for ``LocustProcess.wait_for``: raise ``ServerDied`` once the server is gone,
    so that a run whose server died ends at once instead of at Locust's deadline."""

    def check() -> None:
        status = server.exit_status()
        if status is not None:
            raise ServerDied(f"the server died during the run ({status})")

    return check


def worker_pids(server: RunningServer) -> set[int]:
    """The server's worker processes now (empty if it is gone)."""
    try:
        return {p.pid for p in sample_tree(server.pid).workers}
    except ProcessLookupError:
        return set()


@dataclass(frozen=True)
class Incidents:
    """What went wrong in a run that still produced figures: workers that died
    (and those the master started instead), requests that timed out."""

    gone: tuple[int, ...] = ()
    new: tuple[int, ...] = ()
    timeouts: int = 0

    @property
    def recovered(self) -> bool:
        return len(self.new) >= len(self.gone)

    def flags(self) -> list[str]:
        flags = []
        if self.gone:
            flags.append("worker-restarted" if self.recovered else "worker-lost")
        if self.timeouts:
            flags.append("timeouts")
        return flags

    def events(self) -> list[str]:
        events = []
        if self.gone:
            gone = ", ".join(map(str, self.gone))
            if self.new:
                new = ", ".join(map(str, self.new))
                state = "recovered" if self.recovered else "not every worker was replaced"
                events.append(f"worker(s) {gone} died; the master started {new} ({state})")
            else:
                events.append(f"worker(s) {gone} died and were not replaced")
        if self.timeouts:
            events.append(f"{self.timeouts} request(s) got no answer within the request timeout")
        return events


def worker_changes(
    before: set[int], samples: Sequence[TreeSample]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(workers gone, workers new) between the start of a run and the window's last sample."""
    if not before or not samples:
        return (), ()
    seen = set(before).union(*({p.pid for p in s.workers} for s in samples))
    last = {p.pid for p in samples[-1].workers}
    return tuple(sorted(seen - last)), tuple(sorted(last - before))


def timeout_failures(path: Path) -> int:
    """Requests that failed for want of an answer, from Locust's ``*_failures.csv``."""
    try:
        with path.open(newline="") as fh:
            return sum(
                int(row.get("Occurrences") or 0)
                for row in csv.DictReader(fh)
                if "timeout" in (row.get("Error") or "")
            )
    except (OSError, ValueError):
        return 0


def plan_locust(server: RunningServer, cell: Cell, ctx: Context) -> LocustPlan:
    """The Locust run of ``cell`` against ``server``, on the load-generator CPUs."""
    options = ctx.options
    return LocustPlan(
        host=server.url,
        workload=cell.workload,
        variant=server.variant,
        users=cell.users,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        out_prefix=ctx.runs_dir / cell.stem,
        spawn_rate=options.spawn_rate,
        cpus=options.placement.loadgen,
        options=options.locust_options(),
        request_timeout_s=options.request_timeout_s,
    )


def measure(server: RunningServer, cell: Cell, ctx: Context) -> tuple[Measurement, Incidents]:
    """Drive ``server`` with Locust and measure it over the window.

    Ends early with ``ServerDied`` when the server's root exits.
    """
    options = ctx.options
    placement = options.placement
    locust_plan = plan_locust(server, cell, ctx)
    check = server_watch(server)
    workers_before = worker_pids(server)
    with LocustProcess(locust_plan) as locust:
        locust.wait_for("start", check=check)
        sampler = Sampler(server.pid, interval=sample_interval(options.duration_s))
        sampler.start()
        try:
            locust.wait_for("end", check=check)
        finally:
            samples = sampler.stop()
        check()
        outcome = locust.finish()
    check()
    if sampler.error is not None:
        raise ServerDied(f"the server died during the run ({sampler.error})")
    window = outcome.window
    if window.requests == 0:
        raise RuntimeError(
            "no request completed in the measured window: the server answered nothing "
            f"(hung?) and no request reached the {options.request_timeout_s:g} s "
            "--request-timeout"
        )
    gone, new = worker_changes(workers_before, samples)
    incidents = Incidents(gone, new, timeout_failures(locust_plan.csv("failures")))
    stats = outcome.stats
    memory = summarize(samples, sampler_cpu_percent=sampler.cpu_percent_of_sampler)
    cpu_seconds = memory.get("cpu_seconds")
    measurement = Measurement(
        window_s=window.duration_s,
        requests=window.requests,
        failures=window.failures,
        latency=stats.latency,
        locust_rps=stats.locust_rps,
        memory=memory,
        cpu_seconds=float(cpu_seconds) if isinstance(cpu_seconds, int | float) else None,
        loadgen_cpu_seconds=window.loadgen_cpu_seconds,
        loadgen_cpus=max(1, min(len(placement.loadgen), window.loadgen_processes)),
        server_cpus=len(placement.server),
    )
    return measurement, incidents


def soak_measure(
    server: RunningServer, cell: Cell, ctx: Context
) -> tuple[Measurement, Incidents, dict[str, Any]]:
    """``--soak``: ``runners.soak.measure`` (memory sampled from before the first request)."""
    options = ctx.options
    assert options.soak is not None
    locust_plan = plan_locust(server, cell, ctx)
    measurement, series = soak.measure(
        server, locust_plan, options.soak, options.placement, check=server_watch(server)
    )
    incidents = Incidents(timeouts=timeout_failures(locust_plan.csv("failures")))
    return measurement, incidents, series


def base_record(cell: Cell, ctx: Context) -> dict[str, Any]:
    options = ctx.options
    runner = cell.runner
    return {
        "id": cell.id,
        "runner": runner.name,
        "family": runner.family,
        "server": runner.server,
        "interface": runner.interface,
        "variant": options.variant or runner.variant,
        # What the run asks for; the server's own count replaces it once it is up
        # (a run whose server never started still needs one: the schema says integer).
        "workers": worker_override(runner, options)
        or worker_count(runner.workers, len(options.placement.server)),
        "threads": None,
        "gc": cell.runtime.gc or runner.gc,
        "middleware": options.middleware,
        # The server's interpreter and the Django it imports (not the driver's).
        "python": ctx.runtime(cell).python_record(),
        "django": ctx.runtime(cell).django,
        "workload": cell.workload,
        "users": cell.users,
        "repeat": cell.repeat,
        "status": "ok",
        "error": None,
        "log_tail": None,
        "started_at": utc_now(),
        "warmup_s": options.warmup_s,
        "duration_s": options.duration_s,
        "server_cpus": list(options.placement.server),
        "loadgen_cpus": list(options.placement.loadgen),
        **empty_figures(),
        "flags": [],
        **({"soak": True} if options.soak is not None else {}),
    }


def artifacts(cell: Cell, ctx: Context) -> dict[str, Any]:
    prefix = ctx.runs_dir / cell.stem
    found: dict[str, Any] = {}
    html = prefix.with_name(prefix.name + ".html")
    if html.exists():
        found["locust_html"] = ctx.rel(html)
    csvs = sorted(ctx.runs_dir.glob(f"{cell.stem}_*.csv"))
    if csvs:
        found["locust_csv"] = [ctx.rel(p) for p in csvs]
    for key, suffix in (("server_log", ".server.log"), ("locust_log", ".locust.log")):
        path = prefix.with_name(prefix.name + suffix)
        if path.exists():
            found[key] = ctx.rel(path)
    return found


def run_cell(cell: Cell, ctx: Context) -> dict[str, Any]:
    """Serve, drive, measure one cell; a record with status ok or failed."""
    options = ctx.options
    record = base_record(cell, ctx)
    server_log = ctx.runs_dir / f"{cell.stem}.server.log"
    config = ServeConfig(
        runner=cell.runner,
        log_path=server_log,
        workers=worker_override(cell.runner, options),
        threads=thread_override(cell.runner, options),
        variant=options.variant,
        middleware=options.middleware,
        cpus=options.placement.server,
        env=ctx.server_env,
        python=ctx.runtime(cell).python,
        gc=cell.runtime.gc,
    )
    try:
        with serve(config) as server:
            record.update(
                workers=server.workers,
                threads=server.threads,
                variant=server.variant,
                gc=server.gc,
                server_command=list(server.command.argv),
                startup_s=round(server.startup_seconds, 3),
            )
            if options.soak is not None:
                measurement, incidents, record["soak_series"] = soak_measure(server, cell, ctx)
            else:
                measurement, incidents = measure(server, cell, ctx)
        record.update(measurement.as_dict())
        flags = measurement.flags() + incidents.flags()
        if options.placement.shared:
            flags.append("shared-cpus")
        record["flags"] = flags
        record["notes"] = notes_for(flags)
        if incidents.events():
            record["events"] = incidents.events()
    except Exception as exc:  # a failed cell is recorded, the matrix goes on
        message = str(exc).strip() or type(exc).__name__
        tails = [log_tail(server_log)]
        if isinstance(exc, LocustError):
            message, _, locust_tail = message.partition("\n")
            tails.append(f"--- Locust ---\n{locust_tail}")
        record.update(empty_figures())
        record.update(
            status="failed",
            error=message.splitlines()[0][:500],
            log_tail="\n".join(t for t in tails if t) or None,
            flags=[],
        )
    record["artifacts"] = artifacts(cell, ctx)
    return record


# --- progress -----------------------------------------------------------------------------------


def fmt_count(value: float | None) -> str:
    if value is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}"


def summary_line(record: Mapping[str, Any]) -> str:
    if record["status"] != "ok":
        return f"FAILED: {record['error']}"
    memory = record.get("memory") or {}
    pss = memory.get("pss_peak_bytes")
    p99 = record["latency_ms"].get("p99")
    parts = [
        f"{record['rps']:.0f} rps",
        f"{pss / MIB:.0f} MiB PSS" if pss else "- PSS",
        f"{fmt_count(record['rps_per_gib'])} rps/GiB",
        f"p99 {p99:g} ms" if p99 is not None else "p99 -",
        f"loadgen {record['loadgen_cpu_percent']:.0f}%"
        if record.get("loadgen_cpu_percent") is not None
        else "loadgen -",
    ]
    if record["failures"]:
        parts.append(f"{record['failures']} failed requests")
    line = ", ".join(parts)
    if record["flags"]:
        line += f" [{', '.join(record['flags'])}]"
    for event in record.get("events") or []:
        line += f"; {event}"
    return line


class ProgressView(Protocol):
    def starting(self, index: int, cell: Cell, elapsed: float, remaining: float) -> None: ...

    def finished(
        self, index: int, cell: Cell, record: Mapping[str, Any], elapsed: float, remaining: float
    ) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """One line per event: readable in a CI log."""

    def __init__(self, total: int, stream: TextIO = sys.stdout) -> None:
        self.total = total
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def starting(self, index: int, cell: Cell, elapsed: float, remaining: float) -> None:
        self._print(
            f"[{index}/{self.total}] {cell.label}: running "
            f"(elapsed {fmt_duration(elapsed)}, ~{fmt_duration(remaining)} left)"
        )

    def finished(
        self, index: int, cell: Cell, record: Mapping[str, Any], elapsed: float, remaining: float
    ) -> None:
        self._print(f"[{index}/{self.total}] {cell.label}: {summary_line(record)}")

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        pass


class RichProgress:
    """A live bar for the whole matrix on a terminal, with a line per finished run."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.total = total
        self.last = ""
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[times]}"),
            transient=False,
        )
        self.task = self.progress.add_task("matrix", total=total, times="")
        self.progress.start()

    def starting(self, index: int, cell: Cell, elapsed: float, remaining: float) -> None:
        last = f" | last: {self.last}" if self.last else ""
        self.progress.update(
            self.task,
            description=f"[{index}/{self.total}] {cell.label}",
            times=f"{fmt_duration(elapsed)} elapsed, ~{fmt_duration(remaining)} left{last}",
        )

    def finished(
        self, index: int, cell: Cell, record: Mapping[str, Any], elapsed: float, remaining: float
    ) -> None:
        line = summary_line(record)
        if record["status"] == "ok":
            self.last = f"{record['rps']:.0f} rps, {fmt_count(record['rps_per_gib'])} rps/GiB"
        self.progress.console.print(f"[{index}/{self.total}] {cell.label}: {line}", markup=False)
        self.progress.update(self.task, advance=1)

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False)

    def close(self) -> None:
        self.progress.stop()


def make_progress(total: int) -> ProgressView:
    if sys.stdout.isatty() and os.environ.get("CI") is None:
        with contextlib.suppress(ImportError):
            return RichProgress(total)
    return PlainProgress(total)


# --- reporting ----------------------------------------------------------------------------------


def results_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of the runs, for the end of the log."""
    header = (
        "runner",
        "workload",
        "users",
        "rps",
        "p99 ms",
        "PSS MiB",
        "rps/GiB",
        "loadgen",
        "flags",
    )
    rows = [header]
    for run in runs:
        if run["status"] != "ok":
            rows.append(
                (
                    runtimes.run_label(run),
                    run["workload"],
                    str(run["users"]),
                    "FAILED",
                    "",
                    "",
                    "",
                    "",
                    "",
                )
            )
            continue
        pss = (run.get("memory") or {}).get("pss_peak_bytes")
        p99 = run["latency_ms"].get("p99")
        lg = run.get("loadgen_cpu_percent")
        rows.append(
            (
                runtimes.run_label(run),
                run["workload"],
                str(run["users"]),
                f"{run['rps']:.0f}",
                "-" if p99 is None else f"{p99:g}",
                "-" if not pss else f"{pss / MIB:.1f}",
                "-" if run["rps_per_gib"] is None else f"{run['rps_per_gib']:.0f}",
                "-" if lg is None else f"{lg:.0f}%",
                ",".join(run["flags"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def flag_notes(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One explanation per flag that some run carries, naming the runs."""
    flagged: dict[str, list[str]] = {}
    for run in runs:
        for flag in run.get("flags") or []:
            flagged.setdefault(flag, []).append(str(run["id"]))
    return [
        f"{note} ({', '.join(flagged[flag])})" for flag in flagged for note in notes_for([flag])
    ]


def render_report(out_dir: Path, say: Callable[[str], None]) -> None:
    """Render the HTML report; a failure is a warning, never a lost result."""
    try:
        from runners.report.render import render_index, render_run
    except ImportError as exc:
        say(f"warning: no HTML report (runners.report is not available: {exc})")
        return
    try:
        path = render_run(out_dir)
        say(f"HTML report: {path}")
        if out_dir.resolve().parent == REPORTS_DIR.resolve():
            render_index(REPORTS_DIR)
    except Exception as exc:  # the results are safe; the report is a view
        say(f"warning: the HTML report failed: {type(exc).__name__}: {exc}")


# --- the invocation -----------------------------------------------------------------------------


def matrix_block(options: Options) -> dict[str, Any]:
    return {
        "runners": list(options.runners),
        "workloads": list(options.workloads),
        "users": list(options.users),
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "repeat": options.repeat,
        "quick": options.quick,
        "workers": options.workers,
        "threads": options.threads,
        "variant": options.variant,
        "middleware": options.middleware,
        "spawn_rate": options.spawn_rate,
        "upstream_ms": options.upstream_ms,
        "request_timeout_s": options.request_timeout_s,
        "seed": options.seed or None,
        "pythons": [p.as_dict() for p in options.pythons],
        "djangos": list(options.djangos),
        "gcs": list(options.gcs),
        "soak": None if options.soak is None else options.soak.as_dict(),
        "order": "repeat-major",
        "server_lifecycle": "a fresh server per run",
        "locust": "closed loop, wait_time constant(0), one process, headless subprocess",
    }


def describe_plan(options: Options) -> str:
    spawn = max(options.users) / (options.spawn_rate or max(options.users))
    per_run = options.warmup_s + options.duration_s + RUN_OVERHEAD_S + spawn
    text = (
        f"Plan: {options.runs} runs = {len(options.runners)} runners x "
        f"{len(options.workloads)} workloads x {len(options.users)} user levels x "
        f"{options.repeat} repeats; each {options.warmup_s:g} s warm-up + "
        f"{options.duration_s:g} s measured + ~{RUN_OVERHEAD_S + spawn:.0f} s start/stop.\n"
        f"Estimated time: ~{fmt_duration(options.estimate_s())} "
        f"({options.runs} x ~{per_run:.0f} s + ~{SETUP_S:.0f} s setup"
        f"{f' + ~{MICRO_ESTIMATE_S:.0f} s micro-benchmarks' if options.micro else ''}). "
        f"{options.placement.describe()}."
    )
    line = runtimes.describe(options.pythons, options.djangos, options.gcs, options.soak)
    return f"{text}\n{line}" if line else text


def list_text(placement: Placement) -> str:
    lines = [
        f"Runners (workers on {len(placement.server)} server CPUs):",
        format_table(len(placement.server)),
        "",
        "Workloads (Locust user class, loadtests/locustfile.py):",
    ]
    width = max(len(w) for w in WORKLOADS)
    lines += [
        f"  {w.name.ljust(width)}  {w.user_class:<18} {w.description}" for w in WORKLOADS.values()
    ]
    lines += [
        "",
        f"Default: --runners {','.join(DEFAULT_RUNNERS)} --workloads {','.join(DEFAULT_WORKLOADS)} "
        f"--users {','.join(map(str, DEFAULT_USERS))} --warmup {DEFAULT_WARMUP_S:g} "
        f"--duration {DEFAULT_DURATION_S:g}",
        f"--quick:  --runners {','.join(quick_runners())} --workloads {','.join(QUICK_WORKLOADS)} "
        f"--users {','.join(map(str, QUICK_USERS))} --warmup {QUICK_WARMUP_S:g} "
        f"--duration {QUICK_DURATION_S:g}",
    ]
    return "\n".join(lines)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM (a CI timeout, tox) unwind the matrix as ``KeyboardInterrupt``.

    Only the first one does: later ones are ignored, so that a second Ctrl-C or
    tox's SIGTERM cannot cut short the clean-up (stopping Locust, the server and
    the upstream, writing results.json and the report). After an interrupt they
    stay ignored until the driver exits.
    """
    interrupted = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        interrupted = True
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        if not interrupted:
            for sig, old in previous.items():
                signal.signal(sig, old)


def server_environment(options: Options) -> dict[str, str]:
    # An empty DATABASE_URL selects SQLite even when the caller's environment has one.
    return {"DATABASE_URL": options.database_url or ""}


@dataclass
class Clock:
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def remaining_s(options: Options, done: int, elapsed_runs: float) -> float:
    left = options.runs - done
    if done:
        return left * elapsed_runs / done
    return options.estimate_s() - SETUP_S


def report_reaped(ledger: orphans.Ledger) -> None:
    """Last resort at the end of the matrix: stop what a cut-short stop left running."""
    for line in ledger.reap():
        print(f"warning: stopped a leftover process: {line}", file=sys.stderr, flush=True)


def run_micro(ctx: Context, say: Callable[[str], None]) -> str | None:
    """The pyperf micro-benchmarks (``runners.micro --fast``) pinned to the server CPUs.

    Writes ``micro.json`` and ``micro.log`` into the results folder and returns
    the path relative to it, or None (with a warning) when they failed.
    """
    out = ctx.out_dir / "micro.json"
    log = ctx.out_dir / "micro.log"
    cpus = ",".join(str(cpu) for cpu in ctx.options.placement.server)
    # The database was prepared for the matrix (with its --seed sizes): keep it.
    argv = micro_bench.command(out, ["--fast", f"--affinity={cpus}", "--skip-prepare"])
    say(f"Micro-benchmarks (pyperf --fast on CPU {cpus}, ~{MICRO_ESTIMATE_S / 60:.0f} min)...")
    with log.open("w") as fh:
        status = subprocess.run(
            argv,
            env={**os.environ, **ctx.server_env},
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            check=False,
        ).returncode
    if status != 0 or not out.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        say(f"warning: the micro-benchmarks failed (exit {status}); see {log}\n{tail}")
        return None
    return ctx.rel(out)


def execute(options: Options, command: str) -> int:
    """Run the matrix; the exit status."""
    out_dir = options.output
    stray = orphans.sweep_message()
    if stray is not None:
        print(stray, flush=True)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    print(describe_plan(options), flush=True)
    print(f"Results: {out_dir}", flush=True)
    clock = Clock()
    # The servers' interpreters: virtual environments built (or reused) before any run.
    built = runtimes.build_runtimes(
        options.pythons, options.djangos, say=lambda text: print(text, flush=True)
    )
    results = ResultsFile(
        out_dir / "results.json",
        command=command,
        environment=env_capture.capture(
            placement=options.placement.as_dict(),
            database_url=options.database_url,
            redis_url=os.environ.get("REDIS_URL"),
            seed=options.seed,
        ),
        matrix=matrix_block(options),
    )
    results.doc["runtimes"] = [runtime.as_dict() for runtime in built.values()]
    results.save()
    ctx = Context(
        options=options,
        out_dir=out_dir,
        server_env=server_environment(options),
        built_runtimes=built,
    )
    cells = plan(options)
    progress: ProgressView | None = None
    interrupted = False
    try:
        with contextlib.ExitStack() as stack:
            # Entered first, left last: after the upstream and every server were stopped,
            # the ledger stops whatever a cut-short stop left (and says so).
            ledger = stack.enter_context(orphans.track())
            stack.callback(report_reaped, ledger)
            print(
                f"Preparing the database ({env_capture.database_label(options.database_url)})...",
                flush=True,
            )
            # Once per interpreter: the app runs there (idempotent after the first).
            for python in dict.fromkeys(runtime.python for runtime in built.values()):
                prepare_database(ctx.server_env, python, 600.0, **options.seed)
            if any(WORKLOADS[w].needs_upstream for w in options.workloads):
                ctx.upstream_url = stack.enter_context(
                    upstream(cpus=options.placement.loadgen, log_path=out_dir / "upstream.log")
                )
                ctx.server_env["BENCH_UPSTREAM_URL"] = ctx.upstream_url
            progress = make_progress(len(cells))
            runs_started = time.monotonic()
            for index, cell in enumerate(cells, start=1):
                spent = time.monotonic() - runs_started
                progress.starting(
                    index, cell, clock.elapsed, remaining_s(options, index - 1, spent)
                )
                record = run_cell(cell, ctx)
                results.add_run(record)
                spent = time.monotonic() - runs_started
                progress.finished(
                    index, cell, record, clock.elapsed, remaining_s(options, index, spent)
                )
            if options.micro:
                results.doc["micro"] = run_micro(ctx, progress.message)
                results.save()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.close()
        results.finish(interrupted=interrupted)
    runs = results.runs
    print("\n" + results_table(runs) if runs else "No run finished.", flush=True)
    for note in flag_notes(runs):
        print(f"note: {note}", flush=True)
    for error in results.doc.get("schema_errors", []):
        print(f"warning: results.json does not match its schema: {error}", file=sys.stderr)
    if options.report:
        render_report(out_dir, lambda text: print(text, flush=True))
    failed = sum(1 for r in runs if r["status"] != "ok")
    print(
        f"{'Interrupted' if interrupted else 'Done'}: {len(runs)} runs "
        f"({failed} failed) in {fmt_duration(clock.elapsed)}; "
        f"results in {out_dir / 'results.json'}",
        flush=True,
    )
    if interrupted:
        return 130
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        options, namespace = parse_options(args)
    except UsageError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    if options is None:
        print(list_text(placement_from(namespace.server_cpus, namespace.loadgen_cpus)))
        return 0
    command = shlex.join(["python", "-m", "runners.bench", *args])
    try:
        with stop_on_signals():
            return execute(options, command)
    except KeyboardInterrupt:
        # Before the matrix started or after it ended: runs are on disk already.
        print("Interrupted.", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        # Setup failures (database, upstream): the finished runs are on disk already.
        print(f"bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
