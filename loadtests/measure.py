"""A measured window for headless runs: the Locust side of ``runners.bench``.

Load it next to the locustfile and give it a duration::

    locust -f loadtests/locustfile.py,loadtests/measure.py --headless -u 32 -r 32 \\
        --measure-warmup 5 --measure-duration 20 --measure-out window.json ...

Without ``--measure-duration`` it does nothing. With it, once every user has
spawned (``spawning_complete``) it

1. lets the warm-up pass (traffic is served, not measured);
2. resets Locust's statistics (``stats.reset_all()``), so the final CSV and
   HTML report hold the measured window only, and prints
   ``@@bench-window start <unix time>`` on stdout: the driver starts sampling
   the server's memory and CPU on that line;
3. after the duration (or, with ``--measure-requests N``, as soon as N
   requests were counted in the window, the duration being the cap) stops
   every user (``runner.stop()``), prints
   ``@@bench-window end <unix time>`` and writes the window (precise
   monotonic duration, request and failure counts, the load generator's own
   CPU seconds) to ``--measure-out``;
4. waits ``--measure-settle`` seconds, long enough for Locust's CSV writer
   (which rewrites ``*_stats.csv`` every second) to write the final figures,
   then quits; Locust then writes its HTML report and exits.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import gevent
import psutil
from locust import events
from locust.env import Environment

# Loaded by path (``locust -f ...,loadtests/measure.py``): the window record is
# imported from the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from loadtests.window import Window  # noqa: E402

MARKER = "@@bench-window"


def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--measure-warmup",
        type=float,
        include_in_web_ui=False,
        default=0.0,
        help="seconds of traffic after spawning completes that are not measured",
    )
    parser.add_argument(
        "--measure-duration",
        type=float,
        include_in_web_ui=False,
        default=0.0,
        help="length of the measured window in seconds (0, the default, disables the window)",
    )
    parser.add_argument(
        "--measure-requests",
        type=int,
        include_in_web_ui=False,
        default=0,
        help="end the window as soon as this many requests were counted in it "
        "(0: at the duration only; the duration stays the upper bound)",
    )
    parser.add_argument(
        "--measure-out",
        default="",
        include_in_web_ui=False,
        help="JSON file the measured window is written to",
    )
    parser.add_argument(
        "--measure-settle",
        type=float,
        include_in_web_ui=False,
        default=1.5,
        help="seconds between the end of the window and quitting (lets the CSV writer finish)",
    )


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]


def tree_cpu_seconds() -> tuple[float, int]:
    """CPU seconds (user + system) of this process and its children, and their count."""
    me = psutil.Process()
    total = 0.0
    count = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
        count += 1
    return total, count


def emit(event: str, at: float) -> None:
    print(f"{MARKER} {event} {at:.6f}", flush=True)


class MeasuredWindow:
    """Warm-up, reset, measure, stop, quit: one per Locust process."""

    def __init__(
        self,
        environment: Environment,
        warmup: float,
        duration: float,
        out: str,
        settle: float,
        requests: int = 0,
    ) -> None:
        self.environment = environment
        self.warmup = warmup
        self.duration = duration
        self.requests = requests
        self.out = Path(out) if out else None
        self.settle = settle
        self.started = False

    def on_spawning_complete(self, user_count: int) -> None:
        if self.started:
            return
        self.started = True
        gevent.spawn(self.run, user_count, time.time())

    def run(self, users: int, spawned_at: float) -> None:
        runner = self.environment.runner
        assert runner is not None
        gevent.sleep(self.warmup)

        runner.stats.reset_all()
        t0 = time.monotonic()
        start = time.time()
        cpu0, _ = tree_cpu_seconds()
        emit("start", start)

        if self.requests > 0:
            # A request target (soak runs): poll the count, the duration stays the cap.
            while time.monotonic() - t0 < self.duration:
                if runner.stats.total.num_requests >= self.requests:
                    break
                gevent.sleep(min(0.05, max(0.0, self.duration - (time.monotonic() - t0))))
        else:
            gevent.sleep(max(0.0, self.duration - (time.monotonic() - t0)))
        runner.stop()
        duration = time.monotonic() - t0
        end = time.time()
        cpu1, processes = tree_cpu_seconds()
        total = runner.stats.total
        window = Window(
            warmup_s=self.warmup,
            users=users,
            spawn_complete_at=spawned_at,
            start=start,
            end=end,
            duration_s=duration,
            requests=total.num_requests,
            failures=total.num_failures,
            loadgen_cpu_seconds=max(0.0, cpu1 - cpu0),
            loadgen_processes=processes,
        )
        if self.out is not None:
            window.write(self.out)
        emit("end", end)

        gevent.sleep(self.settle)
        runner.quit()


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    duration = float(getattr(options, "measure_duration", 0.0) or 0.0)
    if options is None or duration <= 0:
        return
    window = MeasuredWindow(
        environment,
        warmup=float(options.measure_warmup),
        duration=duration,
        out=str(options.measure_out),
        settle=float(options.measure_settle),
        requests=int(getattr(options, "measure_requests", 0) or 0),
    )
    environment.events.spawning_complete.add_listener(window.on_spawning_complete)  # type: ignore[no-untyped-call]


events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
