"""Lifecycle of a server (and of the upstream service it may need).

``start`` resolves a runner's rules to concrete settings, makes the server's cgroup
(``runners/serving/cgroups.py``: where this host has one, with the config's limits),
starts the server through the supervisor (``runners/serving/supervisor.py``: in that
cgroup, pinned to the server CPUs, tied to the driver's life, in a session of its own,
its output in a log file kept with the results, listed in the ledger), then waits for
``GET /health`` and for every worker to exist. ``stop`` has the supervisor send
SIGTERM, SIGKILL after the grace period, and check that no process of the server is
left, then removes the cgroup. Failures raise ``RunnerError``, whose message names the
runner and ends with the log's tail.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runners import REPO_ROOT
from runners.serving import cgroups, supervisor
from runners.serving.cgroups import NO_LIMITS, Cgroup, CgroupError, Limits
from runners.serving.commands import ServerCommand, Settings, command
from runners.serving.cpus import available_cpus
from runners.serving.net import check_port_free, free_port, http_get, url
from runners.serving.proctree import server_process_count
from runners.serving.registry import Runner, worker_count
from runners.serving.subject import BUILTIN, Subject
from runners.serving.supervisor import Child, RunnerError
from runners.vocabulary import GcMode, Variant

# Inherited variables that would silently change a server's settings.
_SCRUBBED_ENV_PREFIXES = ("GUNICORN_CMD_ARGS", "GRANIAN_", "UWSGI_", "WEB_CONCURRENCY")


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
    subject: Subject = BUILTIN
    """The Django app served: the built-in one, or a user's project (``runners.project``)."""
    # PR_SET_PDEATHSIG: the root gets SIGTERM when the thread that called
    # start() exits (so call it from a long-lived thread, or turn this off).
    die_with_parent: bool = True
    limits: Limits = NO_LIMITS
    """A pod's memory limit and CPU quota on the server's cgroup (``runners.serving.cgroups``);
    a worker rule then reads the quota's CPUs (``ceil``) instead of the pinned ones."""
    rule_cpus: int | None = None
    """The CPU count the runner's worker rule reads, when neither the pinned CPUs nor the
    quota (``--worker-rule host``: the host's cores, as ``os.cpu_count()`` in a container)."""
    cgroup: bool = True
    """Serve in a cgroup of its own where this host can make one (limits need one)."""

    @property
    def worker_rule_cpus(self) -> int:
        """The CPUs the worker rule reads: ``rule_cpus``, else the quota's, else the
        pinned (or available) CPUs."""
        pinned = len(self.cpus) if self.cpus is not None else len(available_cpus())
        return self.rule_cpus or self.limits.cpus or pinned


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
    command: ServerCommand
    upstream_url: str | None = None
    startup_seconds: float = 0.0
    cgroup: Cgroup | None = None
    """Its cgroup (None: this host cannot make one)."""
    _child: Child | None = field(default=None, repr=False)
    _upstream: Child | None = field(default=None, repr=False)

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
        return self._child is not None and self._child.alive()

    def exit_status(self) -> str | None:
        """How the root process ended (``killed by SIGKILL``, ``exit status 1``), or None."""
        return None if self._child is None else self._child.exit_status()

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


def server_env(
    extra: Mapping[str, str] | None = None, subject: Subject = BUILTIN
) -> dict[str, str]:
    """The environment of the app's processes: ours, minus server-setting variables,
    plus the subject's folders and the repository on ``PYTHONPATH``, its settings
    module, and ``extra`` (whose ``PYTHONPATH``, if any, goes first)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_ENV_PREFIXES) and k != "BENCH_GC"
    }
    extra = dict(extra or {})
    first = extra.pop("PYTHONPATH", "")
    inherited = env.get("PYTHONPATH", "")
    folders = [*first.split(os.pathsep), *subject.pythonpath, str(REPO_ROOT)]
    folders += inherited.split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(f for f in folders if f))
    env["DJANGO_SETTINGS_MODULE"] = subject.settings or "apps.project.settings"
    if subject.app_root is not None:
        env["BENCH_APP_ROOT"] = subject.app_root
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


BROKEN_S = 5.0
"""A server that answers its readiness path with a 5xx for this long is up but broken:
it fails at once instead of at ``startup_timeout`` (a page that fails every time)."""


def _wait_healthy(
    child: Child, host: str, port: int, timeout: float, subject: Subject = BUILTIN
) -> None:
    path = subject.health
    broken_since: list[float] = []

    def probe() -> str | None:
        try:
            status, body = http_get(host, port, path, timeout=2.0)
        except (OSError, http.client.HTTPException) as exc:
            broken_since.clear()
            return f"{type(exc).__name__}: {exc}"
        if 200 <= status < subject.ready_below:
            return None
        found = f"HTTP {status}: {body[:200]!r}"
        if status < 500:
            broken_since.clear()
        elif not broken_since:
            broken_since.append(time.monotonic())
        elif time.monotonic() - broken_since[0] >= BROKEN_S:
            raise child.error(f"answers {path} with {found} (for {BROKEN_S:g} s: broken)")
        return found

    last = supervisor.wait_ready(child, probe, timeout, f" before answering {path}")
    if last is not None:
        raise child.error(f"no healthy answer on {path} within {timeout:g}s ({last})")


def _wait_processes(child: Child, expected: int, timeout: float) -> None:
    """Wait until the tree holds ``expected`` server processes (helpers excluded)."""

    def probe() -> str | None:
        found = server_process_count(child.pid)
        return None if found == expected else f"found {found}"

    last = supervisor.wait_ready(child, probe, timeout)
    if last is not None:
        raise child.error(f"expected {expected} server processes, {last} after {timeout:g}s")


def _start_upstream(
    host: str, port: int | None, cpus: Sequence[int] | None, log_path: Path, timeout: float
) -> tuple[Child, str]:
    port = port or free_port(host)
    argv = [sys.executable, "-m", "apps.upstream", "--host", host, "--port", str(port)]
    child = supervisor.spawn("upstream", argv, env=server_env(), log_path=log_path, cpus=cpus)
    try:
        _wait_healthy(child, host, port, timeout)
    except BaseException:
        supervisor.stop(child, 2.0)
        raise
    return child, url(host, port)


def _upstream_for(config: ServeConfig) -> tuple[Child | None, str | None]:
    """The upstream service started beside the server (``with_upstream``), or nothing."""
    if not config.with_upstream:
        return None, None
    return _start_upstream(
        "127.0.0.1",
        None,
        config.upstream_cpus,
        config.log_path.with_name(config.log_path.stem + ".upstream.log"),
        config.startup_timeout,
    )


def _spawn(
    config: ServeConfig, argv: Sequence[str], extra: dict[str, str], upstream: Child | None
) -> tuple[Child, Cgroup | None]:
    """The server's process in a cgroup of its own (where one can be made); on failure
    nothing is left, the upstream service stopped too."""
    cgroup: Cgroup | None = None
    try:
        cgroup = _make_cgroup(config)
        child = supervisor.spawn(
            config.runner.name,
            argv,
            env=server_env(extra, config.subject),
            log_path=config.log_path,
            cpus=config.cpus,
            die_with_parent=config.die_with_parent,
            label=f"runner {config.runner.name}",
            cgroup=cgroup.procs_files if cgroup is not None else (),
        )
    except BaseException:
        if cgroup is not None:
            with contextlib.suppress(CgroupError):
                cgroups.remove(cgroup)
        if upstream is not None:
            supervisor.stop(upstream, 2.0)
        raise
    return child, cgroup


def _wait_serving(server: RunningServer, child: Child, began: float) -> None:
    """Wait until ``server`` (its process ``child``) answers and runs all its processes;
    stop it (and say so when the OOM killer was at work) when it does not."""
    config, cgroup = server.config, server.cgroup
    try:
        _wait_healthy(child, config.host, server.port, config.startup_timeout, config.subject)
        remaining = max(5.0, config.startup_timeout - (time.monotonic() - began))
        _wait_processes(child, server.expected_processes(), remaining)
        child.track()
    except RunnerError as exc:
        killed = cgroups.oom_kills(cgroup) if cgroup is not None else None
        with contextlib.suppress(RunnerError):
            stop(server)
        if killed:
            limit = (config.limits.memory_bytes or 0) / 2**20
            raise RunnerError(
                f"runner {config.runner.name}: OOM-killed while starting ({killed} kill(s) at "
                f"its memory limit of {limit:.0f} MiB): its idle footprint does not fit"
                f"\n{exc}"
            ) from None
        raise
    except BaseException:
        with contextlib.suppress(RunnerError):
            stop(server)
        raise


def start(config: ServeConfig) -> RunningServer:
    """Start the server of ``config`` and wait until it serves with all its workers.

    Raises ``RunnerError`` (naming the runner, with the log's tail) if it
    exits, does not answer ``/health`` within ``startup_timeout`` or does not
    reach its process count; nothing is left running in that case.
    """
    runner = config.runner
    began = time.monotonic()
    workers = config.workers
    if workers is None:
        workers = worker_count(runner.workers, config.worker_rule_cpus)
    threads = config.threads if config.threads is not None else runner.threads
    variant: Variant = config.variant or runner.variant
    gc: GcMode = config.gc or runner.gc
    port = config.port or free_port(config.host)
    if config.port:
        check_port_free(config.host, port, f"runner {runner.name}")
    settings = Settings(
        config.host,
        port,
        workers,
        threads,
        gc=gc,
        python=config.python,
        app=config.app,
        subject=config.subject,
    )
    cmd = command(runner, settings)
    extra = {"BENCH_MIDDLEWARE": config.middleware, **config.env}
    upstream_child, upstream_url = _upstream_for(config)
    if upstream_url is not None:
        extra["BENCH_UPSTREAM_URL"] = upstream_url
    extra.update(cmd.env)
    child, cgroup = _spawn(config, cmd.argv, extra, upstream_child)
    server = RunningServer(
        config=config,
        url=url(config.host, port),
        port=port,
        pid=child.pid,
        workers=workers,
        threads=threads,
        variant=variant,
        gc=gc,
        command=cmd,
        upstream_url=upstream_url,
        cgroup=cgroup,
        _child=child,
        _upstream=upstream_child,
    )
    _wait_serving(server, child, began)
    server.startup_seconds = time.monotonic() - began
    return server


def _make_cgroup(config: ServeConfig) -> Cgroup | None:
    """The server's cgroup with the config's limits; None where this host cannot make
    one and no limit was asked for (``RunnerError`` when one was)."""
    limited = config.limits != NO_LIMITS
    if not config.cgroup and not limited:
        return None
    if not cgroups.support().available and not limited:
        return None
    try:
        return cgroups.make(config.runner.name, config.limits)
    except CgroupError as exc:
        if not limited:
            return None  # measured as PSS only, as where no cgroup can be made
        raise RunnerError(f"runner {config.runner.name}: {exc}") from None


def stop(server: RunningServer) -> None:
    """SIGTERM the server's tree, SIGKILL after the grace period, then check (by PID
    and by session) that none of its processes is left (``supervisor.stop``), and
    remove its cgroup (killing what is still in it: only its own processes).

    Also stops the upstream started with it. ``RunnerError`` lists leftovers.
    """
    errors: list[RunnerError] = []
    for child, grace in ((server._child, server.config.grace), (server._upstream, 5.0)):
        if child is None or child.stopped:
            continue
        try:
            supervisor.stop(child, grace)
        except RunnerError as exc:
            errors.append(exc)
    if server.cgroup is not None:
        try:
            cgroups.remove(server.cgroup)
        except CgroupError as exc:
            errors.append(RunnerError(f"runner {server.runner.name}: {exc}"))
        server.cgroup = None
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
        child, base_url = _start_upstream(host, port, cpus, log_path, timeout)
        try:
            yield base_url
        finally:
            supervisor.stop(child, 5.0)
