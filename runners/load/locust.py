"""Locust as a headless subprocess, with a measured window, and its CSV.

The driver never imports Locust (its gevent monkey-patching would reach the
driver's threads and subprocesses); it runs ``python -m locust`` pinned to
the load-generator CPUs with a fixed user count and spawn rate, loading
``loadtests/locustfile.py`` (the workloads) and ``loadtests/measure.py`` (the
measured window), started and stopped by the supervisor
(``runners/serving/supervisor.py``) like every process of the suite. The plugin
prints ``@@bench-window start|end <time>`` on stdout, which goes to Locust's
log; ``LocustProcess.wait_for`` follows the log and returns when such a line
arrives, so the driver starts and stops its server-side measurements at those
moments.

Usage::

    with LocustProcess(plan) as locust:
        locust.wait_for("start")
        ...start sampling the server...
        locust.wait_for("end")
        ...stop sampling...
        outcome = locust.finish()
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from loadtests.catalog import DEFAULT_REQUEST_TIMEOUT_S, WORKLOADS
from loadtests.window import Window
from runners import REPO_ROOT
from runners.results.record import Latency
from runners.serving import supervisor
from runners.serving.supervisor import Child, RunnerError, log_tail, read_lines

LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"
MEASURE_PLUGIN = REPO_ROOT / "loadtests" / "measure.py"
MARKER = "@@bench-window"  # loadtests/measure.py prints it
SETTLE_S = 1.5
STARTUP_MARGIN_S = 30.0
"""Allowance for Locust's own start-up and the spawning, on top of the warm-up."""
GRACE_S = 5.0
"""How long Locust gets to exit after SIGTERM."""
FOLLOW_S = 0.02
"""How often ``wait_for`` reads the new lines of Locust's log."""
CHECK_S = 0.5
"""How often ``wait_for`` calls its ``check``."""

Event = Literal["start", "end"]


class LocustError(RuntimeError):
    """Locust failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class LocustPlan:
    """One headless Locust run against one server."""

    host: str
    workload: str
    variant: str
    users: int
    warmup_s: float
    duration_s: float
    out_prefix: Path
    """Files are ``<prefix>.html``, ``<prefix>_stats.csv``, ``<prefix>.locust.log``..."""
    spawn_rate: float | None = None
    """Users started per second; default: all of them within a second."""
    cpus: tuple[int, ...] | None = None
    options: tuple[str, ...] = ()
    """Workload options, e.g. ``("--upstream-ms", "50", "--max-user-id", "100")``."""
    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=dict)
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    """A request unanswered for this long fails (a hung server cannot stall a user)."""

    @property
    def rate(self) -> float:
        return self.spawn_rate if self.spawn_rate else float(self.users)

    @property
    def spawn_s(self) -> float:
        return self.users / self.rate

    @property
    def run_time_limit_s(self) -> int:
        """Locust's ``--run-time``: a safety net well after the window should end."""
        return int(self.spawn_s + self.warmup_s + self.duration_s + SETTLE_S + 60)

    @property
    def html(self) -> Path:
        return self.out_prefix.with_name(self.out_prefix.name + ".html")

    @property
    def log(self) -> Path:
        return self.out_prefix.with_name(self.out_prefix.name + ".locust.log")

    @property
    def window_json(self) -> Path:
        return self.out_prefix.with_name(self.out_prefix.name + ".window.json")

    def csv(self, kind: str) -> Path:
        return self.out_prefix.with_name(f"{self.out_prefix.name}_{kind}.csv")

    @property
    def csv_files(self) -> list[Path]:
        return [self.csv(kind) for kind in ("stats", "stats_history", "failures", "exceptions")]


def command(plan: LocustPlan) -> list[str]:
    """The ``python -m locust`` command line (not yet pinned to CPUs)."""
    user_class = WORKLOADS[plan.workload].user_class
    return [
        plan.python,
        "-m",
        "locust",
        "-f",
        f"{LOCUSTFILE},{MEASURE_PLUGIN}",
        "--headless",
        "--host",
        plan.host,
        "--users",
        str(plan.users),
        "--spawn-rate",
        f"{plan.rate:g}",
        "--run-time",
        f"{plan.run_time_limit_s}s",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--csv",
        str(plan.out_prefix),
        "--html",
        str(plan.html),
        "--variant",
        plan.variant,
        "--measure-warmup",
        f"{plan.warmup_s:g}",
        "--measure-duration",
        f"{plan.duration_s:g}",
        "--measure-out",
        str(plan.window_json),
        "--measure-settle",
        f"{SETTLE_S:g}",
        "--request-timeout",
        f"{plan.request_timeout_s:g}",
        *plan.options,
        user_class,
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
    window: Window
    stats: Aggregated
    exit_code: int


# --- the process -------------------------------------------------------------------------------


class LocustProcess:
    """A running headless Locust; a context manager that never leaves it behind."""

    def __init__(self, plan: LocustPlan) -> None:
        self.plan = plan
        self.child: Child | None = None
        self.seen: dict[str, float] = {}
        self._offset = 0

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
        for stale in (plan.window_json, plan.html, *plan.csv_files):
            stale.unlink(missing_ok=True)
        env = {**os.environ, **plan.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        # Pinned to the load-generator CPUs and tied to this process's life
        # (PR_SET_PDEATHSIG: Locust gets SIGTERM if the driver is killed, even with kill -9).
        self.child = supervisor.spawn(
            "locust", command(plan), env=env, log_path=plan.log, cpus=plan.cpus or None
        )
        self._offset = 0

    def _read_markers(self) -> None:
        lines, self._offset = read_lines(self.plan.log, self._offset)
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == MARKER:
                self.seen[parts[1]] = time.time()

    def deadline_for(self, event: Event) -> float:
        plan = self.plan
        if event == "start":
            return plan.spawn_s + plan.warmup_s + STARTUP_MARGIN_S
        return plan.duration_s + STARTUP_MARGIN_S

    def wait_for(
        self, event: Event, timeout: float | None = None, check: Callable[[], None] | None = None
    ) -> float:
        """Block until the plugin prints ``event``; the driver's time of arrival.

        ``check`` is called about twice a second while waiting; what it raises
        ends the wait (the driver uses it to give up when the server died).
        """
        assert self.child is not None
        began = time.monotonic()
        limit = began + (timeout if timeout is not None else self.deadline_for(event))
        next_check = began + CHECK_S
        while True:
            running = self.child.alive()  # before reading: what it wrote before exiting counts
            self._read_markers()
            if event in self.seen:
                return self.seen[event]
            if not running:
                code = self.child.popen.returncode
                raise self.error(f"Locust exited (status {code}) before the window {event}")
            now = time.monotonic()
            if now >= limit:
                raise self.error(f"no measured-window {event} from Locust in time")
            if check is not None and now >= next_check:
                check()
                next_check = now + CHECK_S
            time.sleep(FOLLOW_S)

    def finish(self, timeout: float = SETTLE_S + 60) -> LocustOutcome:
        """Wait for Locust to exit and read what it wrote."""
        assert self.child is not None
        try:
            code = self.child.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self.error("Locust did not exit after the measured window") from None
        if not self.plan.window_json.exists():
            raise self.error(f"Locust exited (status {code}) without a measured window")
        try:
            window = Window.read(self.plan.window_json)
            stats = parse_stats_csv(self.plan.csv("stats"))
        except (OSError, ValueError, KeyError, LocustError) as exc:
            raise self.error(f"cannot read Locust's results: {exc}") from exc
        return LocustOutcome(window=window, stats=stats, exit_code=code)

    def kill(self) -> None:
        """Stop Locust and anything it started (``supervisor.stop``: SIGTERM, SIGKILL
        after a grace period, nothing left); ``RunnerError`` lists leftovers."""
        if self.child is not None and not self.child.stopped:
            supervisor.stop(self.child, GRACE_S)

    def error(self, message: str) -> LocustError:
        tail = log_tail(self.plan.log, 30)
        return LocustError(f"{message}; Locust log {self.plan.log.name}:\n{tail}")


def window_summary(outcome: LocustOutcome) -> dict[str, Any]:
    """The window's own figures, kept in the run record for cross-checking."""
    w = outcome.window
    return {"start": w.start, "end": w.end, "requests": w.requests, "failures": w.failures}
