"""Lifecycle of a server (and of the upstream service it may need).

``start`` resolves a runner's rules to concrete settings, launches the server
through ``runners/serving/servers/launch.py`` (CPU affinity for the whole tree,
``PR_SET_PDEATHSIG`` so the root gets SIGTERM if the driver dies) in a new
session and process group, with stdout and stderr in a log file kept with
the results, then waits for ``GET /health`` and for every worker to exist.
``stop`` sends SIGTERM to the process group, SIGKILL after a grace period,
and checks that no process of the server is left. Failures raise
``RunnerError``, whose message names the runner and ends with the log's tail.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from runners import REPO_ROOT
from runners.sampling.memory import sample_tree, tree_pids
from runners.serving import ledger as orphans
from runners.serving.commands import Command, Settings, command
from runners.serving.cpus import available_cpus
from runners.serving.registry import GcMode, Runner, Variant, worker_count
from runners.serving.servers.launch import launch_command

# Inherited variables that would silently change a server's settings.
_SCRUBBED_ENV_PREFIXES = ("GUNICORN_CMD_ARGS", "GRANIAN_", "UWSGI_", "WEB_CONCURRENCY")


class RunnerError(RuntimeError):
    """A server failed to start, died, or left processes behind."""


class PrepareError(RuntimeError):
    """``python -m apps.manage prepare`` failed."""


@dataclass(frozen=True)
class ServeConfig:
    """Everything needed to serve the app with one runner.

    ``None`` means: a free port; the runner's worker rule applied to the
    server's CPUs (``cpus``, or all available CPUs when not pinned); the
    runner's thread count, view variant and gc mode. ``with_upstream`` starts
    the upstream service with the server (pinned to ``upstream_cpus``) and
    points ``BENCH_UPSTREAM_URL`` at it.
    """

    runner: Runner
    log_path: Path
    host: str = "127.0.0.1"
    port: int | None = None
    workers: int | None = None
    threads: int | None = None
    variant: Variant | None = None
    gc: GcMode | None = None
    middleware: str = "minimal"
    cpus: tuple[int, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    python: str = sys.executable
    startup_timeout: float = 60.0
    grace: float = 10.0
    with_upstream: bool = False
    upstream_cpus: tuple[int, ...] | None = None
    app: str | None = None  # import target replacing the Django app (tests, probes)
    # PR_SET_PDEATHSIG: the root gets SIGTERM when the thread that called
    # start() exits (so call it from a long-lived thread, or turn this off).
    die_with_parent: bool = True


@dataclass
class _Child:
    """A process we launched in its own session, with its log file.

    ``seen`` maps every PID of its tree ever observed to its start time, so
    that a PID the kernel has since reused is never taken for ours.
    """

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    seen: dict[int, float] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class RunningServer:
    """A server that answered ``/health`` with all its workers up."""

    config: ServeConfig
    url: str
    port: int
    pid: int
    workers: int
    threads: int | None
    variant: Variant
    gc: GcMode
    command: Command
    upstream_url: str | None = None
    startup_seconds: float = 0.0
    _child: _Child | None = field(default=None, repr=False)
    _upstream: _Child | None = field(default=None, repr=False)

    @property
    def runner(self) -> Runner:
        return self.config.runner

    @property
    def log_path(self) -> Path:
        return self.config.log_path

    def base_url(self) -> str:
        """Where the served view variant lives: ``url + "/sync"`` or ``"/async"``."""
        return f"{self.url}/{self.variant}"

    def alive(self) -> bool:
        return self._child is not None and self._child.popen.poll() is None

    def exit_status(self) -> str | None:
        """How the root process ended (``killed by SIGKILL``, ``exit status 1``), or None."""
        code = None if self._child is None else self._child.popen.poll()
        if code is None:
            return None
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def expected_processes(self) -> int:
        """Server processes when fully up: workers, plus the master if it has one."""
        return self.workers + (1 if self.command.master else 0)

    def settings(self) -> dict[str, object]:
        """The concrete settings of this run, for the results."""
        runner = self.config.runner
        return {
            "runner": runner.name,
            "family": runner.family,
            "server": runner.server,
            "interface": runner.interface,
            "variant": self.variant,
            "workers": self.workers,
            "threads": self.threads,
            "gc": self.gc,
            "middleware": self.config.middleware,
            "server_cpus": None if self.config.cpus is None else list(self.config.cpus),
            "command": list(self.command.argv),
        }


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _error(name: str, what: str, log_path: Path) -> RunnerError:
    tail = log_tail(log_path) or "(empty)"
    return RunnerError(f"runner {name}: {what}\n--- end of {log_path} ---\n{tail}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(name: str, host: str, port: int) -> None:
    """``RunnerError`` naming the runner and the address if ``host:port`` cannot be bound.

    (A server that finds its port taken retries for seconds, or serves nothing
    while its /health check reaches whoever holds the port.)
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the servers do: a port left in TIME_WAIT by an earlier run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RunnerError(
                f"runner {name}: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None


def _connect_host(host: str) -> str:
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url(host: str, port: int) -> str:
    h = _connect_host(host)
    return f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}"


def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` (plain http.client: no proxy settings apply)."""
    conn = http.client.HTTPConnection(_connect_host(host), port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the app's processes: ours, minus server-setting
    variables, plus the repository on ``PYTHONPATH`` and ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_ENV_PREFIXES) and k != "BENCH_GC"
    }
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["DJANGO_SETTINGS_MODULE"] = "apps.project.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cpus: Sequence[int] | None,
    die_with_parent: bool = True,
) -> _Child:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    log.write(f"# {name}: {subprocess.list2cmdline(argv)}\n".encode())
    log.flush()
    try:
        popen = subprocess.Popen(
            launch_command(argv, cpus=cpus, parent=os.getpid() if die_with_parent else None),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=dict(env),
            start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    child = _Child(name=name, popen=popen, log_path=log_path, log=log)
    _remember(child, [popen.pid])
    orphans.started(name, popen.pid, argv)
    return child


def _created(pid: int) -> float | None:
    """Start time of a live, non-zombie ``pid`` (None otherwise)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None


def _remember(child: _Child, pids: Iterable[int]) -> None:
    for pid in pids:
        created = _created(pid)
        if created is not None:
            child.seen.setdefault(pid, created)


def _session_members(child: _Child) -> set[int]:
    """Live processes of the child's session (it ran setsid: session id = its PID).

    Skipped if the session's PID now belongs to some other process (reused).
    """
    sid = child.pid
    leader = _created(sid)
    if leader is not None and child.seen.get(sid) not in (None, leader):
        return set()
    members: set[int] = set()
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and _created(pid) is not None:
                members.add(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _still_running(child: _Child) -> set[int]:
    """PIDs of the child's tree that are still alive: seen ones (same start
    time) and any member of its session."""
    alive = {pid for pid, created in child.seen.items() if _created(pid) == created}
    return alive | _session_members(child)


def _track(child: _Child) -> None:
    with contextlib.suppress(ProcessLookupError):
        _remember(child, tree_pids(child.pid))
    _remember(child, _session_members(child))


def _describe(pids: set[int]) -> str:
    parts = []
    for pid in sorted(pids):
        try:
            parts.append(f"{pid} ({' '.join(psutil.Process(pid).cmdline())[:120]})")
        except psutil.Error:
            parts.append(str(pid))
    return ", ".join(parts)


def _terminate(child: _Child, grace: float) -> None:
    """SIGTERM the child's process group, SIGKILL after ``grace``; raise on leftovers."""
    try:
        if child.popen.poll() is None:
            _track(child)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        left = set(child.seen)
        while time.monotonic() < deadline:
            child.popen.poll()  # reap the root as soon as it exits
            left = _still_running(child)
            if not left:
                break
            time.sleep(0.05)
        if left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                child.popen.poll()
                left = _still_running(child)
                if not left:
                    break
                time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=1.0)
        if left:
            raise _error(
                child.name, f"processes left after SIGKILL: {_describe(left)}", child.log_path
            )
        orphans.stopped(child.pid)
    finally:
        child.log.close()


def _wait_healthy(child: _Child, host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        code = child.popen.poll()
        if code is not None:
            raise _error(
                child.name, f"exited with code {code} before answering /health", child.log_path
            )
        try:
            status, body = http_get(host, port, "/health", timeout=2.0)
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        if time.monotonic() >= deadline:
            raise _error(
                child.name,
                f"no healthy answer on /health within {timeout:g}s ({last})",
                child.log_path,
            )
        time.sleep(0.1)


def _wait_processes(child: _Child, expected: int, timeout: float) -> None:
    """Wait until the tree holds ``expected`` server processes (helpers excluded)."""
    deadline = time.monotonic() + timeout
    found = 0
    while True:
        if child.popen.poll() is not None:
            raise _error(child.name, f"exited with code {child.popen.returncode}", child.log_path)
        with contextlib.suppress(ProcessLookupError):
            found = len(sample_tree(child.pid).server_processes)
            if found == expected:
                return
        if time.monotonic() >= deadline:
            raise _error(
                child.name,
                f"expected {expected} server processes, found {found} after {timeout:g}s",
                child.log_path,
            )
        time.sleep(0.1)


def _start_upstream(
    host: str, port: int | None, cpus: Sequence[int] | None, log_path: Path, timeout: float
) -> tuple[_Child, str]:
    port = port or free_port(host)
    argv = [sys.executable, "-m", "apps.upstream", "--host", host, "--port", str(port)]
    child = _spawn("upstream", argv, server_env(), log_path, cpus)
    try:
        _wait_healthy(child, host, port, timeout)
    except BaseException:
        _terminate(child, 2.0)
        raise
    return child, _url(host, port)


def start(config: ServeConfig) -> RunningServer:
    """Start the server of ``config`` and wait until it serves with all its workers.

    Raises ``RunnerError`` (naming the runner, with the log's tail) if it
    exits, does not answer ``/health`` within ``startup_timeout`` or does not
    reach its process count; nothing is left running in that case.
    """
    runner = config.runner
    began = time.monotonic()
    ncpus = len(config.cpus) if config.cpus is not None else len(available_cpus())
    workers = config.workers if config.workers is not None else worker_count(runner.workers, ncpus)
    threads = config.threads if config.threads is not None else runner.threads
    variant: Variant = config.variant or runner.variant
    gc: GcMode = config.gc or runner.gc
    port = config.port or free_port(config.host)
    if config.port:
        check_port_free(runner.name, config.host, port)
    cmd = command(
        runner,
        Settings(config.host, port, workers, threads, gc=gc, python=config.python, app=config.app),
    )
    upstream_child: _Child | None = None
    upstream_url: str | None = None
    extra = {"BENCH_MIDDLEWARE": config.middleware, **config.env}
    if config.with_upstream:
        upstream_child, upstream_url = _start_upstream(
            "127.0.0.1",
            None,
            config.upstream_cpus,
            config.log_path.with_name(config.log_path.stem + ".upstream.log"),
            config.startup_timeout,
        )
        extra["BENCH_UPSTREAM_URL"] = upstream_url
    extra.update(cmd.env)
    try:
        child = _spawn(
            runner.name,
            cmd.argv,
            server_env(extra),
            config.log_path,
            config.cpus,
            config.die_with_parent,
        )
    except BaseException:
        if upstream_child is not None:
            _terminate(upstream_child, 2.0)
        raise
    server = RunningServer(
        config=config,
        url=_url(config.host, port),
        port=port,
        pid=child.pid,
        workers=workers,
        threads=threads,
        variant=variant,
        gc=gc,
        command=cmd,
        upstream_url=upstream_url,
        _child=child,
        _upstream=upstream_child,
    )
    try:
        _wait_healthy(child, config.host, port, config.startup_timeout)
        remaining = max(5.0, config.startup_timeout - (time.monotonic() - began))
        _wait_processes(child, server.expected_processes(), remaining)
        _track(child)
    except BaseException:
        with contextlib.suppress(RunnerError):
            stop(server)
        raise
    server.startup_seconds = time.monotonic() - began
    return server


def stop(server: RunningServer) -> None:
    """SIGTERM the server's process group, SIGKILL after the grace period, then
    check (by PID and by session) that none of its processes is left.

    Also stops the upstream started with it. ``RunnerError`` lists leftovers.
    """
    errors: list[RunnerError] = []
    for child, grace in ((server._child, server.config.grace), (server._upstream, 5.0)):
        if child is None or child.log.closed:
            continue
        try:
            _terminate(child, grace)
        except RunnerError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@contextlib.contextmanager
def serve(config: ServeConfig) -> Iterator[RunningServer]:
    """``start`` on entry, ``stop`` on exit."""
    server = start(config)
    try:
        yield server
    finally:
        stop(server)


def prepare_database(
    env: Mapping[str, str], python: str = sys.executable, timeout: float = 600.0, **sizes: int
) -> None:
    """Migrate and seed (idempotent): ``python -m apps.manage prepare [--users N ...]``.

    ``sizes`` become options: ``prepare_database(env, users=100)`` passes
    ``--users 100``. ``env`` selects the database (``BENCH_DATA_DIR``,
    ``DATABASE_URL``...). Raises ``PrepareError`` with the command's output.
    """
    argv = [python, "-m", "apps.manage", "prepare"]
    for key, value in sizes.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    result = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=server_env(env),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        tail = "\n".join(output.splitlines()[-40:])
        raise PrepareError(
            f"{subprocess.list2cmdline(argv)} exited with code {result.returncode}\n{tail}"
        )


@contextlib.contextmanager
def upstream(
    host: str = "127.0.0.1",
    port: int | None = None,
    cpus: Sequence[int] | None = None,
    log_path: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[str]:
    """Run the upstream service (``python -m apps.upstream``); yields its base URL.

    Stopped, and checked to leave nothing behind, on exit.
    """
    with contextlib.ExitStack() as stack:
        if log_path is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="upstream-"))
            log_path = Path(tmp) / "upstream.log"
        child, url = _start_upstream(host, port, cpus, log_path, timeout)
        try:
            yield url
        finally:
            _terminate(child, 5.0)
