"""The options of ``python -m runners.cli.ui`` (``tox -e ui``): parsed and checked
before anything starts (``UsageError``: one line, exit status 2). Everything
after the first ``--`` goes to Locust unchanged.

``--project PATH`` and its options are ``tox -e bench``'s (``runners.project.options``,
and the traffic's ``runners.bench.project_options``), with one traffic source: the UI
drives the project with it. The built-in app's options (``--workload``, ``--variant``,
``--seed``, ``--upstream-ms``, ``--middleware``, ``--no-prepare``) are refused with it."""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from loadtests.catalog import WORKLOADS
from loadtests.traffic import Traffic
from runners import REPO_ROOT
from runners.bench.project_options import TRAFFIC_OPTIONS, add_traffic_options, project_traffic
from runners.cli.args import SEED_KEYS, Parser, UsageError, parse_seed
from runners.project.options import ProjectTarget, add_project_options, project_target
from runners.serving.cpus import Placement, placement_from
from runners.serving.registry import RUNNERS, format_table
from runners.vocabulary import GC_MODES, VARIANTS, GcMode, Variant

DEFAULT_LOG_DIR = REPO_ROOT / ".data" / "logs"
DEFAULT_WEB_PORT = 8089

BUILT_IN_ONLY = ("workload", "variant", "seed", "upstream_ms", "middleware", "no_prepare")
"""The options of the built-in app: refused with ``--project``."""


def build_parser() -> Parser:
    p = Parser(
        prog="python -m runners.cli.ui",
        description="Serve one runner and open Locust's web UI on it, until Ctrl-C.",
        epilog="UiOptions after `--` go to Locust unchanged, e.g. `-- --tags feed`.",
    )
    p.add_argument("runner", nargs="?", help="runner name (see --list)")
    p.add_argument("--list", action="store_true", help="list runners and workloads and exit")
    p.add_argument("--host", default="127.0.0.1", help="server bind address (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8000, help="server port (default 8000; 0: a free one)"
    )
    p.add_argument(
        "--web-host", default="127.0.0.1", help="Locust web UI bind address (default 127.0.0.1)"
    )
    p.add_argument(
        "--web-port",
        type=int,
        default=DEFAULT_WEB_PORT,
        help=f"Locust web UI port (default {DEFAULT_WEB_PORT})",
    )
    p.add_argument(
        "--workload",
        help="start Locust with this workload's user class only "
        "(default: choose user classes in the UI)",
    )
    p.add_argument(
        "--processes",
        type=int,
        help="Locust worker processes on this machine (Locust's --processes; -1: one per CPU)",
    )
    p.add_argument("--workers", type=int, help="server worker processes (default: runner's rule)")
    p.add_argument("--threads", type=int, help="threads per worker (threaded runners)")
    p.add_argument("--variant", choices=VARIANTS, help="view variant (default: the runner's)")
    p.add_argument("--gc", choices=GC_MODES, help="gc mode (pre-fork runners)")
    p.add_argument(
        "--middleware", choices=("minimal", "default"), help="middleware set (default minimal)"
    )
    p.add_argument("--server-cpus", help="CPUs of the server tree, e.g. 0 or 0-3")
    p.add_argument("--loadgen-cpus", help="CPUs of Locust and the upstream service")
    p.add_argument(
        "--seed",
        help=f"database seed sizes ({', '.join(SEED_KEYS)}), e.g. users=100,posts=2000",
    )
    p.add_argument("--upstream-ms", type=int, help="upstream latency in ms (default 50)")
    p.add_argument("--no-prepare", action="store_true", help="skip migrate + seed")
    p.add_argument(
        "--log-dir", type=Path, help="where the server and Locust logs go (default .data/logs)"
    )
    p.add_argument("--quiet", action="store_true", help="do not echo Locust's log")
    p.add_argument("--python", default=sys.executable, help="interpreter for server and Locust")
    project = p.add_argument_group(
        "your own project",
        "Serve your Django project instead of the built-in app and drive it with its traffic, "
        "one source (see the README: Benchmark your own project).",
    )
    add_project_options(project)
    add_traffic_options(project)
    return p


@dataclass(frozen=True)
class UiOptions:
    runner: str
    workload: str | None
    host: str
    port: int
    web_host: str
    web_port: int
    processes: int | None
    workers: int | None
    threads: int | None
    variant: Variant | None
    gc: GcMode | None
    middleware: str
    placement: Placement
    seed: dict[str, int]
    upstream_ms: int
    prepare: bool
    log_dir: Path
    quiet: bool
    python: str
    locust_args: tuple[str, ...]
    project: ProjectTarget | None = None
    """``--project``: the user's project, served instead of the built-in app."""
    traffic: Traffic | None = None
    """``--project``'s traffic: its one source, read."""
    traffic_path: Path | None = None
    """The file ``traffic`` was read from."""

    @property
    def needs_upstream(self) -> bool:
        if self.project is not None:
            return False
        return self.workload is None or WORKLOADS[self.workload].needs_upstream


def split_locust_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and Locust's (everything after the first ``--``)."""
    args = list(argv)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1 :]
    return args, []


def parse_options(argv: Sequence[str]) -> UiOptions | None:
    """The options, or None after ``--list``; ``UsageError`` for anything wrong."""
    ours, locust_args = split_locust_args(argv)
    a = build_parser().parse_args(ours)
    try:
        placement = placement_from(a.server_cpus, a.loadgen_cpus)
    except ValueError as exc:
        raise UsageError(f"--server-cpus/--loadgen-cpus: {exc}") from None
    if a.list:
        print(f"Runners ({placement.describe()}):\n")
        print(format_table(len(placement.server)))
        print("\nWorkloads (Locust user classes):\n")
        for name, workload in WORKLOADS.items():
            print(f"  {name:<15} {workload.user_class:<18} {workload.description}")
        return None
    if not a.runner:
        raise UsageError(f"a runner name is required; one of: {', '.join(RUNNERS)}")
    if a.runner not in RUNNERS:
        raise UsageError(f"unknown runner {a.runner!r}; known: {', '.join(RUNNERS)}")
    project = project_target(a, BUILT_IN_ONLY, TRAFFIC_OPTIONS)
    traffic, traffic_path = (None, None) if project is None else one_source(a)
    if a.workload is not None and a.workload not in WORKLOADS:
        raise UsageError(f"unknown workload {a.workload!r}; known: {', '.join(WORKLOADS)}")
    for value, what in ((a.port, "--port"), (a.web_port, "--web-port")):
        if not 0 <= value <= 65535:
            raise UsageError(f"{what}: {value} is not a port number")
    if a.web_port == 0:
        raise UsageError("--web-port: give Locust's web UI a port (0 is not supported)")
    if a.processes is not None and (a.processes == 0 or a.processes < -1):
        raise UsageError(f"--processes: {a.processes}: expected a count >= 1, or -1")
    for value, what in ((a.workers, "--workers"), (a.threads, "--threads")):
        if value is not None and value < 1:
            raise UsageError(f"{what}: {value}: expected a count >= 1")
    upstream_ms = 50 if a.upstream_ms is None else a.upstream_ms
    if upstream_ms < 0:
        raise UsageError(f"--upstream-ms: {upstream_ms} is negative")
    return UiOptions(
        runner=a.runner,
        workload=a.workload,
        host=a.host,
        port=a.port,
        web_host=a.web_host,
        web_port=a.web_port,
        processes=a.processes,
        workers=a.workers,
        threads=a.threads,
        variant=cast(Variant | None, a.variant),
        gc=cast(GcMode | None, a.gc),
        middleware=a.middleware or "minimal",
        placement=placement,
        seed=parse_seed(a.seed),
        upstream_ms=upstream_ms,
        prepare=not a.no_prepare,
        log_dir=a.log_dir or DEFAULT_LOG_DIR,
        quiet=a.quiet,
        python=a.python,
        locust_args=tuple(locust_args),
        project=project,
        traffic=traffic,
        traffic_path=traffic_path,
    )


def one_source(a: Namespace) -> tuple[Traffic, Path]:
    """The project's traffic in the UI: one source, read and checked."""
    traffic, files = project_traffic(a)
    if len(traffic) > 1:
        raise UsageError(
            "--project: the UI drives one traffic source: --urls, --locustfile or --access-log"
        )
    return traffic[0], files[0]
