"""Serve the app with one runner in the foreground: ``tox -e serve -- RUNNER``.

Prepares the database (migrate and seed, idempotent), starts the runner
pinned to the server CPUs, prints where it listens and follows its log until
Ctrl-C (or SIGTERM/SIGHUP), then stops it and checks that no process is left.
``--list`` prints every runner with its family and settings.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from runners.cpus import Placement, format_cpus, placement_from
from runners.process import (
    REPO_ROOT,
    PrepareError,
    RunnerError,
    RunningServer,
    ServeConfig,
    prepare_database,
    start,
    stop,
)
from runners.registry import GC_MODES, RUNNERS, VARIANTS, format_table, get_runner

DEFAULT_LOG_DIR = REPO_ROOT / ".data" / "logs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runners.serve",
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
        "--middleware", choices=("minimal", "default"), default="minimal", help="middleware set"
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
    parser.add_argument("--python", default=sys.executable, help="interpreter for the server")
    parser.add_argument("--log", type=Path, help="server log file (default .data/logs/RUNNER.log)")
    parser.add_argument("--no-prepare", action="store_true", help="skip migrate + seed")
    parser.add_argument("--quiet", action="store_true", help="do not echo the server log")
    return parser


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """First Ctrl-C/SIGTERM/SIGHUP: stop. Later ones are ignored so that the
    shutdown (which checks that no process is left) runs to its end."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _follow(path: Path, done: threading.Event) -> None:
    """Echo what the server writes to its log until ``done`` is set."""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif done.is_set():
                return
            else:
                time.sleep(0.2)


def _banner(server: RunningServer, placement: Placement) -> str:
    threads = f" x {server.threads} threads" if server.threads else ""
    lines = [
        f"{server.runner.name} ({server.runner.family}, {server.runner.server} "
        f"{server.runner.interface}) serving on {server.url}",
        f"  views:   {server.base_url()}/json  (variant {server.variant})",
        f"  workers: {server.workers}{threads}, gc {server.gc}, pid {server.pid}, "
        f"{server.expected_processes()} processes",
        f"  cpus:    {placement.describe()}",
        f"  log:     {server.log_path}",
    ]
    if server.upstream_url:
        lines.append(f"  upstream: {server.upstream_url}")
    lines.append("Ctrl-C to stop.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        placement = placement_from(args.server_cpus, args.loadgen_cpus)
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        ncpus = len(placement.server)
        print(f"Runners (worker counts for {ncpus} server CPU(s): {placement.describe()})\n")
        print(format_table(len(placement.server)))
        return 0
    if not args.runner:
        parser.error(f"a runner name is required; one of: {', '.join(RUNNERS)}")
    try:
        runner = get_runner(args.runner)
    except KeyError as exc:
        parser.error(str(exc.args[0]))

    for sig in _STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    log_path = args.log or DEFAULT_LOG_DIR / f"{runner.name}.log"
    config = ServeConfig(
        runner=runner,
        log_path=log_path,
        host=args.host,
        port=args.port or None,
        workers=args.workers,
        threads=args.threads,
        variant=args.variant,
        gc=args.gc,
        middleware=args.middleware,
        cpus=placement.server,
        python=args.python,
        with_upstream=args.with_upstream,
        upstream_cpus=placement.loadgen,
    )
    done = threading.Event()
    follower: threading.Thread | None = None
    server: RunningServer | None = None
    status = 0
    try:
        if not args.no_prepare:
            print("preparing the database (migrate + seed)...", flush=True)
            prepare_database({"BENCH_MIDDLEWARE": args.middleware}, python=args.python)
        print(f"starting {runner.name} on CPUs {format_cpus(placement.server)}...", flush=True)
        server = start(config)
        print(_banner(server, placement), flush=True)
        if not args.quiet:
            follower = threading.Thread(target=_follow, args=(log_path, done), daemon=True)
            follower.start()
        while server.alive():
            time.sleep(0.5)
        print(f"\n{runner.name} exited on its own; see {log_path}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    except (RunnerError, PrepareError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        # A second Ctrl-C during the shutdown must not leave processes behind.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
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
