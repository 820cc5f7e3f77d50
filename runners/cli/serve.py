"""Serve the app with one runner in the foreground: ``tox -e serve -- RUNNER``.

Prepares the database (migrate and seed, idempotent), starts the runner
pinned to the server CPUs, prints where it listens and follows its log until
Ctrl-C (or SIGTERM/SIGHUP, ``runners/cli/signals.py``), then stops it and
checks that no process is left.
``--list`` prints every runner with its family and settings.

``--project PATH`` serves a user's own Django project instead, as ``tox -e bench --
--project`` does (the options: ``runners.project.options``): from its own environment
(built once in ``.data/venvs/``, then reused), inspected there, its database copied or
cloned for as long as it is served (``runners.project.serving``: removed at the end, or
by the next command after a ``kill -9``), never migrated or seeded by the suite. The
built-in app's options (``--variant``, ``--middleware``, ``--with-upstream``,
``--no-prepare``) are refused with it.

A bad value (unknown runner, a worker or thread count the server cannot
honour, a port already taken, a missing interpreter, an unreachable
``$DATABASE_URL``) is one line on stderr and exit status 2, before anything
starts. Servers left running by an earlier run that was killed are stopped
first (``supervisor.stop_strays``, from the ledger ``runners/serving/ledger.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from runners import REPO_ROOT
from runners.cli.args import (
    Parser,
    UsageError,
    follow_log,
    format_size,
    parse_cores,
    parse_size,
)
from runners.cli.signals import ignore_stop_signals, stop_on_signals
from runners.project.errors import ProjectError
from runners.project.options import ProjectTarget, add_project_options, project_target
from runners.project.serving import ServedProject, serve_target
from runners.runtimes.venvs import server_python
from runners.serving import cgroups, preflight, supervisor
from runners.serving.cgroups import Limits
from runners.serving.commands import Settings, check
from runners.serving.cpus import Placement, available_cpus, format_cpus, placement_from
from runners.serving.net import check_port_free
from runners.serving.registry import RUNNERS, Runner, format_table, get_runner, worker_count
from runners.serving.server import (
    PrepareError,
    RunningServer,
    ServeConfig,
    prepare_database,
    start,
    stop,
)
from runners.serving.supervisor import RunnerError
from runners.vocabulary import GC_MODES, VARIANTS

DEFAULT_LOG_DIR = REPO_ROOT / ".data" / "logs"

BUILT_IN_ONLY = ("variant", "middleware", "with_upstream", "no_prepare")
"""The options of the built-in app: refused with ``--project``."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m runners.cli.serve",
        description="Serve the benchmark app with one runner until Ctrl-C.",
    )
    parser.add_argument("runner", nargs="?", help="runner name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the runners and exit")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")
    parser.add_argument("--workers", type=int, help="worker processes (default: the runner's rule)")
    parser.add_argument("--threads", type=int, help="threads per worker (threaded runners)")
    parser.add_argument(
        "--variant", choices=VARIANTS, help="views to serve (default: the runner's, e.g. async)"
    )
    parser.add_argument("--gc", choices=GC_MODES, help="gc mode (pre-fork runners)")
    parser.add_argument(
        "--middleware", choices=("minimal", "default"), help="middleware set (default minimal)"
    )
    parser.add_argument(
        "--server-cpus", help="CPUs of the server tree, e.g. 0 or 0-3 (default: first half)"
    )
    parser.add_argument(
        "--loadgen-cpus", help="CPUs left for the load generator and upstream (default: the rest)"
    )
    parser.add_argument(
        "--with-upstream",
        action="store_true",
        help="also run the upstream service (on the loadgen CPUs) for the upstream endpoint",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        metavar="3.12|PATH",
        help="interpreter for the server: a version (found on PATH or in pyenv) or a path, run "
        "from a virtual environment with the locked versions (default: this Python, as is)",
    )
    parser.add_argument(
        "--memory-limit", metavar="SIZE", help="a memory limit on the server's cgroup, e.g. 512MiB"
    )
    parser.add_argument(
        "--cpu-limit",
        metavar="CORES",
        help="a CFS CPU quota on the server's cgroup, e.g. 1.5 (the worker rule reads ceil(CORES))",
    )
    parser.add_argument("--log", type=Path, help="server log file (default .data/logs/RUNNER.log)")
    parser.add_argument("--no-prepare", action="store_true", help="skip migrate + seed")
    parser.add_argument("--quiet", action="store_true", help="do not echo the server log")
    add_project_options(
        parser.add_argument_group(
            "your own project",
            "Serve your Django project instead of the built-in app (see the README: "
            "Benchmark your own project).",
        )
    )
    return parser


def _banner(
    server: RunningServer, placement: Placement, served: ServedProject | None = None
) -> str:
    threads = f" x {server.threads} threads" if server.threads else ""
    runner = server.runner
    what = "" if served is None else f" {served.facts.layout.name}"
    lines = [
        f"{runner.name} ({runner.family}, {runner.server} {runner.interface}) "
        f"serving{what} on {server.url}",
    ]
    if served is None:
        lines.append(f"  views:   {server.base_url()}/json  (variant {server.variant})")
    else:
        lines += served.describe(runner.interface)
    lines += [
        f"  workers: {server.workers}{threads}, gc {server.gc}, pid {server.pid}, "
        f"{server.expected_processes()} processes",
        f"  cpus:    {placement.describe()}",
        f"  log:     {server.log_path}",
    ]
    if server.cgroup is not None:
        limits = server.cgroup.limits
        memory = format_size(limits.memory_bytes) if limits.memory_bytes else "no memory limit"
        cpu = f"{limits.cpu_cores:g} CPU" if limits.cpu_cores else "no CPU limit"
        lines.append(f"  cgroup:  {server.cgroup.memory} ({memory}, {cpu})")
    if server.upstream_url:
        lines.append(f"  upstream: {server.upstream_url}")
    lines.append("Ctrl-C to stop.")
    return "\n".join(lines)


Parsed = tuple[argparse.Namespace, Runner, Placement, ProjectTarget | None]


def parse(argv: Sequence[str] | None) -> Parsed | None:
    """The options, checked; None after ``--list``. ``UsageError`` for a bad value."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        placement = placement_from(args.server_cpus, args.loadgen_cpus)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.list:
        ncpus = len(placement.server)
        print(f"Runners (worker counts for {ncpus} server CPU(s): {placement.describe()})\n")
        print(format_table(len(placement.server)))
        return None
    if not args.runner:
        raise UsageError(f"a runner name is required; one of: {', '.join(RUNNERS)}")
    try:
        runner = get_runner(args.runner)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    target = project_target(args, BUILT_IN_ONLY)
    # A project's interpreter gets the project's environment (built when it is served).
    if target is None and args.python != sys.executable:
        try:
            args.python = server_python(args.python, say)
        except ValueError as exc:
            raise UsageError(f"--python {args.python}: {exc}") from None
    validate(args, runner, placement, project=target is not None)
    return args, runner, placement, target


def say(text: str) -> None:
    print(text, flush=True)


def validate(
    args: argparse.Namespace, runner: Runner, placement: Placement, project: bool = False
) -> None:
    """``UsageError`` for a value the server would fail on, before anything starts (a
    ``project``'s interpreter and database are its own, checked when it is served)."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0..65535 (0: a free port)")
    for value, what in ((args.workers, "workers"), (args.threads, "threads")):
        if value is not None and value < 1:
            raise UsageError(f"--{what} {value}: must be a whole number >= 1")
    args.limits = limits_of(args)
    workers = args.workers
    if workers is None:
        pinned = len(placement.server or available_cpus())
        workers = worker_count(runner.workers, args.limits.cpus or pinned)
    threads = args.threads if args.threads is not None else runner.threads
    settings = Settings(args.host, args.port or 1, workers, threads, gc=args.gc or runner.gc)
    try:
        check(runner, settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if project:
        return
    problem = preflight.interpreter_problem(args.python)
    if problem is not None:
        raise UsageError(
            f"--python {args.python}: {problem} "
            "(accepted: a Python 3 interpreter with the suite's packages installed)"
        )
    url = os.environ.get("DATABASE_URL")
    if url:
        if urlsplit(url).scheme not in {"postgres", "postgresql"}:
            problem = "not a postgres:// URL"
        else:
            problem = preflight.database_problem(url)
        if problem is not None:
            raise UsageError(
                f"$DATABASE_URL {preflight.redact(url)}: {problem} "
                "(accepted: unset or empty for SQLite, or a reachable postgres:// URL)"
            )


def limits_of(args: argparse.Namespace) -> Limits:
    """``--memory-limit`` and ``--cpu-limit``, checked (a cgroup must be possible here)."""
    memory = parse_size(args.memory_limit, "--memory-limit") if args.memory_limit else None
    cpu = parse_cores(args.cpu_limit) if args.cpu_limit else None
    limits = Limits(memory, cpu)
    if limits != cgroups.NO_LIMITS and not cgroups.support().available:
        raise UsageError(
            f"--memory-limit/--cpu-limit: no cgroup can be made here ({cgroups.support().reason})"
        )
    return limits


def check_port(args: argparse.Namespace, runner: Runner) -> None:
    """``UsageError`` naming the runner and the port if the port is taken."""
    if not args.port:
        return
    try:
        check_port_free(args.host, args.port, f"runner {runner.name}")
    except RunnerError as exc:
        raise UsageError(
            f"--port {args.port}: {exc} (something else listens there: "
            "stop it, or choose another port, or --port 0 for a free one)"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parsed = parse(argv)
        if parsed is None:
            return 0
        args, runner, placement, target = parsed
        # A server left by an earlier run that was killed may hold the port.
        stray = supervisor.strays_message()
        if stray is not None:
            print(stray, flush=True)
        check_port(args, runner)
    except UsageError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2
    with stop_on_signals(), supervisor.track():
        return run(args, runner, placement, target)


def server_config(
    args: argparse.Namespace,
    runner: Runner,
    placement: Placement,
    served: ServedProject | None = None,
) -> ServeConfig:
    """What to start: the built-in app, or ``served`` from its own environment."""
    config = ServeConfig(
        runner=runner,
        log_path=args.log or DEFAULT_LOG_DIR / f"{runner.name}.log",
        host=args.host,
        port=args.port or None,
        workers=args.workers,
        threads=args.threads,
        variant=args.variant,
        gc=args.gc,
        middleware=args.middleware or "minimal",
        cpus=placement.server,
        python=args.python,
        with_upstream=args.with_upstream,
        upstream_cpus=placement.loadgen,
        limits=args.limits,
    )
    if served is None:
        return config
    return dataclasses.replace(config, python=served.env.python, subject=served.subject)


def run(
    args: argparse.Namespace,
    runner: Runner,
    placement: Placement,
    target: ProjectTarget | None = None,
) -> int:
    """Prepare (a project: its environment and its data), serve until interrupted, stop;
    the exit status."""
    done = threading.Event()
    follower: threading.Thread | None = None
    server: RunningServer | None = None
    served: ServedProject | None = None
    log_path = server_config(args, runner, placement).log_path
    status = 0
    # Left after the server stopped: the project's work folder and database copy.
    with contextlib.ExitStack() as stack:
        try:
            if target is not None:
                served = serve_target(target, args.python, stack, say)
            elif not args.no_prepare:
                print("preparing the database (migrate + seed)...", flush=True)
                prepare_database({"BENCH_MIDDLEWARE": args.middleware or "minimal"}, args.python)
            config = server_config(args, runner, placement, served)
            print(f"starting {runner.name} on CPUs {format_cpus(placement.server)}...", flush=True)
            server = start(config)
            print(_banner(server, placement, served), flush=True)
            if not args.quiet:
                follower = threading.Thread(target=follow_log, args=(log_path, done), daemon=True)
                follower.start()
            while server.alive():
                time.sleep(0.5)
            print(f"\n{runner.name} exited on its own; see {log_path}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)
        except ProjectError as exc:
            print(f"serve: error: --project: {exc}", file=sys.stderr)
            status = 2
        except (RunnerError, PrepareError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
        finally:
            # A Ctrl-C during the shutdown must not leave processes behind.
            ignore_stop_signals()
            done.set()
            if follower is not None:
                follower.join(timeout=2.0)
            if server is not None:
                try:
                    stop(server)
                    print(f"{runner.name} stopped; no process left.", flush=True)
                except RunnerError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    status = 1
        return status


if __name__ == "__main__":
    sys.exit(main())
