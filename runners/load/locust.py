"""Locust as a headless subprocess that runs the driver's probes, and its CSV.

The driver never imports Locust (its gevent monkey-patching would reach the
driver's threads and subprocesses); it runs ``python -m locust`` pinned to
the load-generator CPUs, loading ``loadtests/locustfile.py`` (the workloads;
or ``loadtests/trafficfile.py`` with a traffic file, or a user's own locustfile
with ``loadtests/userfile.py``: ``LocustPlan.locustfiles``) and
``loadtests/probes.py`` (measured windows on command), started and
stopped by the supervisor (``runners/serving/supervisor.py``) like every
process of the suite. Locust starts idle; each ``probe`` writes a
``ProbeCommand`` (``loadtests/window.py``) to the plugin's control file and
follows Locust's log for the plugin's ``@@bench-probe <seq> start|end|done``
lines, so the driver starts and stops its server-side measurements at those
moments, and reads the probe's ``ProbeResult`` back.

Usage::

    with LocustProcess(plan) as locust:
        result = locust.probe(command, on_start=..., on_end=...)
        ...more probes...
        outcome = locust.finish()
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from loadtests.catalog import DEFAULT_REQUEST_TIMEOUT_S, WORKLOADS
from loadtests.window import ProbeCommand, ProbeResult
from runners import REPO_ROOT
from runners.results.record import Latency
from runners.serving import supervisor
from runners.serving.net import connect_host, free_port
from runners.serving.supervisor import Child, RunnerError, log_tail, read_lines

LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"
"""The suite's workloads (``--variant``, ``--request-timeout`` and their own options)."""
TRAFFICFILE = REPO_ROOT / "loadtests" / "trafficfile.py"
"""A traffic file's requests (``--traffic FILE``, ``--request-timeout``): ``TrafficUser``."""
USERFILE = REPO_ROOT / "loadtests" / "userfile.py"
"""The plugin that puts a user's own locustfile on the schedule (it takes no option)."""
PROBES_PLUGIN = REPO_ROOT / "loadtests" / "probes.py"
MARKER = "@@bench-probe"  # loadtests/probes.py prints it
SETTLE_S = 0.35
"""Between stopping the users and quitting: Locust's statistics CSV is rewritten every
0.2 s while probes run (``loadtests/probes.py``), not at its exit."""
STARTUP_MARGIN_S = 30.0
"""Allowance for Locust's own start-up (the first probe) and for spawning users."""
MARGIN_S = 10.0
"""Allowance on top of a probe's own times before the driver gives up on a marker."""
GRACE_S = 5.0
"""How long Locust gets to exit after SIGTERM."""
FOLLOW_S = 0.02
"""How often ``wait_for`` reads the new lines of Locust's log."""
CHECK_S = 0.5
"""How often ``wait_for`` calls its ``check``."""

Event = Literal["start", "end", "done"]


class LocustError(RuntimeError):
    """Locust failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class LocustPlan:
    """One headless Locust process against one server, for as many probes as the driver asks."""

    host: str
    workload: str
    variant: str
    out_prefix: Path
    """Files are ``<prefix>.html``, ``<prefix>_stats.csv``, ``<prefix>.locust.log``,
    ``<prefix>.probes/probe-<seq>.json``..."""
    run_time_limit_s: float
    """Locust's ``--run-time``: a safety net after which Locust quits by itself."""
    cpus: tuple[int, ...] | None = None
    options: tuple[str, ...] = ()
    """Workload options, e.g. ``("--upstream-ms", "50", "--max-user-id", "100")``, or
    ``("--traffic", "urls.json")`` for ``TRAFFICFILE``."""
    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=dict)
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    """A request unanswered for this long fails (a hung server cannot stall a user)."""
    processes: int = 1
    """Load-generating Locust processes started here. 1 and no ``expect_workers``: one
    plain Locust process; otherwise Locust's distributed mode: a master (which sends
    nothing) and this many workers, each pinned to one of ``cpus`` in turn."""
    expect_workers: int = 0
    """Workers from elsewhere (other machines) the master waits for, besides its own."""
    master_bind_host: str = "127.0.0.1"
    master_port: int | None = None
    """The master's port for its workers (None: a free one)."""
    locustfiles: tuple[Path, ...] = (LOCUSTFILE,)
    """The Locust files of the users, loaded before the probes plugin: the suite's
    workloads; ``(TRAFFICFILE,)`` for a traffic file; ``(THEIR_FILE, USERFILE)`` for a
    user's own locustfile."""
    user_classes: tuple[str, ...] = ()
    """The user classes Locust runs; empty: the workload's (``loadtests/catalog.py``)."""

    @property
    def classes(self) -> tuple[str, ...]:
        return self.user_classes or (WORKLOADS[self.workload].user_class,)

    @property
    def files(self) -> str:
        """Locust's ``-f``: the users' files, then the probes plugin."""
        return ",".join(str(path) for path in (*self.locustfiles, PROBES_PLUGIN))

    @property
    def distributed(self) -> bool:
        return self.processes > 1 or self.expect_workers > 0

    @property
    def generators(self) -> int:
        """Every process that sends load."""
        return self.processes + self.expect_workers if self.distributed else 1

    def worker_log(self, index: int) -> Path:
        return self.out_prefix.with_name(f"{self.out_prefix.name}.locust-worker{index}.log")

    @property
    def html(self) -> Path:
        return self.out_prefix.with_name(self.out_prefix.name + ".html")

    @property
    def log(self) -> Path:
        return self.out_prefix.with_name(self.out_prefix.name + ".locust.log")

    @property
    def probes_dir(self) -> Path:
        return self.out_prefix.with_name(self.out_prefix.name + ".probes")

    @property
    def control(self) -> Path:
        return self.probes_dir / "control.json"

    def csv(self, kind: str) -> Path:
        return self.out_prefix.with_name(f"{self.out_prefix.name}_{kind}.csv")

    @property
    def csv_files(self) -> list[Path]:
        return [self.csv(kind) for kind in ("stats", "stats_history", "failures", "exceptions")]


def _workload_options(plan: LocustPlan) -> list[str]:
    """The options of the users' files: each file takes only its own (a user's locustfile
    keeps its clients' timeouts)."""
    options = []
    if LOCUSTFILE in plan.locustfiles:
        options += ["--variant", plan.variant]
    if LOCUSTFILE in plan.locustfiles or TRAFFICFILE in plan.locustfiles:
        options += ["--request-timeout", f"{plan.request_timeout_s:g}"]
    return [*options, *plan.options]


def command(plan: LocustPlan, master_port: int | None = None) -> list[str]:
    """The ``python -m locust`` command line of the process that runs the probes (the
    master in distributed mode, which then needs ``master_port``); not yet pinned."""
    distributed: list[str] = []
    if plan.distributed:
        assert master_port is not None
        distributed = [
            "--master",
            "--expect-workers",
            str(plan.generators),
            "--master-bind-host",
            plan.master_bind_host,
            "--master-bind-port",
            str(master_port),
        ]
    return [
        plan.python,
        "-m",
        "locust",
        "-f",
        plan.files,
        "--headless",
        *distributed,
        "--host",
        plan.host,
        # One user to start with; every probe sets its own count (the plugin holds
        # the users until the first probe, so nothing is sent before it).
        "--users",
        "1",
        "--spawn-rate",
        "1000",
        "--run-time",
        f"{max(1, round(plan.run_time_limit_s))}s",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--csv",
        str(plan.out_prefix),
        "--html",
        str(plan.html),
        "--probe-control",
        str(plan.control),
        "--probe-out",
        str(plan.probes_dir),
        "--probe-settle",
        f"{SETTLE_S:g}",
        *_workload_options(plan),
        *plan.classes,
    ]


def worker_command(plan: LocustPlan, master_host: str, master_port: int) -> list[str]:
    """A Locust worker's command line: on this machine (the driver starts it) or on
    another one (``python`` there, with this repository's ``loadtests/``)."""
    return [
        plan.python,
        "-m",
        "locust",
        "-f",
        plan.files,
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
        *_workload_options(plan),
        *plan.classes,
    ]


# --- what Locust wrote -------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregated:
    """The ``Aggregated`` row of Locust's ``*_stats.csv``."""

    requests: int
    failures: int
    latency: Latency
    locust_rps: float | None


def _number(row: Mapping[str, str], column: str) -> float | None:
    text = (row.get(column) or "").strip()
    if not text or text == "N/A":
        return None
    return float(text)


def parse_stats_csv(path: Path) -> Aggregated:
    """Read the Aggregated row; ``LocustError`` if there is none."""
    with path.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("Name") == "Aggregated"]
    if not rows:
        raise LocustError(f"{path.name} has no Aggregated row")
    row = rows[-1]
    requests = int(_number(row, "Request Count") or 0)
    latency = Latency(
        p50=_number(row, "50%"),
        p90=_number(row, "90%"),
        p95=_number(row, "95%"),
        p99=_number(row, "99%"),
        # The exact maximum, not the rounded 100% percentile.
        max=_number(row, "Max Response Time") if requests else None,
        mean=_number(row, "Average Response Time") if requests else None,
    )
    return Aggregated(
        requests=requests,
        failures=int(_number(row, "Failure Count") or 0),
        latency=latency,
        locust_rps=_number(row, "Requests/s"),
    )


@dataclass(frozen=True)
class LocustOutcome:
    stats: Aggregated
    """Locust's own figures since its last statistics reset (the measured window)."""
    exit_code: int


# --- the process -------------------------------------------------------------------------------


class LoadGenerator(Protocol):
    """What the measurement asks of the load generator (``LocustProcess``; tests give a
    model of one): measured windows on command, pauses between them, and the end."""

    def probe(
        self,
        command: ProbeCommand,
        *,
        on_start: Callable[[], object] | None = None,
        on_end: Callable[[], object] | None = None,
        check: Callable[[], None] | None = None,
    ) -> ProbeResult: ...

    def pause(self, seq: int, drain_s: float, check: Callable[[], None] | None = None) -> None: ...

    def finish(self) -> LocustOutcome: ...


LoadGeneratorFactory = Callable[["LocustPlan"], AbstractContextManager[LoadGenerator]]
"""How a run gets its load generator: ``LocustProcess`` (a context manager that never
leaves a process behind)."""


class LocustProcess:
    """A running headless Locust; a context manager that never leaves it behind."""

    def __init__(self, plan: LocustPlan) -> None:
        self.plan = plan
        self.child: Child | None = None
        self.workers: list[Child] = []
        self.master_port: int | None = None
        self.seen: dict[tuple[int, str], tuple[float, str]] = {}
        self._offset = 0
        self._seq = 0

    def __enter__(self) -> LocustProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.kill()
        except RunnerError:
            if exc is None:
                raise
            # The run's own error is the one to report; the ledger keeps the leftovers.

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def start(self) -> None:
        plan = self.plan
        plan.out_prefix.parent.mkdir(parents=True, exist_ok=True)
        plan.probes_dir.mkdir(parents=True, exist_ok=True)
        for stale in (plan.control, plan.html, *plan.csv_files, *plan.probes_dir.glob("*.json")):
            stale.unlink(missing_ok=True)
        env = {**os.environ, **plan.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        # Pinned to the load-generator CPUs and tied to this process's life
        # (PR_SET_PDEATHSIG: Locust gets SIGTERM if the driver is killed, even with kill -9).
        if plan.distributed:
            self.master_port = plan.master_port or free_port(plan.master_bind_host)
        self.child = supervisor.spawn(
            "locust",
            command(plan, self.master_port),
            env=env,
            log_path=plan.log,
            cpus=plan.cpus or None,
        )
        self._offset = 0
        if plan.distributed:
            assert self.master_port is not None
            cpus = plan.cpus or ()
            for index in range(plan.processes):
                self.workers.append(
                    supervisor.spawn(
                        f"locust-worker{index}",
                        worker_command(plan, connect_host(plan.master_bind_host), self.master_port),
                        env=env,
                        log_path=plan.worker_log(index),
                        cpus=(cpus[index % len(cpus)],) if cpus else None,
                    )
                )

    def probe(
        self,
        command: ProbeCommand,
        *,
        on_start: Callable[[], object] | None = None,
        on_end: Callable[[], object] | None = None,
        check: Callable[[], None] | None = None,
    ) -> ProbeResult:
        """Run one probe: ``on_start`` and ``on_end`` are called as its window opens and
        closes (the driver samples the server in between); what Locust measured."""
        if command.seq <= self._seq:
            raise ValueError(f"probe {command.seq} after probe {self._seq}")
        self._seq = command.seq
        command.write(self.plan.control)
        first = command.seq == 1
        margin = MARGIN_S
        if first:
            # Locust's start-up, and in distributed mode every worker connecting.
            margin = STARTUP_MARGIN_S * (3 if self.plan.expect_workers else 1)
        self.wait_for(command.seq, "start", command.drain_s + command.warmup_s + margin, check)
        if on_start is not None:
            on_start()
        self.wait_for(command.seq, "end", command.duration_s + MARGIN_S, check)
        if on_end is not None:
            on_end()
        path = self.wait_for(command.seq, "done", command.drain_s + MARGIN_S, check)
        try:
            return ProbeResult.read(Path(path))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise self.error(f"cannot read probe {command.seq}: {exc}") from exc

    def pause(self, seq: int, drain_s: float, check: Callable[[], None] | None = None) -> None:
        """Stop the load until the next probe; returns once the requests in flight ended."""
        if seq <= self._seq:
            raise ValueError(f"pause {seq} after probe {self._seq}")
        self._seq = seq
        ProbeCommand(seq=seq, mode="pause", users=1, duration_s=0.0, drain_s=drain_s).write(
            self.plan.control
        )
        self.wait_for(seq, "done", drain_s + MARGIN_S, check)

    def _read_markers(self) -> None:
        lines, self._offset = read_lines(self.plan.log, self._offset)
        for line in lines:
            parts = line.split(maxsplit=3)
            if len(parts) >= 3 and parts[0] == MARKER and parts[1].isdigit():
                value = parts[3] if len(parts) > 3 else ""
                self.seen[(int(parts[1]), parts[2])] = (time.time(), value)

    def wait_for(
        self,
        seq: int,
        event: Event,
        timeout: float,
        check: Callable[[], None] | None = None,
    ) -> str:
        """Block until the plugin prints ``event`` for probe ``seq``; the marker's value.

        ``check`` is called about twice a second while waiting; what it raises
        ends the wait (the driver uses it to give up when the server died).
        """
        assert self.child is not None
        began = time.monotonic()
        limit = began + timeout
        next_check = began + CHECK_S
        while True:
            running = self.child.alive()  # before reading: what it wrote before exiting counts
            self._read_markers()
            if (seq, event) in self.seen:
                return self.seen[(seq, event)][1]
            if not running:
                code = self.child.popen.returncode
                raise self.error(f"Locust exited (status {code}) before probe {seq} {event}")
            now = time.monotonic()
            if now >= limit:
                raise self.error(f"no probe {seq} {event} from Locust within {timeout:.0f} s")
            if check is not None and now >= next_check:
                check()
                next_check = now + CHECK_S
            time.sleep(FOLLOW_S)

    def finish(self, timeout: float = SETTLE_S + 60) -> LocustOutcome:
        """Tell Locust to quit, wait for it to exit and read its own statistics."""
        assert self.child is not None
        self.plan.control.write_text('{"quit": true}\n')
        try:
            code = self.child.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self.error("Locust did not exit after the last probe") from None
        try:
            stats = parse_stats_csv(self.plan.csv("stats"))
        except (OSError, ValueError, KeyError, LocustError) as exc:
            raise self.error(f"cannot read Locust's results: {exc}") from exc
        return LocustOutcome(stats=stats, exit_code=code)

    def kill(self) -> None:
        """Stop Locust and anything it started (``supervisor.stop``: SIGTERM, SIGKILL
        after a grace period, nothing left); ``RunnerError`` lists leftovers."""
        problems: list[str] = []
        for child in [*self.workers, self.child]:
            if child is not None and not child.stopped:
                try:
                    supervisor.stop(child, GRACE_S)
                except RunnerError as exc:
                    problems.append(str(exc))
        if problems:
            raise RunnerError("; ".join(problems))

    def error(self, message: str) -> LocustError:
        tail = log_tail(self.plan.log, 30)
        return LocustError(f"{message}; Locust log {self.plan.log.name}:\n{tail}")
