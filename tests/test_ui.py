"""``python -m runners.cli.ui`` (``tox -e ui``): one runner, Locust's web UI, the memory tab.

The real tests start the entry point as a subprocess, wait for Locust's UI,
start a swarm through Locust's HTTP API (``POST /swarm``), read the memory
endpoint the plugin adds (``GET /memory``) and the tab's rows (riding on
``GET /stats/requests``), stop the swarm, send SIGINT as Ctrl-C would, and
check that no process of the server, the upstream or Locust is left.
Locust is never imported here (it gevent-patches the interpreter).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from runners import REPO_ROOT
from runners.cli import ui, ui_options
from runners.serving.commands import Settings, command
from runners.serving.cpus import Placement
from runners.serving.net import free_port, http_get, url
from runners.serving.registry import get_runner
from runners.serving.server import RunningServer, ServeConfig
from tests.servers import assert_no_processes, sqlite_env, wait_until

SMALL_SEED = "users=20,follows=3,posts=100,likes=100,comments=50"
"""The sizes ``tests.servers.prepared_data_dir`` seeds: ``prepare`` has nothing to do."""
GIB = 2**30


# --- the options ------------------------------------------------------------------------------


def test_unknown_names_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, word in (
        (["nope"], "unknown runner 'nope'"),
        (["gunicorn-sync", "--workload", "nope"], "unknown workload 'nope'"),
        ([], "a runner name is required"),
        (["gunicorn-sync", "--processes", "0"], "--processes"),
        (["gunicorn-sync", "--bogus"], "unrecognized arguments: --bogus"),
    ):
        assert ui.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert word in err


def test_the_entry_point_rejects_an_unknown_runner_before_starting_anything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runners.cli.ui", "no-such-runner"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "python -m runners.cli.ui: error: unknown runner 'no-such-runner'"
    )
    assert len(result.stderr.splitlines()) == 1


def test_list_shows_runners_and_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    assert ui.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "gunicorn-sync-freeze" in out
    assert "uvicorn" in out
    assert "JsonUser" in out
    assert "MixedUser" in out


def _options(*argv: str) -> ui_options.UiOptions:
    options = ui_options.parse_options(["gunicorn-sync", *argv])
    assert options is not None
    return options


def _fake_server() -> RunningServer:
    runner = get_runner("gunicorn-sync")
    return RunningServer(
        config=ServeConfig(runner=runner, log_path=Path("/dev/null")),
        url="http://127.0.0.1:8123",
        port=8123,
        pid=4242,
        workers=2,
        threads=None,
        variant="sync",
        gc="default",
        command=command(runner, Settings("127.0.0.1", 8123, 2, None)),
    )


def test_locust_command_points_the_ui_and_the_plugin_at_the_server() -> None:
    options = _options("--workload", "json", "--processes", "2", "--", "--tags", "json")
    argv = ui.locust_command(options, _fake_server())
    assert argv[:3] == [options.python, "-m", "locust"]
    files = argv[argv.index("-f") + 1].split(",")
    assert [Path(f).name for f in files] == ["locustfile.py", "ui_memory.py"]

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert value("--host") == "http://127.0.0.1:8123"
    assert value("--web-host") == "127.0.0.1"
    assert value("--web-port") == "8089"
    assert value("--variant") == "sync"
    assert value("--server-pid") == "4242"
    assert value("--server-name") == "gunicorn-sync"
    assert value("--server-processes") == "3"
    assert value("--processes") == "2"
    assert "JsonUser" in argv
    assert "--class-picker" not in argv
    # Locust's own options come last, unchanged (a class name after --tags would be a tag).
    assert argv[-2:] == ["--tags", "json"]
    assert argv.index("JsonUser") < argv.index("--tags")
    assert not options.needs_upstream


def test_without_a_workload_the_class_picker_is_on_and_the_upstream_runs() -> None:
    options = _options("--web-host", "0.0.0.0", "--web-port", "9999", "--seed", "users=50,posts=70")
    argv = ui.locust_command(options, _fake_server())
    assert "--class-picker" in argv
    assert not any(arg.endswith("User") for arg in argv)
    assert argv[argv.index("--web-host") + 1] == "0.0.0.0"
    assert argv[argv.index("--max-user-id") + 1] == "50"
    assert argv[argv.index("--max-post-id") + 1] == "70"
    assert options.needs_upstream
    assert _options("--workload", "mixed").needs_upstream
    assert url("0.0.0.0", 9999) == "http://127.0.0.1:9999"


def test_cpu_placement_is_passed_through() -> None:
    options = _options("--server-cpus", "0", "--loadgen-cpus", "0")
    assert options.placement == Placement(server=(0,), loadgen=(0,))


PLUGIN_SCRIPT = """
import json
from loadtests.ui_memory import Monitor, record, report, sparkline, table_rows
from runners.sampling.memory import ProcessMemory, TreeSample

MIB = 2**20

def sample(t, cpu):
    return TreeSample(t=t, processes=(
        ProcessMemory(10, "master", 40 * MIB, 20 * MIB, 10 * MIB, cpu[0]),
        ProcessMemory(11, "master", 8 * MIB, 4 * MIB, 2 * MIB, 0.1, helper=True),
        ProcessMemory(12, "worker", 60 * MIB, 30 * MIB, 25 * MIB, cpu[1]),
        ProcessMemory(13, "worker", 60 * MIB, 30 * MIB, 25 * MIB, cpu[2]),
    ))

monitor = Monitor(pid=10, name="demo", expected=3, cpus=2)
record(monitor, sample(0.0, (1.0, 2.0, 2.0)), 0.0, 1000.0)
record(monitor, sample(2.0, (1.0, 3.0, 3.5)), 512.0, 1002.0)
data = report(monitor, 512.0, "running", 8)
print(json.dumps({
    "report": data,
    "rows": table_rows(monitor, data),
    "flat": sparkline([100, 101, 100]),
    "ramp": sparkline([0, 50, 100]),
}))
"""


def test_plugin_figures_and_rows() -> None:
    """The plugin's arithmetic on made-up samples (in a subprocess: it imports Locust)."""
    result = subprocess.run(
        [sys.executable, "-c", PLUGIN_SCRIPT],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(result.stdout)
    data, rows = out["report"], out["rows"]
    mib = 2**20
    assert data["pss"] == 84 * mib
    assert data["uss"] == 62 * mib
    assert data["rss"] == 168 * mib
    assert data["process_count"] == 3
    assert data["helper_count"] == 1
    assert data["workers"] == 2
    assert data["cpu_percent"] == pytest.approx(125.0)  # 2.5 CPU seconds in 2 s
    assert data["rps_per_gib"] == pytest.approx(512 / (84 / 1024), rel=1e-3)
    assert [p["cpu_percent"] for p in data["processes"]] == [0.0, 0.0, 50.0, 75.0]
    assert len(data["history"]) == 2
    assert data["history"][-1]["rps"] == 512.0
    assert [row["name"] for row in rows] == [
        "all (3 processes)",
        "master",
        "helper",
        "worker 1",
        "worker 2",
    ]
    # Locust's table sorts rows by name: the whole tree comes first.
    assert min(row["name"] for row in rows) == "all (3 processes)"
    assert rows[0]["pss"] == "84.0 MiB"
    assert rows[0]["cpu"] == "125% of 2 CPUs"
    assert rows[0]["shared_pct"] == "63%"
    assert rows[3]["private"] == "25.0 MiB"
    assert rows[3]["shared"] == "35.0 MiB"
    assert rows[3]["cpu"] == "50%"
    assert out["flat"] == "▁▂▁"  # 1% of noise
    assert out["ramp"] == "▁▅█"


# --- a real session ---------------------------------------------------------------------------


@dataclass
class UiSession:
    """A running ``python -m runners.cli.ui`` and the ports it was given."""

    process: subprocess.Popen[str]
    server_port: int
    web_port: int
    log_dir: Path

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get("127.0.0.1", self.web_port, path, timeout=30.0)

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def post_form(self, path: str, fields: list[tuple[str, str]]) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=30.0)
        try:
            conn.request(
                "POST",
                path,
                urllib.parse.urlencode(fields),
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, (path, response.status, body[:300])
        return json.loads(body)

    def tree(self) -> set[int]:
        """The ui process and everything it started (server, upstream, Locust, their children)."""
        return process_tree(self.process.pid)

    def output(self) -> str:
        return (self.log_dir / "ui.out").read_text(errors="replace")

    def wait_for_ui(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"runners.cli.ui exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                status, body = self.get("/")
            except OSError:
                status, body = 0, b""
            if status == 200 and b"templateArgs" in body and "Ctrl-C to stop" in self.output():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"Locust's UI did not come up:\n{self.output()}")
            time.sleep(0.5)

    def swarm(self, users: int, user_classes: tuple[str, ...] = ()) -> None:
        fields = [
            ("user_count", str(users)),
            ("spawn_rate", str(users)),
            ("host", self.server_url),
        ]
        fields += [("user_classes", name) for name in user_classes]
        answer = self.post_form("/swarm", fields)
        assert answer["success"], answer

    def wait_for_load(self, timeout: float = 60.0) -> dict[str, Any]:
        """The first ``/memory`` reading with requests flowing and two samples under load."""
        deadline = time.monotonic() + timeout
        loaded = 0
        while True:
            memory: dict[str, Any] = self.get_json("/memory")
            loaded = sum(1 for point in memory["history"] if point["rps"] > 0)
            if memory["rps"] > 0 and loaded >= 2:
                return memory
            if time.monotonic() > deadline:
                pytest.fail(f"no load seen by /memory: {memory}\n{self.output()}")
            time.sleep(0.5)

    def next_memory(self, before: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """The first ``/memory`` reading with a newer sample than ``before``."""
        deadline = time.monotonic() + timeout
        while True:
            memory: dict[str, Any] = self.get_json("/memory")
            if memory["t"] > before["t"]:
                return memory
            if time.monotonic() > deadline:
                pytest.fail(f"no new sample after {before['t']}: {memory}\n{self.output()}")
            time.sleep(0.2)

    def interrupt(self, timeout: float = 90.0) -> int:
        """Ctrl-C: SIGINT, then wait for the clean-up to finish."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)


def ui_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a session: the small prepared data, a ledger folder of its own."""
    return {
        **os.environ,
        **sqlite_env(),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "BENCH_RUNNING_DIR": str(tmp_path / "running"),
    }


def ui_argv(args: Sequence[str], server_port: int, web_port: int, log_dir: Path) -> list[str]:
    """``python -m runners.cli.ui ARGS`` on the given ports and the small prepared data."""
    return [
        sys.executable,
        "-m",
        "runners.cli.ui",
        *args,
        "--port",
        str(server_port),
        "--web-port",
        str(web_port),
        "--seed",
        SMALL_SEED,
        "--log-dir",
        str(log_dir),
        "--quiet",
    ]


def ledger_entries(tmp_path: Path) -> list[dict[str, Any]]:
    """What the session's ledger lists (``[]`` when there is no ledger)."""
    entries: list[dict[str, Any]] = []
    for path in (tmp_path / "running").glob("*.json"):
        entries += json.loads(path.read_text())["processes"]
    return entries


@contextmanager
def ui_session(tmp_path: Path, *args: str) -> Iterator[UiSession]:
    """``python -m runners.cli.ui ARGS`` on free ports and the small prepared data.

    On exit the session is interrupted (if still running) and nothing it
    started may be left.
    """
    server_port, web_port = free_port(), free_port()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with (log_dir / "ui.out").open("w") as out:
        process = subprocess.Popen(
            ui_argv(args, server_port, web_port, log_dir),
            cwd=REPO_ROOT,
            env=ui_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            text=True,
        )
    with stopped_at_exit(process):
        yield UiSession(process, server_port, web_port, log_dir)


def process_tree(pid: int) -> set[int]:
    """``pid`` and every process under it."""
    return {pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))}


@contextmanager
def stopped_at_exit(process: subprocess.Popen[str]) -> Iterator[None]:
    """On exit, ``process`` interrupted as Ctrl-C would (if it still runs; what it started
    killed if that does not stop it), and nothing it started may be left."""
    seen: set[int] = {process.pid}
    try:
        yield
    finally:
        if process.poll() is None:
            with suppress(psutil.Error):
                seen |= process_tree(process.pid)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                for pid in seen:
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait(timeout=10)
        assert_no_processes(seen)


def cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def check_memory(memory: dict[str, Any], expected_processes: int, workers: int) -> None:
    """Consistent figures: USS <= PSS <= RSS (totals and each process), sums add up."""
    assert memory["error"] is None
    assert memory["expected_processes"] == expected_processes
    assert memory["process_count"] == expected_processes
    assert memory["workers"] == workers
    processes = memory["processes"]
    serving = [p for p in processes if not p["helper"]]
    assert len(serving) == expected_processes
    assert [p["role"] for p in serving].count("master") == expected_processes - workers
    assert 0 < memory["uss"] <= memory["pss"] <= memory["rss"]
    assert memory["shared"] == memory["rss"] - memory["uss"]
    for p in processes:
        assert 0 < p["uss"] <= p["pss"] <= p["rss"], p
        assert p["private"] == p["uss"]
        assert p["shared"] == p["rss"] - p["uss"]
    assert memory["pss"] == sum(p["pss"] for p in processes)
    assert memory["rss"] == sum(p["rss"] for p in processes)
    assert memory["cpu_percent"] is not None and memory["cpu_percent"] > 0
    assert memory["rps"] > 0
    assert memory["rps_per_gib"] == pytest.approx(memory["rps"] / (memory["pss"] / GIB), rel=0.01)
    assert memory["locust_state"] in ("spawning", "running")
    assert 2 <= len(memory["history"]) <= 150


def check_live(before: dict[str, Any], after: dict[str, Any]) -> None:
    """A later reading is a later sample: time moved, CPU was used, the history grew."""
    assert after["t"] > before["t"]
    assert after["sampled_at"] > before["sampled_at"]
    assert after["cpu_seconds"] > before["cpu_seconds"]
    assert len(after["history"]) > len(before["history"]) or len(after["history"]) == 150
    assert after["history"][-1]["t"] == after["t"]


def check_tab(session: UiSession, expected_processes: int, runner: str) -> None:
    """The tab is declared in the page's template args and fed on /stats/requests."""
    status, page = session.get("/")
    assert status == 200
    assert b'"extended_tabs": [{"key": "server-memory", "title": "Server memory: ' in page
    assert runner.encode() in page
    assert b'"href": "/memory/"' in page
    stats = session.get_json("/stats/requests")
    tables = {table["key"]: table["data"] for table in stats["extended_stats"]}
    rows = tables["server-memory"]
    assert rows[0]["name"] == f"all ({expected_processes} processes)"
    assert rows[0]["pss"].endswith(" MiB")
    assert float(rows[0]["rps"].replace(",", "")) > 0
    names = [row["name"] for row in rows[1:]]
    assert sum(1 for name in names if name.startswith("worker ")) >= 1
    assert len(rows) >= expected_processes + 1


def check_pages(session: UiSession) -> None:
    status, html = session.get("/memory/")
    assert status == 200
    assert b'<canvas id="chart-memory">' in html
    assert b"http://" not in html.split(b"<script>")[1]  # nothing fetched from elsewhere
    status, js = session.get("/memory/chart.js")
    if (REPO_ROOT / "runners" / "report" / "static" / "chart.umd.min.js").exists():
        assert status == 200
        assert b"Chart.js" in js[:200]
    status, csv_text = session.get("/memory/csv")
    assert status == 200
    lines = csv_text.decode().splitlines()
    assert lines[0].startswith("time,t,processes,pss,uss,rss,shared,cpu_percent,rps")
    assert len(lines) >= 3


@pytest.mark.servers
@pytest.mark.slow
def test_gunicorn_sync_session(tmp_path: Path) -> None:
    with ui_session(tmp_path, "gunicorn-sync", "--workers", "2", "--workload", "json") as session:
        session.wait_for_ui()
        output = session.output()
        assert f"Locust web UI: {session.web_url}/" in output
        assert "workload: json (JsonUser)" in output
        assert "upstream:" not in output  # json does not need it

        idle = session.get_json("/memory")
        assert idle["locust_state"] == "ready"
        assert idle["rps"] == 0

        session.swarm(4)
        first = session.wait_for_load()
        check_memory(first, expected_processes=3, workers=2)
        pids = session.tree()
        assert {p["pid"] for p in first["processes"]} <= pids
        # Locust is in the ledger of started processes while it runs, with the server.
        listed = {entry["name"]: entry["pid"] for entry in ledger_entries(tmp_path)}
        (locust_pid,) = (pid for pid in pids if " -m locust " in cmdline(pid))
        assert listed == {"gunicorn-sync": first["server_pid"], "locust": locust_pid}
        second = session.next_memory(first)
        check_memory(second, expected_processes=3, workers=2)
        check_live(first, second)
        check_tab(session, 3, "gunicorn-sync")
        check_pages(session)

        assert session.post_form("/stop", [])["success"]
        deadline = time.monotonic() + 30
        while session.get_json("/memory")["locust_state"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert session.get_json("/memory")["rps"] == 0

        pids |= session.tree()
        assert session.interrupt() == 0
        assert "Locust and the server stopped; no process left." in session.output()
        assert_no_processes(pids)
        assert ledger_entries(tmp_path) == []
        assert not list((tmp_path / "running").glob("*.json"))  # the ledger is gone too


@pytest.mark.servers
@pytest.mark.slow
def test_uvicorn_with_the_class_picker_and_locust_processes(tmp_path: Path) -> None:
    """Distributed Locust (a master and one worker process), workloads picked in the UI."""
    with ui_session(tmp_path, "uvicorn", "--workers", "2", "--processes", "1") as session:
        session.wait_for_ui()
        output = session.output()
        assert "class picker" in output
        assert "upstream:" in output  # any workload can be picked, upstream ones included
        page = session.get("/")[1]
        assert b'"show_userclass_picker": true' in page
        deadline = time.monotonic() + 60
        while session.get_json("/stats/requests").get("worker_count", 0) < 1:
            assert time.monotonic() < deadline, "no Locust worker connected"
            time.sleep(0.5)

        session.swarm(4, user_classes=("JsonUser",))
        memory = session.wait_for_load()
        check_memory(memory, expected_processes=3, workers=2)
        pids = session.tree()
        # The UI's process, uvicorn's tree, the upstream, Locust's master and its worker.
        assert len([cmd for cmd in map(cmdline, pids) if " -m locust " in cmd]) == 2
        stats = session.get_json("/stats/requests")
        assert stats["worker_count"] == 1
        assert {row["name"] for row in stats["stats"]} >= {"/async/json", "Aggregated"}
        check_tab(session, 3, "uvicorn")

        assert session.post_form("/stop", [])["success"]
        pids |= session.tree()
        assert session.interrupt() == 0
        assert "no process left" in session.output()
        assert_no_processes(pids)


BACKGROUND_SCRIPT = """
dir=$1; shift
# A plain Python started the same way tells how SIGINT arrives: ignored.
"$1" -c 'import signal; print(repr(signal.getsignal(signal.SIGINT)))' > "$dir/inherited" &
("$@" > "$dir/ui.out" 2>&1; echo $? > "$dir/status") &
wait
"""


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.servers
@pytest.mark.slow
def test_a_session_started_in_the_background_by_a_script_stops_on_ctrl_c(tmp_path: Path) -> None:
    """``tox -e ui`` as a background job of a script: SIGINT arrives ignored, and Python then
    installs no handler of its own; Ctrl-C to the script's process group still stops the
    session, and nothing it started is left."""
    server_port, web_port = free_port(), free_port()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    out, status = log_dir / "ui.out", log_dir / "status"
    argv = ui_argv(["gunicorn-sync", "--workers", "2"], server_port, web_port, log_dir)
    shell = subprocess.Popen(
        ["sh", "-c", BACKGROUND_SCRIPT, "sh", str(log_dir), *argv],
        cwd=REPO_ROOT,
        env=ui_env(tmp_path),
        start_new_session=True,  # the script's process group, as a terminal would give it
    )
    procs: list[psutil.Process] = []
    try:
        wait_until(
            lambda: "Ctrl-C to stop" in _text(out) or status.exists(), 120, lambda: _text(out)
        )
        assert not status.exists(), _text(out)
        assert "SIG_IGN" in _text(log_dir / "inherited")
        procs = psutil.Process(shell.pid).children(recursive=True)
        seen = {proc.pid for proc in procs}
        commands = [cmdline(pid) for pid in seen]
        for needle in ("runners.cli.ui", "-m gunicorn", "-m locust", "apps.upstream"):
            assert any(needle in command for command in commands), (needle, commands)
        assert len([c for c in commands if " -m gunicorn " in c]) == 3  # master + 2 workers

        os.killpg(shell.pid, signal.SIGINT)  # Ctrl-C in the script's terminal

        wait_until(status.exists, 90, lambda: f"still running:\n{_text(out)}")
        assert status.read_text().strip() == "0", _text(out)
        assert "Locust and the server stopped; no process left." in _text(out)
        assert_no_processes(seen)
        assert ledger_entries(tmp_path) == []
    finally:
        for proc in procs:  # only after a failure is any of them still there
            with suppress(psutil.Error):
                proc.kill()  # psutil checks the start time: never a reused PID
        with suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=10)


@pytest.mark.servers
def test_a_busy_web_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "runners.cli.ui",
                "gunicorn-sync",
                "--web-port",
                str(port),
                "--no-prepare",
                "--log-dir",
                str(tmp_path),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, **sqlite_env(), "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"--web-port: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "starting" not in result.stdout
