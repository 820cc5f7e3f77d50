"""The bench command line's options and their help (``parse_options`` checks them)."""

from __future__ import annotations

import argparse

from runners.bench.defaults import DEFAULT_RUNNERS, DEFAULT_USERS, DEFAULT_WORKLOADS, TIMINGS
from runners.bench.project_options import add_traffic_options
from runners.cli.args import SEED_KEYS, Parser
from runners.project.options import add_project_options
from runners.results.criteria import DEFAULT_SLO_P99_MS, FIT_HOLD_S
from runners.serving.registry import SWEEP_RULE
from runners.vocabulary import ARRIVALS, DEFAULT_ARRIVAL, LOADS, MIDDLEWARES, VARIANTS


def build_parser() -> Parser:
    """The parser, its options in titled groups (one function each)."""
    p = Parser(
        prog="python -m runners.bench",
        description=(
            "Run the benchmark matrix (runners x workloads x users x repeats) and write "
            "results.json, Locust reports, server logs and an HTML report into one folder."
        ),
        epilog="Lists are comma separated. `--list` shows runners and workloads.",
    )
    _matrix_options(
        p.add_argument_group("the matrix", "What is run: runners x workloads x settings x repeats.")
    )
    _load_options(
        p.add_argument_group("load and measurement", "How load is offered and what a run measures.")
    )
    _placement_options(
        p.add_argument_group("placement and load generators", "Where the server and Locust run.")
    )
    _app_options(
        p.add_argument_group("the app under test", "The built-in app's settings and data.")
    )
    _runtimes_options(
        p.add_argument_group("runtimes", "Interpreters, Django releases, gc modes and soaks.")
    )
    _pod_options(
        p.add_argument_group(
            "pods", "Each server as a container platform runs it: a cgroup with limits."
        )
    )
    _profiles_options(
        p.add_argument_group(
            "profiles", "What the memory is and where the CPU goes (profiled runs are not ranked)."
        )
    )
    _project_options(
        p.add_argument_group(
            "your own project",
            "Serve your Django project instead of the built-in app, driven by its own traffic "
            "(each traffic file a workload named after it; see the README: Benchmark your own "
            "project).",
        )
    )
    _output_options(p.add_argument_group("output", "Where the results go."))
    return p


def _matrix_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--runners", help=f"runners (default: {','.join(DEFAULT_RUNNERS)})")
    g.add_argument("--workloads", help=f"workloads (default: {','.join(DEFAULT_WORKLOADS)})")
    g.add_argument("--repeat", type=int, metavar="K", help="runs per cell (default 1)")
    g.add_argument(
        "--workers",
        metavar="N,...",
        help="server workers (multi-process runners only; default: the runner's rule, 2n+1 "
        "or n); several, e.g. 1,2,4: a run (and capacity search) per count",
    )
    g.add_argument(
        "--threads",
        metavar="N,...",
        help="threads per worker (threaded runners only); several: a run per count",
    )
    g.add_argument(
        "--sweep",
        action="store_true",
        help=f"a worker sweep for the capacity planner (tox -e plan), per runner on the n "
        f"server CPUs: {SWEEP_RULE.replace('%', '%%')}",
    )
    g.add_argument(
        "--quick",
        action="store_true",
        help="one runner per family on json and upstream, short probes and windows (< 3 minutes)",
    )
    g.add_argument("--list", action="store_true", help="list runners and workloads, then exit")


def _load_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--load",
        choices=LOADS,
        help="open: find each server's capacity, the highest rate it sustains within "
        "--slo-p99, with an open-loop schedule (default); closed: a fixed number of "
        "--users sending back to back",
    )
    g.add_argument(
        "--slo-p99",
        type=float,
        metavar="MS",
        help=f"the latency target of the capacity search: p99 in ms (default "
        f"{DEFAULT_SLO_P99_MS:g})",
    )
    g.add_argument(
        "--arrival",
        choices=ARRIVALS,
        help=f"open loop: requests spaced evenly or as a Poisson process (default "
        f"{DEFAULT_ARRIVAL})",
    )
    g.add_argument(
        "--users",
        help="--load closed: concurrency levels, Locust users "
        f"(default: {','.join(map(str, DEFAULT_USERS))})",
    )
    g.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="the measured window in seconds: the capacity's confirmation window (default "
        f"{TIMINGS[('open', False)].duration_s:g}), or the closed loop's "
        f"({TIMINGS[('closed', False)].duration_s:g})",
    )
    g.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="warm-up in seconds, served but not measured (default "
        f"{TIMINGS[('open', False)].warmup_s:g} open, {TIMINGS[('closed', False)].warmup_s:g} "
        "closed)",
    )
    g.add_argument(
        "--spawn-rate", type=float, metavar="R", help="users started per second (default: all)"
    )
    g.add_argument(
        "--request-timeout",
        type=float,
        metavar="S",
        help=(
            "a request unanswered for S seconds fails, so a hung server ends as counted "
            "timeouts (default: 10 x --slo-p99, at least 1 s, at most half the window)"
        ),
    )
    g.add_argument(
        "--calibrate",
        action="store_true",
        help="first measure this host's load-generator ceiling (requests/s one Locust process "
        "sends at most, ~15 s); every run then shows its load as a share of it",
    )


def _placement_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--server-cpus", metavar="CPUS", help="CPUs of the server, e.g. 0 or 0-3")
    g.add_argument("--loadgen-cpus", metavar="CPUS", help="CPUs of Locust and the upstream")
    g.add_argument(
        "--loadgen-processes",
        type=int,
        metavar="K",
        help="Locust processes sending load (default: one per load-generator CPU); more than "
        "one runs Locust's distributed mode, a master and K workers pinned to those CPUs in turn",
    )
    g.add_argument(
        "--expect-workers",
        type=int,
        metavar="N",
        help="Locust workers on other machines the master waits for (besides its own "
        "--loadgen-processes, which may be 0); see the README",
    )
    g.add_argument(
        "--master-bind-host",
        metavar="HOST",
        help="where the Locust master listens for its workers (default 127.0.0.1; the "
        "address of this machine for workers from elsewhere)",
    )
    g.add_argument(
        "--master-port",
        type=int,
        metavar="PORT",
        help="the Locust master's port for its workers (default: a free one)",
    )
    g.add_argument(
        "--agent",
        metavar="http://HOST:PORT",
        help="serve the runners on another host through its agent (tox -e agent there); "
        "--server-cpus are then the agent's, and Locust may use every CPU here",
    )
    g.add_argument(
        "--agent-token-file",
        metavar="PATH",
        help="the agent's token (default: $BENCH_AGENT_TOKEN)",
    )


def _app_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--database",
        metavar="sqlite|URL",
        help="sqlite (default, or $DATABASE_URL when set) or a postgres:// URL",
    )
    g.add_argument(
        "--seed",
        metavar="KEY=N,...",
        help=f"database seed sizes ({', '.join(SEED_KEYS)}), e.g. users=100,posts=2000",
    )
    g.add_argument(
        "--upstream-ms", type=int, metavar="MS", help="upstream latency in ms (default 50)"
    )
    g.add_argument(
        "--variant", choices=VARIANTS, help="view variant for every runner (default: the runner's)"
    )
    g.add_argument(
        "--middleware", choices=MIDDLEWARES, help="Django middleware profile (default minimal)"
    )


def _runtimes_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--python",
        metavar="3.11,3.12|PATH",
        help="run the servers on each interpreter (versions found on PATH and in pyenv, or "
        "paths), each in a virtual environment with the locked versions (default: this one)",
    )
    g.add_argument(
        "--django",
        metavar="5.2,6.1",
        help="run the servers with each Django release instead of the locked one",
    )
    g.add_argument(
        "--gc",
        metavar="default,freeze,off",
        help="gc modes for the runners whose pre-fork master preloads the app (others: default)",
    )
    g.add_argument(
        "--soak",
        metavar="N|120s",
        help="soak: one runner (default gunicorn-sync-preload) on mixed for N requests or a "
        "duration, per gc mode (default all) and interpreter; per-worker memory over time",
    )


def _pod_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--memory-limit",
        metavar="SIZE,...",
        help="a memory limit on each server's cgroup, e.g. 512MiB (none: no limit); the "
        "kernel OOM-kills at it as in a pod; several, e.g. none,256MiB: a run each",
    )
    g.add_argument(
        "--cpu-limit",
        metavar="CORES,...",
        help="a CFS CPU quota on each server's cgroup, e.g. 1.5 or 500m (none: no quota); "
        "without --workers the worker rule reads ceil(CORES); several: a run each",
    )
    g.add_argument(
        "--worker-rule",
        metavar="limit,host",
        help="what a runner's worker rule (2n+1, n) reads without --workers: the limit's "
        "CPUs (limit, default) or the host's cores as os.cpu_count() does in a container "
        "(host); both: a run each, side by side",
    )
    g.add_argument(
        "--fit-memory",
        metavar="SIZE",
        help="per runner, find the most workers (x threads) whose working set stays under "
        "SIZE at their capacity rate through a soak of --soak's length (default "
        f"{FIT_HOLD_S:g}s), and that pod's capacity (a bounded search, see the README)",
    )


def _profiles_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--profile",
        action="store_true",
        help="record a py-spy flame graph of the server's processes over each measured window "
        "(py-spy on the load-generator CPUs); the runs are flagged profiled, not ranked (py-spy "
        "cost json 6-47 %% of its requests/s in runners.cli.profilecheck)",
    )
    g.add_argument(
        "--memory-profile",
        action="store_true",
        help="trace allocations (tracemalloc) in every worker; at the end of each measured "
        "window record the top allocation sites and object counts (and, for preload "
        "runners, what the workers inherited at the fork); the runs are flagged profiled, "
        "not ranked (tracing cost json 67-84 %% of its requests/s in "
        "runners.cli.profilecheck)",
    )
    g.add_argument(
        "--micro",
        action="store_true",
        help="after the matrix, also run the pyperf micro-benchmarks (tox -e micro, --fast) "
        "on the server CPUs into micro.json; the report shows them",
    )


def _output_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--output", metavar="DIR", help="results folder (default reports/<timestamp>)")
    g.add_argument("--no-report", action="store_true", help="do not render the HTML report")


def _project_options(g: argparse._ArgumentGroup) -> None:
    add_project_options(g)
    add_traffic_options(g)
    g.add_argument(
        "--allow-errors",
        action="store_true",
        help="measure even when the pre-check found errors or runners disagreeing "
        "(the cells are flagged)",
    )
