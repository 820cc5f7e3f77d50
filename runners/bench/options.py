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
    DEFAULT_MAX_POST_ID,
    DEFAULT_MAX_USER_ID,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_UPSTREAM_MS,
    WORKLOADS,
)
from loadtests.pacing import ARRIVALS, Arrival
from runners import REPO_ROOT
from runners.bench import capacity, soak
from runners.bench.soak import SoakTarget
from runners.cli.args import SEED_KEYS, Parser, UsageError, parse_seed, split_list
from runners.results.record import Load
from runners.runtimes import axes
from runners.runtimes.axes import check_gcs, gc_capable, parse_gcs
from runners.runtimes.interpreters import (
    Interpreter,
    InterpreterNotFound,
    current_interpreter,
    find_interpreters,
)
from runners.runtimes.releases import DjangoUnavailable, check_djangos, parse_django
from runners.serving import preflight
from runners.serving.cpus import Placement, placement_from
from runners.serving.registry import (
    FAMILIES,
    GC_MODES,
    RUNNERS,
    VARIANTS,
    GcMode,
    Variant,
)

REPORTS_DIR = REPO_ROOT / "reports"

# The default matrix: the main contrasts (pre-fork with and without the
# copy-on-write pattern, threads, three async servers) on a CPU-bound, a
# template, a database, an I/O-bound and a mixed workload. 30 capacity
# searches, about 19 minutes on a 2-core machine.
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
"""``--load closed``: the users of the closed loop."""


LOADS: tuple[Load, ...] = ("open", "closed")


DEFAULT_SLO_P99_MS = capacity.DEFAULT_SLO_P99_MS


DEFAULT_ARRIVAL: Arrival = "poisson"


@dataclass(frozen=True)
class Timing:
    """How long each part of a run lasts, per load mode, with and without ``--quick``."""

    warmup_s: float
    """Served, not measured: before the first probe (the saturation probe, or the closed
    loop's window)."""
    duration_s: float
    """The measured window: the capacity's confirmation window, or the closed loop's."""
    probe_s: float = 0.0
    """Each search probe's window (longer at low rates, see ``runners.bench.measure``)."""
    max_probes: int = 0
    """Open-loop probes after the saturation probe."""


TIMINGS: dict[tuple[Load, bool], Timing] = {
    ("open", False): Timing(warmup_s=3.0, duration_s=8.0, probe_s=1.5, max_probes=6),
    ("open", True): Timing(warmup_s=2.0, duration_s=4.0, probe_s=1.0, max_probes=4),
    ("closed", False): Timing(warmup_s=5.0, duration_s=20.0),
    ("closed", True): Timing(warmup_s=3.0, duration_s=8.0),
}
DEFAULT_WARMUP_S = TIMINGS[("closed", False)].warmup_s
DEFAULT_DURATION_S = TIMINGS[("closed", False)].duration_s

PROBE_OVERHEAD_S = 1.2
"""Per probe, besides its window: the pause that lets the previous probe's requests
end, the probe's own warm-up, and the wait for its last requests."""


# --quick: one runner of each family on a CPU-bound and an I/O-bound workload.
QUICK_RUNNERS = {"prefork": "gunicorn-sync", "threaded": "gunicorn-gthread", "async": "uvicorn"}


QUICK_WORKLOADS = ("json", "upstream")


QUICK_USERS = (16,)


RUN_OVERHEAD_S = 6.0
"""Per-run time besides warm-up and window: server start and stop, Locust
start-up and spawning, the settle time before Locust quits."""


SETUP_S = 20.0


# `--micro`: pyperf --fast over the 18 micro-benchmarks, measured on a 2-core machine.
MICRO_ESTIMATE_S = 240.0
"""Per-invocation time: database preparation (about 17 s to seed a fresh clone), upstream start."""


MIDDLEWARES = ("minimal", "default")


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
    # --python, --django, --gc, --soak (runners.runtimes, runners.bench.soak); empty: the default.
    pythons: tuple[Interpreter, ...] = ()
    djangos: tuple[str, ...] = ()
    gcs: tuple[GcMode, ...] = ()
    soak: SoakTarget | None = None
    micro: bool = False
    load: Load = "open"
    slo_p99_ms: float = DEFAULT_SLO_P99_MS
    arrival: Arrival = DEFAULT_ARRIVAL

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
    def runs(self) -> int:
        """How many runs the matrix makes (``len(matrix.plan(options))``)."""
        per_repeat = sum(
            len(axes.runtime_specs(RUNNERS[name], self.pythons, self.djangos, self.gcs))
            for name in self.runners
        )
        return self.repeat * per_repeat * len(self.workloads) * len(self.users)

    def run_estimate_s(self) -> float:
        """One run: server start and stop, Locust, the warm-up, probes and the window."""
        if self.load == "open":
            probes = (1 + self.max_probes) * (self.probe_s + PROBE_OVERHEAD_S)
            return self.warmup_s + probes + self.duration_s + RUN_OVERHEAD_S
        spawn = max(self.users) / (self.spawn_rate or max(self.users))
        return self.warmup_s + self.duration_s + RUN_OVERHEAD_S + spawn

    def estimate_s(self) -> float:
        micro = MICRO_ESTIMATE_S if self.micro else 0.0
        return SETUP_S + self.runs * self.run_estimate_s() + micro

    def locust_options(self) -> tuple[str, ...]:
        return (
            "--upstream-ms",
            str(self.upstream_ms),
            "--max-user-id",
            str(self.seed.get("users", DEFAULT_MAX_USER_ID)),
            "--max-post-id",
            str(self.seed.get("posts", DEFAULT_MAX_POST_ID)),
        )


def build_parser() -> Parser:
    p = Parser(
        prog="python -m runners.bench.driver",
        description=(
            "Run the benchmark matrix (runners x workloads x users x repeats) and write "
            "results.json, Locust reports, server logs and an HTML report into one folder."
        ),
        epilog="Lists are comma separated. `--list` shows runners and workloads.",
    )
    p.add_argument("--runners", help=f"runners (default: {','.join(DEFAULT_RUNNERS)})")
    p.add_argument("--workloads", help=f"workloads (default: {','.join(DEFAULT_WORKLOADS)})")
    p.add_argument(
        "--load",
        choices=LOADS,
        help="open: find each server's capacity, the highest rate it sustains within "
        "--slo-p99, with an open-loop schedule (default); closed: a fixed number of "
        "--users sending back to back",
    )
    p.add_argument(
        "--slo-p99",
        type=float,
        metavar="MS",
        help=f"the latency target of the capacity search: p99 in ms (default "
        f"{DEFAULT_SLO_P99_MS:g})",
    )
    p.add_argument(
        "--arrival",
        choices=ARRIVALS,
        help=f"open loop: requests spaced evenly or as a Poisson process (default "
        f"{DEFAULT_ARRIVAL})",
    )
    p.add_argument(
        "--users",
        help="--load closed: concurrency levels, Locust users "
        f"(default: {','.join(map(str, DEFAULT_USERS))})",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="the measured window in seconds: the capacity's confirmation window (default "
        f"{TIMINGS[('open', False)].duration_s:g}), or the closed loop's "
        f"({TIMINGS[('closed', False)].duration_s:g})",
    )
    p.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="warm-up in seconds, served but not measured (default "
        f"{TIMINGS[('open', False)].warmup_s:g} open, {TIMINGS[('closed', False)].warmup_s:g} "
        "closed)",
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
            "a request unanswered for S seconds fails, so a hung server ends as counted "
            "timeouts (default: 10 x --slo-p99, at least 1 s, at most half the window)"
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
        help="one runner per family on json and upstream, short probes and windows (< 3 minutes)",
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
        (a.slo_p99, "slo-p99", False),
    ):
        positive(value, what, zero_ok=zero_ok)
    quick = bool(a.quick)
    load: Load = "closed" if a.load == "closed" or a.soak is not None else "open"
    if load == "open" and a.users is not None:
        raise UsageError(
            "--users: a user count belongs to a closed loop (--load closed --users N); the "
            "default open loop finds each server's capacity whatever the user count"
        )
    timing = TIMINGS[(load, quick)]
    slo_p99_ms = a.slo_p99 or DEFAULT_SLO_P99_MS
    duration_s = a.duration or timing.duration_s
    options = Options(
        runners=names(a.runners, quick_runners() if quick else DEFAULT_RUNNERS, RUNNERS, "runners"),
        workloads=names(
            a.workloads, QUICK_WORKLOADS if quick else DEFAULT_WORKLOADS, WORKLOADS, "workloads"
        ),
        users=positive_ints(a.users, QUICK_USERS if quick else DEFAULT_USERS, "users")
        if load == "closed"
        else (0,),
        duration_s=duration_s,
        warmup_s=a.warmup if a.warmup is not None else timing.warmup_s,
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
        request_timeout_s=a.request_timeout or default_request_timeout(slo_p99_ms, duration_s),
        micro=bool(a.micro),
        load=load,
        slo_p99_ms=slo_p99_ms,
        arrival="constant" if a.arrival == "constant" else DEFAULT_ARRIVAL,
    )
    try:
        options = replace(
            options, **from_args(a, options.runners, options.workloads, options.users)
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_database(options.database_url, "--database" if a.database else "$DATABASE_URL")
    return options, a


def default_request_timeout(slo_p99_ms: float, duration_s: float) -> float:
    """Ten times the latency target (at least 1 s), but at most half the window: a hung
    server ends as counted timeouts inside the window, never as requests dropped at its end."""
    return min(max(1.0, 10.0 * slo_p99_ms / 1000.0), max(0.5, duration_s / 2.0))


def _split(text: str, what: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(","))
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"--{what}: malformed list {text!r} (expected e.g. a,b)")
    return tuple(dict.fromkeys(items))


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
        try:
            pythons = find_interpreters(_split(a.python, "python"))
        except (InterpreterNotFound, ValueError) as exc:
            raise ValueError(f"--python: {exc}".replace("--python: --python", "--python")) from None
    djangos: tuple[str, ...] = ()
    if a.django is not None:
        try:
            djangos = tuple(dict.fromkeys(parse_django(s) for s in _split(a.django, "django")))
        except ValueError as exc:
            raise ValueError(f"--django: {exc}".replace("--django: --django", "--django")) from None
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
            workloads=(workloads[0] if a.workloads is not None else soak.DEFAULT_WORKLOAD,),
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
