"""Serve one runner and drive it by hand from Locust's web UI: ``tox -e ui -- RUNNER``.

``python -m runners.cli.ui RUNNER [--port N] [--web-port N] [--web-host H] [--workload W]
[--processes N] [... -- LOCUST OPTIONS]``

1. prepares the database (migrate + seed, idempotent; ``--seed`` as in
   ``tox -e bench``, ``--no-prepare`` skips it);
2. starts the runner pinned to the server CPUs, and the upstream service on
   the load-generator CPUs when the workload needs it (always when no
   ``--workload`` is given: any workload can be picked in the UI);
3. starts Locust's web UI pinned to the load-generator CPUs, with the
   project's workloads (``loadtests/locustfile.py``) and the server-memory
   plugin (``loadtests/ui_memory.py``) pointed at the server's root PID;
4. prints the URLs and waits; Ctrl-C (or SIGTERM/SIGHUP) stops Locust and the
   server and checks that no process of either is left.

Workloads are Locust user classes, the same ones ``tox -e bench`` runs. With
no ``--workload`` Locust's class picker is on: pick them in the UI (the
picker's header checkbox clears the selection). ``--workload W`` starts
Locust with that user class only. ``--processes N`` runs Locust distributed
on this machine (a master and N workers; the memory tab is on the master);
anything after ``--`` is passed to Locust as is (``--tags``, ``--master``,
``--expect-workers``...). For load from several machines, give ``-- --master
--master-bind-host 0.0.0.0`` here and start workers elsewhere with ``python -m
locust -f loadtests/locustfile.py --worker --master-host THIS_HOST``; serve on
an address they can reach (``--host 0.0.0.0``) and put it in the UI's Host
field. The memory tab stays on the master, which must run on the server's
machine (it reads ``/proc``).

Both the server and the UI bind 127.0.0.1 unless told otherwise (``--host``
for the server, ``--web-host`` for Locust).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn, cast

import psutil

from loadtests.catalog import DEFAULT_MAX_POST_ID, DEFAULT_MAX_USER_ID, WORKLOADS
from runners import REPO_ROOT
from runners.cli.args import SEED_KEYS, Parser, UsageError, follow_log, parse_seed
from runners.sampling.memory import tree_pids
from runners.serving.cpus import Placement, format_cpus, placement_from
from runners.serving.registry import GC_MODES, RUNNERS, VARIANTS, GcMode, Variant, format_table
from runners.serving.server import (
    PrepareError,
    RunnerError,
    RunningServer,
    ServeConfig,
    http_get,
    prepare_database,
    server_env,
    start,
    stop,
)
from runners.serving.servers.launch import launch_command

DEFAULT_LOG_DIR = REPO_ROOT / ".data" / "logs"
DEFAULT_WEB_PORT = 8089
LOCUSTFILES = (REPO_ROOT / "loadtests" / "locustfile.py", REPO_ROOT / "loadtests" / "ui_memory.py")
UI_STARTUP_TIMEOUT_S = 60.0
LOCUST_GRACE_S = 10.0


def build_parser() -> Parser:
    p = Parser(
        prog="python -m runners.cli.ui",
        description="Serve one runner and open Locust's web UI on it, until Ctrl-C.",
        epilog="Options after `--` go to Locust unchanged, e.g. `-- --tags feed`.",
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
        "--middleware", choices=("minimal", "default"), default="minimal", help="middleware set"
    )
    p.add_argument("--server-cpus", help="CPUs of the server tree, e.g. 0 or 0-3")
    p.add_argument("--loadgen-cpus", help="CPUs of Locust and the upstream service")
    p.add_argument(
        "--seed",
        help=f"database seed sizes ({', '.join(SEED_KEYS)}), e.g. users=100,posts=2000",
    )
    p.add_argument(
        "--upstream-ms", type=int, default=50, help="upstream latency in ms (default 50)"
    )
    p.add_argument("--no-prepare", action="store_true", help="skip migrate + seed")
    p.add_argument(
        "--log-dir", type=Path, help="where the server and Locust logs go (default .data/logs)"
    )
    p.add_argument("--quiet", action="store_true", help="do not echo Locust's log")
    p.add_argument("--python", default=sys.executable, help="interpreter for server and Locust")
    return p


@dataclass(frozen=True)
class Options:
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

    @property
    def needs_upstream(self) -> bool:
        return self.workload is None or WORKLOADS[self.workload].needs_upstream


def split_locust_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and Locust's (everything after the first ``--``)."""
    args = list(argv)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1 :]
    return args, []


def parse_options(argv: Sequence[str]) -> Options | None:
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
    if a.upstream_ms < 0:
        raise UsageError(f"--upstream-ms: {a.upstream_ms} is negative")
    return Options(
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
        middleware=a.middleware,
        placement=placement,
        seed=parse_seed(a.seed),
        upstream_ms=a.upstream_ms,
        prepare=not a.no_prepare,
        log_dir=a.log_dir or DEFAULT_LOG_DIR,
        quiet=a.quiet,
        python=a.python,
        locust_args=tuple(locust_args),
    )


# --- Locust ------------------------------------------------------------------------------------


def locust_command(options: Options, server: RunningServer) -> list[str]:
    """``python -m locust`` with the web UI on the server (not yet pinned to CPUs)."""
    argv = [
        options.python,
        "-m",
        "locust",
        "-f",
        ",".join(str(path) for path in LOCUSTFILES),
        "--host",
        server.url,
        "--web-host",
        options.web_host,
        "--web-port",
        str(options.web_port),
        "--variant",
        server.variant,
        "--upstream-ms",
        str(options.upstream_ms),
        "--max-user-id",
        str(options.seed.get("users", DEFAULT_MAX_USER_ID)),
        "--max-post-id",
        str(options.seed.get("posts", DEFAULT_MAX_POST_ID)),
        "--server-pid",
        str(server.pid),
        "--server-name",
        server.runner.name,
        "--server-processes",
        str(server.expected_processes()),
    ]
    if options.processes is not None:
        argv += ["--processes", str(options.processes)]
    if options.workload is None:
        argv.append("--class-picker")
    else:
        argv.append(WORKLOADS[options.workload].user_class)
    return [*argv, *options.locust_args]


@dataclass
class LocustChild:
    """Locust running in its own session, its output in a log file."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    seen: set[int] = field(default_factory=set)
    terminated: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        """SIGTERM Locust's process group once (Locust then stops its users and quits)."""
        if not self.terminated and self.alive():
            self.track()
            _signal_group(self, signal.SIGTERM)
        self.terminated = True

    def track(self) -> None:
        """Remember every process of Locust's tree (the workers of ``--processes``)."""
        with contextlib.suppress(ProcessLookupError):
            self.seen.update(tree_pids(self.pid))


def start_locust(options: Options, server: RunningServer, log_path: Path) -> LocustChild:
    argv = locust_command(options, server)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    log.write(f"# locust: {subprocess.list2cmdline(argv)}\n".encode())
    log.flush()
    env = server_env({"PYTHONUNBUFFERED": "1"})
    try:
        popen = subprocess.Popen(
            launch_command(argv, cpus=options.placement.loadgen, parent=os.getpid()),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    return LocustChild(popen=popen, log_path=log_path, log=log, seen={popen.pid})


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "*", "0.0.0.0") else "::1" if host == "::" else host


def check_port_free(host: str, port: int, what: str) -> None:
    """``RunnerError`` if something already listens on ``host:port``."""
    bind = "" if host == "*" else host
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError as exc:
            raise RunnerError(f"{what} {host}:{port} is not available: {exc.strerror}") from None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_for_ui(
    child: LocustChild, host: str, port: int, timeout: float, with_log: bool = True
) -> None:
    """Until Locust's web UI answers ``GET /`` (``RunnerError`` if Locust exits or is slow).

    ``with_log``: end the error with the tail of Locust's log.
    """

    def failure(what: str) -> RunnerError:
        tail = f"\n--- end of {child.log_path} ---\n{_tail(child.log_path)}" if with_log else ""
        return RunnerError(what + tail)

    deadline = time.monotonic() + timeout
    while True:
        code = child.popen.poll()
        if code is not None:
            raise failure(f"Locust exited with code {code} before its web UI came up")
        with contextlib.suppress(OSError, ValueError):
            status, body = http_get(_connect_host(host), port, "/", timeout=2.0)
            if status == 200 and b"templateArgs" in body:
                return
        if time.monotonic() >= deadline:
            raise failure(f"Locust's web UI did not answer on {host}:{port} within {timeout:g}s")
        time.sleep(0.2)


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
    return alive


def _signal_group(child: LocustChild, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


def stop_locust(child: LocustChild, grace: float = LOCUST_GRACE_S) -> None:
    """SIGTERM Locust's process group (if not done yet), SIGKILL after ``grace``;
    ``RunnerError`` if any process of its tree is left."""
    try:
        child.terminate()
        left: set[int] = set()
        for sig, wait in ((None, grace), (signal.SIGKILL, 5.0)):
            if sig is not None:
                _signal_group(child, sig)
                for pid in left:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while True:
                child.popen.poll()
                left = _alive(child.seen)
                if not left or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            if not left:
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=1.0)
        if left:
            raise RunnerError(f"Locust processes left after SIGKILL: {sorted(left)}")
    finally:
        child.log.close()


# --- the session -------------------------------------------------------------------------------


def web_url(host: str, port: int) -> str:
    shown = _connect_host(host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def url_differs(host: str) -> bool:
    """True when the printed URL is not the address Locust listens on (all interfaces)."""
    return host in ("", "*", "0.0.0.0", "::")


def banner(options: Options, server: RunningServer, locust: LocustChild) -> str:
    runner = server.runner
    url = web_url(options.web_host, options.web_port)
    threads = f" x {server.threads} threads" if server.threads else ""
    master = "1 master + " if server.command.master else ""
    if options.workload is None:
        workload = "pick user classes in the UI (class picker)"
    else:
        workload = f"{options.workload} ({WORKLOADS[options.workload].user_class})"
    lines = [
        f"{runner.name} ({runner.family}, {runner.server} {runner.interface}) on {server.url}",
        f"  pid {server.pid}: {master}{server.workers} worker(s){threads}, gc {server.gc}, "
        f"views {server.base_url()}",
        f"  {options.placement.describe()}",
        f"  server log: {server.log_path}",
    ]
    if server.upstream_url:
        lines.append(f"  upstream:   {server.upstream_url}")
    processes = f", {options.processes} Locust worker processes" if options.processes else ""
    lines += [
        "",
        f"Locust web UI: {url}/"
        + (f"  (listening on {options.web_host or '*'})" if url_differs(options.web_host) else ""),
        f"  workload: {workload}{processes}",
        f"  server memory: the 'Server memory' tab while a test runs; live charts at {url}/memory/",
        f"  locust log: {locust.log_path} (pid {locust.pid})",
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def run(options: Options) -> int:
    """The whole session; the exit status."""
    log_dir = options.log_dir
    server_log = log_dir / f"ui-{options.runner}.log"
    locust_log = log_dir / f"ui-{options.runner}.locust.log"
    env = {"BENCH_MIDDLEWARE": options.middleware}
    config = ServeConfig(
        runner=RUNNERS[options.runner],
        log_path=server_log,
        host=options.host,
        port=options.port or None,
        workers=options.workers,
        threads=options.threads,
        variant=options.variant,
        gc=options.gc,
        middleware=options.middleware,
        cpus=options.placement.server,
        python=options.python,
        with_upstream=options.needs_upstream,
        upstream_cpus=options.placement.loadgen,
    )
    done = threading.Event()
    follower: threading.Thread | None = None
    server: RunningServer | None = None
    locust: LocustChild | None = None
    status = 0
    try:
        check_port_free(options.web_host, options.web_port, "--web-port")
        if options.prepare:
            print("preparing the database (migrate + seed)...", flush=True)
            prepare_database(env, python=options.python, **options.seed)
        cpus = format_cpus(options.placement.server)
        print(f"starting {options.runner} on CPUs {cpus}...", flush=True)
        server = start(config)
        print(f"starting Locust on CPUs {format_cpus(options.placement.loadgen)}...", flush=True)
        locust = start_locust(options, server, locust_log)
        if not options.quiet:
            follower = threading.Thread(target=follow_log, args=(locust_log, done), daemon=True)
            follower.start()
        wait_for_ui(locust, options.web_host, options.web_port, UI_STARTUP_TIMEOUT_S, options.quiet)
        print(banner(options, server, locust), flush=True)
        ticks = 0
        while server.alive() and locust.alive():
            time.sleep(0.5)
            ticks += 1
            if ticks % 4 == 0:
                locust.track()
        if not server.alive():
            print(f"\n{options.runner} exited on its own; see {server.log_path}", file=sys.stderr)
        else:
            print(f"\nLocust exited on its own; see {locust_log}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    except (RunnerError, PrepareError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        # A second Ctrl-C (or tox's SIGTERM) must not interrupt the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        status = max(status, shutdown(locust, server))
        done.set()
        if follower is not None:
            follower.join(timeout=2.0)
    return status


def shutdown(locust: LocustChild | None, server: RunningServer | None) -> int:
    """Stop Locust and the server (both at once), check nothing is left; the exit status."""
    errors: list[str] = []
    if locust is not None:
        locust.terminate()  # Locust and the server stop at the same time
    if server is not None:
        try:
            stop(server)
        except RunnerError as exc:
            errors.append(str(exc))
    if locust is not None:
        try:
            stop_locust(locust)
        except RunnerError as exc:
            errors.append(str(exc))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if server is not None or locust is not None:
        if errors:
            return 1
        print("Locust and the server stopped; no process left.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"python -m runners.cli.ui: error: {exc}", file=sys.stderr)
        return 2
    if options is None:
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
