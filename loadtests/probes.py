"""Probes: measured windows the driver asks for one after another, in one Locust run.

Load it next to the locustfile::

    locust -f loadtests/locustfile.py,loadtests/probes.py --headless -u 1 -r 1 \\
        --probe-control control.json --probe-out probes/ ...

The driver (``runners/load/locust.py``) writes ``--probe-control``: a JSON
object with a growing ``seq``. For each new one the controller (in the local
runner, or the master in distributed mode)

0. pauses every load-generating process (no new request is sent) and waits
   until the requests in flight have ended (at most ``drain_s``), so that a
   probe never inherits the previous one's backlog;
1. sets the number of users (``runner.start``; Locust spreads them over its
   workers) and tells every load-generating process the rate (its share:
   ``rate / processes``, arrivals interleaved by process index) with a custom
   message; processes switch to that rate at once;
2. lets the warm-up pass, optionally resets Locust's statistics (so its CSV
   and HTML report cover the window), and prints
   ``@@bench-probe <seq> start <unix time>``;
3. after the duration (or earlier, with ``max_requests``) prints
   ``@@bench-probe <seq> end <unix time>``; every process waits for the
   requests intended inside the window to end (answered, failed, or timed
   out: ``--request-timeout`` bounds the wait), then sends back its window
   (``loadtests/pacing.py``: an HDR latency histogram, counts, schedule lag,
   its own CPU seconds);
4. merges them into ``<--probe-out>/probe-<seq>.json`` and prints
   ``@@bench-probe <seq> done <path>``.

The load stops at the end of each window (its requests in flight go on to
their end). ``{"quit": true}`` stops the users, waits
``--probe-settle`` seconds for Locust's CSV writer, and quits. Locust rewrites its
``*_stats.csv`` once a second and not again at its exit; the plugin makes that every
``CSV_INTERVAL_S`` (a few rows: no cost that shows in the load generator's CPU), so the
settle, paid once per run, is short.

A probe in ``closed`` mode is the classic closed loop: ``users`` users send
back to back, latency from each request's own send time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
import psutil
from hdrh.histogram import HdrHistogram
from locust import events
from locust import stats as locust_stats
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

# Loaded by path (``locust -f ...,loadtests/probes.py``): the shared records are
# imported from the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from loadtests.pacing import LATE_S, PACER, PacerWindow, histogram  # noqa: E402
from loadtests.window import (  # noqa: E402
    ProbeCommand,
    ProbeResult,
    ProcessIdle,
    ProcessLoad,
    ScheduledProbe,
    WindowEnd,
)
from runners.vocabulary import ARRIVALS, DEFAULT_ARRIVAL  # noqa: E402

MARKER = "@@bench-probe"
PAUSE_MESSAGE = "bench-probe-pause"
IDLE_MESSAGE = "bench-probe-idle"
CONFIG_MESSAGE = "bench-probe"
END_MESSAGE = "bench-probe-end"
RESULT_MESSAGE = "bench-probe-result"
POLL_S = 0.02
DRAIN_MARGIN_S = 1.0
SPAWN_RATE = 1000.0
CSV_INTERVAL_S = 0.2
"""How often Locust rewrites its statistics CSV while probes run (Locust's own: 1 s)."""


def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--probe-control",
        default="",
        include_in_web_ui=False,
        help="JSON file the driver writes probe commands to (enables probes)",
    )
    parser.add_argument(
        "--probe-out",
        default="",
        include_in_web_ui=False,
        help="folder the merged result of each probe is written to",
    )
    parser.add_argument(
        "--probe-settle",
        type=float,
        default=1.5,
        include_in_web_ui=False,
        help="seconds between stopping the users and quitting (lets the CSV writer finish)",
    )


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]


def emit(seq: int, event: str, value: object) -> None:
    print(f"{MARKER} {seq} {event} {value}", flush=True)


def process_cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


# --- every load-generating process (local runner or worker) ---------------------------------


class Generator:
    """Runs the probes' windows in one Locust process and reports each one."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.early_end: dict[int, float] = {}

    def index_and_count(self) -> tuple[int, int]:
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            return runner.worker_index, max(1, int(getattr(runner, "worker_count", 1) or 1))
        return 0, 1

    def send(self, name: str, data: dict[str, Any]) -> None:
        self.environment.runner.send_message(name, data)  # type: ignore[union-attr]

    def on_pause(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        PACER.pause()
        pause = ProbeCommand.from_dict(msg.data)
        gevent.spawn(self.report_idle, pause.seq, pause.drain_s)

    def report_idle(self, seq: int, drain_s: float) -> None:
        deadline = time.perf_counter() + drain_s
        while not PACER.idle and time.perf_counter() < deadline:
            gevent.sleep(POLL_S)
        index, _ = self.index_and_count()
        self.send(IDLE_MESSAGE, ProcessIdle(seq, index, PACER.idle).to_dict())

    def on_config(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        probe = ScheduledProbe.from_dict(msg.data)
        command = probe.command
        index, count = self.index_and_count()
        count = probe.processes or count
        rate = command.rate if command.mode == "open" else None
        share = None if rate is None else rate / count
        phase = 0.0 if rate is None else index / rate
        PACER.configure(
            share,
            command.arrival if command.arrival in ARRIVALS else DEFAULT_ARRIVAL,
            phase=phase,
            seed=command.seq * 1009 + index,
            late_s=command.late_s or LATE_S,
        )
        gevent.spawn(self.run_window, probe, index)

    def on_end(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        end = WindowEnd.from_dict(msg.data)
        self.early_end[end.seq] = end.at

    def run_window(self, probe: ScheduledProbe, index: int) -> None:
        seq = probe.command.seq
        offset = time.time() - time.perf_counter()
        start, end = probe.start_at - offset, probe.end_at - offset
        window = PACER.open_window(start, end)
        gevent.sleep(max(0.0, start - time.perf_counter()))
        cpu0 = process_cpu_seconds()
        while time.perf_counter() < window.end:
            if seq in self.early_end:
                window.end = min(window.end, self.early_end.pop(seq) - offset)
            gevent.sleep(min(POLL_S, max(0.0, window.end - time.perf_counter())))
        cpu1 = process_cpu_seconds()
        deadline = probe.deadline_at - offset
        while not PACER.drained(window) and time.perf_counter() < deadline:
            gevent.sleep(POLL_S)
        closed = PACER.close_window() or window
        result = process_result(probe, index, closed, cpu1 - cpu0)
        self.send(RESULT_MESSAGE, result.to_dict())


def process_result(
    probe: ScheduledProbe, index: int, window: PacerWindow, cpu_seconds: float
) -> ProbeResult:
    """One process's part of a probe: its window's counts, histograms and CPU."""
    command = probe.command
    duration = window.end - window.start
    cpu_seconds = max(0.0, cpu_seconds)
    return ProbeResult(
        seq=command.seq,
        mode="open" if command.mode == "open" else "closed",
        rate=command.rate if command.mode == "open" else None,
        users=command.users,
        start=probe.start_at,
        end=probe.start_at + duration,
        duration_s=duration,
        scheduled=window.scheduled,
        dispatched=window.dispatched,
        free_dispatches=window.free_dispatches,
        late=window.late,
        pool_waits=window.pool_waits,
        successes=window.successes,
        failures=window.failures,
        timeouts=window.timeouts,
        unsent=window.unsent,
        in_flight=window.in_flight,
        served=window.served,
        connects=window.connects,
        late_fraction=window.late_fraction,
        latency_hdr=_encoded(window.latency),
        halves_hdr=(_encoded(window.halves[0]), _encoded(window.halves[1])),
        loadgen_cpu_seconds=cpu_seconds,
        processes_expected=1,
        processes=(
            ProcessLoad(
                index=index,
                pid=os.getpid(),
                cpu_seconds=round(cpu_seconds, 4),
                cpu_percent=round(100.0 * cpu_seconds / duration, 2) if duration > 0 else None,
                late_fraction=round(window.late_fraction, 5),
            ),
        ),
    )


# --- the controller (local runner or master) ------------------------------------------------


def _encoded(hist: HdrHistogram) -> str:
    return hist.encode().decode("ascii") if hist.get_total_count() else ""


def _decoded(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text) if text else histogram()


def merge(command: ProbeCommand, start: float, end: float, parts: list[ProbeResult]) -> ProbeResult:
    """The probe's result: every process's part added up (histograms merged)."""
    latency = histogram()
    halves = (histogram(), histogram())
    for part in parts:
        latency.add(_decoded(part.latency_hdr))
        for half, text in zip(halves, part.halves_hdr, strict=True):
            half.add(_decoded(text))
    totals = {key: sum(int(getattr(p, key)) for p in parts) for key in ProbeResult.COUNTS}
    duration = max((p.duration_s for p in parts), default=end - start)
    processes = tuple(
        sorted((load for p in parts for load in p.processes), key=lambda load: load.index)
    )
    return ProbeResult(
        seq=command.seq,
        mode="open" if command.mode == "open" else "closed",
        rate=command.rate if command.mode == "open" else None,
        users=command.users,
        start=start,
        end=start + duration,
        duration_s=duration,
        **totals,
        late_fraction=totals["late"] / totals["free_dispatches"]
        if totals["free_dispatches"]
        else 0.0,
        latency_hdr=_encoded(latency),
        halves_hdr=(_encoded(halves[0]), _encoded(halves[1])),
        loadgen_cpu_seconds=round(sum(p.loadgen_cpu_seconds for p in parts), 4),
        processes_expected=0,
        processes=processes,
    )


class Controller:
    """Reads the driver's commands and runs one probe after another."""

    def __init__(self, environment: Environment, control: Path, out: Path, settle: float) -> None:
        self.environment = environment
        self.control = control
        self.out = out
        self.settle = settle
        self.results: dict[int, list[ProbeResult]] = {}
        self.idle: dict[int, int] = {}
        self.started = False

    def on_result(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        part = ProbeResult.from_dict(msg.data)
        self.results.setdefault(part.seq, []).append(part)

    def on_idle(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        seq = ProcessIdle.from_dict(msg.data).seq
        self.idle[seq] = self.idle.get(seq, 0) + 1

    def start(self, **_kw: Any) -> None:
        if not self.started:
            self.started = True
            gevent.spawn(self.run)

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.control.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def run(self) -> None:
        last = 0
        while True:
            command = self.read()
            if command is not None and command.get("quit"):
                self.quit()
                return
            if command is not None and int(command.get("seq", 0)) > last:
                last = int(command["seq"])
                probe = ProbeCommand.from_dict(command)
                if probe.mode == "pause":
                    self.pause(probe)
                    emit(probe.seq, "done", "paused")
                else:
                    self.probe(probe)
            gevent.sleep(POLL_S)

    def processes(self) -> int:
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            return max(1, runner.worker_count)
        return 1

    def pause(self, command: ProbeCommand) -> None:
        """Stop sending and let what is in flight end (answered or timed out)."""
        runner = self.environment.runner
        assert runner is not None
        seq = command.seq
        runner.send_message(PAUSE_MESSAGE, replace(command, mode="pause").to_dict())
        give_up = time.time() + command.drain_s + DRAIN_MARGIN_S
        while self.idle.get(seq, 0) < self.processes() and time.time() < give_up:
            gevent.sleep(POLL_S)
        self.idle.pop(seq, None)

    def probe(self, command: ProbeCommand) -> None:
        runner = self.environment.runner
        assert runner is not None
        seq = command.seq
        processes = self.processes()
        # No backlog of the previous probe in this one.
        self.pause(command)
        users = max(1, command.users)
        if runner.target_user_count != users:
            # Users start and stop at this rate: all at once, before the warm-up ends.
            runner.start(users, spawn_rate=SPAWN_RATE)
        now = time.time()
        start = now + command.warmup_s
        end = start + command.duration_s
        deadline = end + command.drain_s + DRAIN_MARGIN_S
        scheduled = ScheduledProbe(command, start, end, deadline, processes)
        runner.send_message(CONFIG_MESSAGE, scheduled.to_dict())
        gevent.sleep(max(0.0, start - time.time()))
        if command.reset_stats:
            runner.stats.reset_all()
        emit(seq, "start", f"{time.time():.6f}")
        while time.time() < end:
            if command.max_requests and runner.stats.total.num_requests >= command.max_requests:
                end = time.time()
                runner.send_message(END_MESSAGE, WindowEnd(seq, end).to_dict())
                break
            gevent.sleep(min(POLL_S, max(0.0, end - time.time())))
        emit(seq, "end", f"{time.time():.6f}")
        # No new request after the window (the next probe starts from a pause anyway):
        # Locust's own statistics then cover the window and the requests in flight at
        # its start, nothing after it.
        runner.send_message(PAUSE_MESSAGE, replace(command, mode="pause").to_dict())
        give_up = deadline + 5.0
        while len(self.results.get(seq, [])) < processes and time.time() < give_up:
            gevent.sleep(POLL_S)
        self.idle.pop(seq, None)
        merged = merge(command, start, end, self.results.pop(seq, []))
        path = self.out / f"probe-{seq}.json"
        replace(merged, processes_expected=processes).write(path)
        emit(seq, "done", path)

    def quit(self) -> None:
        runner = self.environment.runner
        assert runner is not None
        PACER.stop()
        runner.stop()
        gevent.sleep(self.settle)
        runner.quit()


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    control = str(getattr(options, "probe_control", "") or "")
    runner = environment.runner
    # A worker learns of the probes from its master's messages (it has no control file).
    if runner is None or not (control or isinstance(runner, WorkerRunner)):
        return
    if not isinstance(runner, MasterRunner):
        if control:
            PACER.hold()  # no traffic before the first probe says how much
        # (A worker's users send from its start until the first probe pauses them: a
        # worker cannot tell a probing master from a plain one before it hears from it.)
        generator = Generator(environment)
        runner.register_message(PAUSE_MESSAGE, generator.on_pause)
        runner.register_message(CONFIG_MESSAGE, generator.on_config)
        runner.register_message(END_MESSAGE, generator.on_end)
    if not isinstance(runner, WorkerRunner):
        locust_stats.CSV_STATS_INTERVAL_SEC = CSV_INTERVAL_S  # type: ignore[assignment]
        controller = Controller(
            environment,
            Path(control),
            Path(str(getattr(options, "probe_out", "") or Path(control).parent)),
            float(getattr(options, "probe_settle", 1.5)),
        )
        runner.register_message(RESULT_MESSAGE, controller.on_result)
        runner.register_message(IDLE_MESSAGE, controller.on_idle)
        environment.events.test_start.add_listener(controller.start)  # type: ignore[no-untyped-call]


events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
