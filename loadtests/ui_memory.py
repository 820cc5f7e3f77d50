"""The server's memory, live, in Locust's web UI: a Locust plugin file.

Load it next to the locustfile and give it the server's root PID::

    locust -f loadtests/locustfile.py,loadtests/ui_memory.py --host http://127.0.0.1:8000 \\
        --class-picker --server-pid 12345 --server-name gunicorn-sync-freeze

(``python -m runners.cli.ui RUNNER`` does exactly that.) Without ``--server-pid``
it does nothing. With it, on the process that serves the web UI (standalone,
or the master in distributed mode; never on a worker):

- a greenlet samples the server's process tree every ``--server-sample-interval``
  seconds (2 by default) with ``runners.sampling.memory.sample_tree`` and keeps the last
  150 samples;
- a Flask blueprint adds ``GET /memory`` (JSON: the latest sample's summed
  PSS, USS and RSS, every process with its shared and private memory, the
  server's CPU use since the previous sample, Locust's current request rate,
  requests per second per GiB of PSS, and the history), ``GET /memory/`` (a
  self-contained page with live charts of that history, ``ui_memory.html``
  next to this file, Chart.js served from ``runners/report/static``), and
  ``GET /memory/csv`` (the history);
- Locust's extension points for its React UI add a "Server memory" tab
  (``extended_tabs`` / ``extended_tables`` in ``web_ui.template_args``; its
  rows ride on ``/stats/requests`` as ``extended_stats``, which the UI polls
  every 2 s while a test runs) and, under "Download Data", links to the chart
  page and the CSV (``extended_csv_files``).

Units: bytes in the JSON, MiB in the tab; ``cpu_percent`` is percent of one
core (200 = two cores busy); ``rps`` is Locust's current total rate while
users run (0 otherwise, so no stale rate per GiB); per GiB uses ``2**30``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from flask import Blueprint, Response, jsonify, make_response, request
from locust import events
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from runners.results.figures import per_gib  # noqa: E402
from runners.sampling.memory import TreeSample, sample_tree  # noqa: E402

TAB_KEY = "server-memory"
HISTORY_POINTS = 150
TREND_POINTS = 30
MIB = 2**20
CHART_JS = _REPO_ROOT / "runners" / "report" / "static" / "chart.umd.min.js"
PAGE = Path(__file__).with_name("ui_memory.html")
"""The chart page (``GET /memory/``); ``__TITLE__`` stands for the server's name."""
SPARKS = "▁▂▃▄▅▆▇█"

TABLE_STRUCTURE: list[dict[str, str]] = [
    {"key": "name", "title": "Process"},
    {"key": "pid", "title": "PID"},
    {"key": "pss", "title": "PSS"},
    {"key": "private", "title": "Private (USS)"},
    {"key": "shared", "title": "Shared"},
    {"key": "rss", "title": "RSS"},
    {"key": "shared_pct", "title": "Shared / RSS"},
    {"key": "cpu", "title": "CPU (100% = 1 core)"},
    {"key": "rps", "title": "Req/s"},
    {"key": "rps_per_gib", "title": "Req/s per GiB PSS"},
    {"key": "trend", "title": f"PSS, last {TREND_POINTS} samples"},
]


def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--server-pid",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="root PID of the server's process tree to sample (0, the default: off)",
    )
    parser.add_argument(
        "--server-name",
        default="",
        include_in_web_ui=False,
        help="what to call the server in the memory tab (e.g. the runner's name)",
    )
    parser.add_argument(
        "--server-processes",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="processes the server should have (master + workers), shown next to the count",
    )
    parser.add_argument(
        "--server-sample-interval",
        type=float,
        default=2.0,
        include_in_web_ui=False,
        help="seconds between two samples of the server's memory (default 2)",
    )


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]


# --- the samples -------------------------------------------------------------------------------


@dataclass
class Monitor:
    """What the sampling greenlet has seen of the server so far."""

    pid: int
    name: str = ""
    expected: int = 0
    interval: float = 2.0
    t0: float = field(default_factory=time.monotonic)
    cpus: int | None = None
    latest: TreeSample | None = None
    previous: TreeSample | None = None
    latest_at: float = 0.0
    sample_ms: float = 0.0
    error: str | None = None
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    trends: dict[int, deque[int]] = field(default_factory=dict)
    total_trend: deque[int] = field(default_factory=lambda: deque(maxlen=TREND_POINTS))


def cpu_percent(previous: TreeSample | None, latest: TreeSample) -> float | None:
    """The tree's CPU use between two samples, percent of one core."""
    if previous is None or latest.t <= previous.t:
        return None
    used = latest.cpu_seconds - previous.cpu_seconds
    return max(0.0, 100.0 * used / (latest.t - previous.t))


def _process_cpu(previous: TreeSample | None, latest: TreeSample) -> dict[int, float]:
    if previous is None or latest.t <= previous.t:
        return {}
    before = {p.pid: p.cpu_seconds for p in previous.processes}
    span = latest.t - previous.t
    return {
        p.pid: max(0.0, 100.0 * (p.cpu_seconds - before[p.pid]) / span)
        for p in latest.processes
        if p.pid in before
    }


def record(monitor: Monitor, sample: TreeSample, rps: float, when: float) -> None:
    """Keep ``sample`` as the latest and append a point to the history."""
    monitor.previous, monitor.latest = monitor.latest, sample
    monitor.latest_at = when
    monitor.error = None
    monitor.history.append(
        {
            "t": round(sample.t, 3),
            "time": round(when, 3),
            "pss": sample.pss,
            "uss": sample.uss,
            "rss": sample.rss,
            "shared": sample.shared,
            "processes": len(sample.server_processes),
            "cpu_percent": _round(cpu_percent(monitor.previous, sample), 1),
            "rps": round(rps, 2),
            "rps_per_gib": _round(per_gib(rps, sample.pss), 1),
        }
    )
    live = {p.pid for p in sample.processes}
    for pid in list(monitor.trends):
        if pid not in live:
            del monitor.trends[pid]
    for p in sample.processes:
        monitor.trends.setdefault(p.pid, deque(maxlen=TREND_POINTS)).append(p.pss)
    monitor.total_trend.append(sample.pss)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def report(monitor: Monitor, rps: float, state: str, users: int) -> dict[str, Any]:
    """The ``/memory`` JSON: the latest sample, the live rate and the history."""
    latest = monitor.latest
    base: dict[str, Any] = {
        "server_pid": monitor.pid,
        "server_name": monitor.name,
        "expected_processes": monitor.expected or None,
        "cpus": monitor.cpus,
        "interval_s": monitor.interval,
        "error": monitor.error,
        "locust_state": state,
        "user_count": users,
        "rps": round(rps, 2),
        "now": round(time.time(), 3),
    }
    if latest is None:
        return {**base, "sampled_at": None, "processes": [], "history": []}
    per_process_cpu = _process_cpu(monitor.previous, latest)
    processes = [
        {
            "pid": p.pid,
            "role": p.role,
            "helper": p.helper,
            "rss": p.rss,
            "pss": p.pss,
            "uss": p.uss,
            "shared": p.shared,
            "private": p.uss,
            "cpu_seconds": round(p.cpu_seconds, 3),
            "cpu_percent": _round(per_process_cpu.get(p.pid), 1),
        }
        for p in latest.processes
    ]
    return {
        **base,
        "t": round(latest.t, 3),
        "sampled_at": round(monitor.latest_at, 3),
        "sample_ms": round(monitor.sample_ms, 2),
        "pss": latest.pss,
        "uss": latest.uss,
        "rss": latest.rss,
        "shared": latest.shared,
        "private": latest.uss,
        "process_count": len(latest.server_processes),
        "helper_count": len(latest.processes) - len(latest.server_processes),
        "workers": len(latest.workers),
        "cpu_seconds": round(latest.cpu_seconds, 3),
        "cpu_percent": _round(cpu_percent(monitor.previous, latest), 1),
        "rps_per_gib": _round(per_gib(rps, latest.pss), 1),
        "processes": processes,
        "history": list(monitor.history),
    }


# --- the tab in Locust's UI --------------------------------------------------------------------


def sparkline(values: Sequence[int]) -> str:
    """A text chart of ``values``, from their minimum up; its height spans at least 5%
    of the largest value, so that small noise stays small."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = max(high - low, 0.05 * high, 1)
    top = len(SPARKS) - 1
    return "".join(SPARKS[min(top, round((v - low) / span * top))] for v in values)


def _mib(value: int) -> str:
    return f"{value / MIB:,.1f} MiB"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}%"


def table_rows(monitor: Monitor, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The tab's rows: the whole tree first, then each process (rows sort by name)."""
    if not data.get("processes"):
        message = data.get("error") or "waiting for the first sample"
        return [{"name": f"no sample yet: {message}"}]
    count = data["process_count"]
    expected = data["expected_processes"]
    counted = f"{count} of {expected}" if expected and expected != count else str(count)
    cpus = data["cpus"]
    rps_per_gib = data["rps_per_gib"]
    rows: list[dict[str, Any]] = [
        {
            "name": f"all ({counted} processes)",
            "pid": str(data["server_pid"]),
            "pss": _mib(data["pss"]),
            "private": _mib(data["uss"]),
            "shared": _mib(data["shared"]),
            "rss": _mib(data["rss"]),
            "shared_pct": _percent(100.0 * data["shared"] / data["rss"] if data["rss"] else None),
            "cpu": _percent(data["cpu_percent"])
            + (f" of {cpus} CPU{'s' if cpus != 1 else ''}" if cpus else ""),
            "rps": f"{data['rps']:,.1f}",
            "rps_per_gib": "" if rps_per_gib is None else f"{rps_per_gib:,.0f}",
            "trend": sparkline(list(monitor.total_trend)),
        }
    ]
    workers = [p for p in data["processes"] if p["role"] == "worker" and not p["helper"]]
    width = len(str(len(workers)))
    names = {p["pid"]: f"worker {i:0{width}d}" for i, p in enumerate(workers, start=1)}
    for p in data["processes"]:
        name = names.get(p["pid"]) or ("helper" if p["helper"] else "master")
        rows.append(
            {
                "name": name,
                "pid": str(p["pid"]),
                "pss": _mib(p["pss"]),
                "private": _mib(p["uss"]),
                "shared": _mib(p["shared"]),
                "rss": _mib(p["rss"]),
                "shared_pct": _percent(100.0 * p["shared"] / p["rss"] if p["rss"] else None),
                "cpu": _percent(p["cpu_percent"]),
                "rps": "",
                "rps_per_gib": "",
                "trend": sparkline(list(monitor.trends.get(p["pid"], ()))),
            }
        )
    return rows


def history_csv(monitor: Monitor) -> str:
    out = io.StringIO()
    columns = ["time", "t", "processes", "pss", "uss", "rss", "shared", "cpu_percent", "rps"]
    writer = csv.DictWriter(out, fieldnames=[*columns, "rps_per_gib"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(monitor.history)
    return out.getvalue()


# --- wiring into Locust ------------------------------------------------------------------------


def current_rps(environment: Environment) -> tuple[float, str, int]:
    """Locust's current total rate (0 unless users are running), its state and user count."""
    runner = environment.runner
    if runner is None:
        return 0.0, "missing", 0
    state = str(runner.state)
    rps = float(runner.stats.total.current_rps or 0.0)
    return (rps if state in (STATE_SPAWNING, STATE_RUNNING) else 0.0), state, runner.user_count


def sample_forever(monitor: Monitor, environment: Environment) -> None:
    """The sampling greenlet: one sample every ``monitor.interval`` seconds."""
    while True:
        began = time.monotonic()
        cpu_before = time.thread_time()
        try:
            sample = sample_tree(monitor.pid, monitor.t0)
        except ProcessLookupError:
            monitor.error = f"server process {monitor.pid} is gone"
        except (OSError, ValueError) as exc:  # keep sampling: the next round may work
            monitor.error = f"sampling failed: {exc}"
        else:
            record(monitor, sample, current_rps(environment)[0], time.time())
        monitor.sample_ms = 1000.0 * (time.thread_time() - cpu_before)
        gevent.sleep(max(0.1, monitor.interval - (time.monotonic() - began)))


def _chart_js() -> Response:
    try:
        text = CHART_JS.read_text(encoding="utf-8")
    except OSError:
        return make_response("Chart.js is not in runners/report/static", 404)
    lines = text.rstrip().splitlines()
    if lines and lines[-1].startswith("//# sourceMappingURL="):
        lines.pop()
    response = make_response("\n".join(lines) + "\n")
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "max-age=3600"
    return response


def make_blueprint(
    monitor: Monitor,
    environment: Environment,
    url_prefix: str,
    protect: Callable[[Callable[[], Response]], Callable[[], Response]],
) -> Blueprint:
    blueprint = Blueprint("server_memory", __name__, url_prefix=url_prefix or None)

    def memory_json() -> Response:
        rps, state, users = current_rps(environment)
        return jsonify(report(monitor, rps, state, users))

    page = PAGE.read_text(encoding="utf-8").replace("__TITLE__", _page_title(monitor))

    def memory_page() -> Response:
        response = make_response(page)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        return response

    def memory_csv() -> Response:
        response = make_response(history_csv(monitor))
        response.headers["Content-Type"] = "text/csv; charset=utf-8"
        response.headers["Content-Disposition"] = "attachment; filename=server_memory.csv"
        return response

    blueprint.add_url_rule("/memory", "memory", protect(memory_json))
    blueprint.add_url_rule("/memory/", "memory_page", protect(memory_page))
    blueprint.add_url_rule("/memory/csv", "memory_csv", protect(memory_csv))
    blueprint.add_url_rule("/memory/chart.js", "chart_js", _chart_js)
    return blueprint


def _page_title(monitor: Monitor) -> str:
    name = html.escape(monitor.name) if monitor.name else f"pid {monitor.pid}"
    return f"Server memory: {name}"


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    pid = int(getattr(options, "server_pid", 0) or 0)
    web_ui = environment.web_ui
    if options is None or pid <= 0 or web_ui is None or web_ui.app is None:
        return  # off, or a worker (only the master/standalone process has the web UI)
    app = web_ui.app
    try:
        cpus: int | None = len(os.sched_getaffinity(pid))
    except OSError:
        cpus = None
    monitor = Monitor(
        pid=pid,
        name=str(options.server_name or ""),
        expected=int(options.server_processes or 0),
        interval=max(0.2, float(options.server_sample_interval)),
        cpus=cpus,
    )
    base = str(getattr(options, "web_base_path", "") or "").rstrip("/")
    app.register_blueprint(
        make_blueprint(monitor, environment, base, web_ui.auth_required_if_enabled)
    )

    def add_extended_stats(response: Response) -> Response:
        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        body = response.get_json(silent=True)
        if isinstance(body, dict):
            rps, state, users = current_rps(environment)
            rows = table_rows(monitor, report(monitor, rps, state, users))
            body["extended_stats"] = [{"key": TAB_KEY, "data": rows}]
            response.set_data(json.dumps(body))
        return response

    app.after_request(add_extended_stats)
    title = f"Server memory: {monitor.name}" if monitor.name else "Server memory"
    web_ui.template_args["extended_tabs"] = [{"title": title, "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": TABLE_STRUCTURE}]
    web_ui.template_args["extended_csv_files"] = [
        {"href": f"{base}/memory/", "title": "Server memory: live charts (opens the page)"},
        {"href": f"{base}/memory/csv", "title": "Download server memory history CSV"},
    ]
    gevent.spawn(sample_forever, monitor, environment)


events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
