"""Faults, with real processes: servers that do not start, die or hang mid-run, a driver
interrupted or killed, a port already taken, bad options.

Each test runs the real driver (``python -m tests.faultbench``, which is
``runners.bench`` serving a test-only fault app for some runners, see
``tests/faultapp.py``) and afterwards checks that no process of the suite is
left and that what finished is in results.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

from runners.results.schema import SCHEMA_PATH
from runners.serving import cgroups, supervisor
from runners.serving.registry import RUNNERS
from runners.serving.server import ServeConfig, start
from runners.serving.supervisor import RunnerError
from tests.servers import sqlite_env, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = "users=30,follows=3,posts=200,likes=400,comments=100"
WINDOW = ("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "3", "--workers", "2")
IMPORT_ERROR_APP = "tests.faultapp_import_error:application"
BENCH = [sys.executable, "-m", "runners.bench"]
SERVE = [sys.executable, "-m", "runners.cli.serve"]

pytestmark = [pytest.mark.servers, pytest.mark.slow]


# --- watching the suite's processes ---------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    pid: int
    created: float
    cmdline: str

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                proc.status() != psutil.STATUS_ZOMBIE
                and abs(proc.create_time() - self.created) < 0.05
            )
        except psutil.Error:
            return False


class Watcher:
    """Records every descendant of a driver, and every member of their sessions
    (a server's workers stay in its session when their master dies), until closed."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, Seen] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _record(self, proc: psutil.Process) -> None:
        try:
            seen = Seen(proc.pid, proc.create_time(), " ".join(proc.cmdline()))
        except psutil.Error:
            return
        with self._lock:
            self.seen.setdefault(seen.pid, seen)

    def scan(self) -> None:
        try:
            for proc in psutil.Process(self.root).children(recursive=True):
                self._record(proc)
        except psutil.Error:
            pass
        with self._lock:
            sessions = set(self.seen)
        for proc in psutil.process_iter():
            try:
                if proc.pid not in self.seen and os.getsid(proc.pid) in sessions:
                    self._record(proc)
            except OSError:
                continue

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.scan()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def matching(self, needle: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen.values() if needle in s.cmdline]

    def assert_all_gone(self, timeout: float) -> None:
        """Fail unless every process seen is gone within ``timeout``."""
        self.scan()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                left = [s for s in self.seen.values() if s.alive()]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        assert not left, "processes left: " + "; ".join(f"{s.pid} {s.cmdline[:120]}" for s in left)


def assert_nothing_mentions(path: Path) -> None:
    """No process has ``path`` in its command line (Locust is given its output files)."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        assert str(path) not in cmdline, f"left running: {proc.info}"


# --- the driver -----------------------------------------------------------------------------------


@dataclass
class Bench:
    """A ``python -m tests.faultbench`` driver running in the background."""

    out: Path
    proc: subprocess.Popen[str]
    watcher: Watcher
    started: float = field(default_factory=time.monotonic)

    def results(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                data: dict[str, Any] = json.loads((self.out / "results.json").read_text())
                return data
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.1)
        raise AssertionError(f"no readable {self.out / 'results.json'}")

    def runs(self) -> list[dict[str, Any]]:
        if not (self.out / "results.json").exists():
            return []
        runs: list[dict[str, Any]] = self.results()["runs"]
        return runs

    def wait_for_runs(self, count: int, timeout: float = 120) -> None:
        wait_until(lambda: len(self.runs()) >= count, timeout, self.describe)

    def wait_for_window(self, stem: str, timeout: float = 120) -> None:
        """Until Locust's measured window of run ``stem`` has started."""
        log = self.out / "runs" / f"{stem}.locust.log"

        def started() -> bool:
            return log.exists() and "@@bench-probe 1 start" in log.read_text(errors="replace")

        wait_until(started, timeout, self.describe)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                f"the driver did not exit within {timeout:g}s:\n{out}\n{err}"
            ) from None
        finally:
            self.watcher.close()
        return self.proc.returncode, out, err

    def describe(self) -> str:
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            return f"driver exited ({self.proc.returncode}):\n{out}\n{err}"
        return f"driver still running; runs so far: {[r['id'] for r in self.runs()]}"


def bench_env(
    data_dir: Path, running_dir: Path, apps: dict[str, str] | None = None
) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "BENCH_DATA_DIR": str(data_dir),
        "BENCH_RUNNING_DIR": str(running_dir),
        "FAULT_APPS": json.dumps(apps or {}),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "BENCH_MIDDLEWARE", "CI"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults-data")


@pytest.fixture
def running_dir(tmp_path: Path) -> Path:
    return tmp_path / "running"


@pytest.fixture
def launch(tmp_path: Path, data_dir: Path, running_dir: Path) -> Iterator[Callable[..., Bench]]:
    """Start drivers; any still running at the end of the test is killed."""
    yield from launcher(tmp_path, data_dir, running_dir)


def launcher(tmp_path: Path, data_dir: Path, running_dir: Path) -> Iterator[Callable[..., Bench]]:
    """``launch``'s body, for other modules' fixtures."""
    started: list[Bench] = []

    def start_bench(*args: str, apps: dict[str, str] | None = None) -> Bench:
        out = tmp_path / f"out{len(started)}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faultbench", *args, "--seed", SEED, "--output", str(out)],
            cwd=REPO_ROOT,
            env=bench_env(data_dir, running_dir, apps),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        bench = Bench(out, proc, Watcher(proc.pid))
        started.append(bench)
        return bench

    yield start_bench
    for bench in started:
        if bench.proc.poll() is None:
            bench.proc.kill()
            bench.proc.communicate()
        bench.watcher.close()


def check_schema(results: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(results, schema, cls=jsonschema.Draft202012Validator)


def run_by_id(results: dict[str, Any], run_id: str) -> dict[str, Any]:
    for run in results["runs"]:
        if run["id"] == run_id:
            return dict(run)
    raise AssertionError(f"no run {run_id}: {[r['id'] for r in results['runs']]}")


def server_root(bench: Bench, name: str) -> psutil.Process:
    """The driver's child process that runs ``name`` (``gunicorn``, ``uvicorn``...)."""
    for child in psutil.Process(bench.proc.pid).children():
        with_name = " ".join(child.cmdline())
        if f"-m {name}" in with_name:
            return child
    raise AssertionError(f"no {name} server under the driver")


# --- a server that does not start -----------------------------------------------------------------


def test_a_server_that_fails_to_start_is_a_failed_cell_and_the_matrix_goes_on(
    launch: Callable[..., Bench],
) -> None:
    bench = launch(
        "--runners",
        "gunicorn-sync,uvicorn",
        "--workloads",
        "json",
        *WINDOW,
        apps={"gunicorn-sync": IMPORT_ERROR_APP},
    )
    code, out, err = bench.wait(timeout=180)
    assert code == 1, out + err
    results = bench.results()
    check_schema(results)
    failed = run_by_id(results, "gunicorn-sync/json/4/1")
    assert failed["status"] == "failed"
    assert failed["error"].startswith("runner gunicorn-sync: ")
    assert "faultapp_import_error" in failed["log_tail"]  # the end of the server's log
    assert failed["requests"] == 0 and failed["flags"] == []
    assert run_by_id(results, "uvicorn/json/4/1")["status"] == "ok"  # the matrix went on
    assert "FAILED: runner gunicorn-sync" in out
    # The report shows the failed cell as failed, with its error and log.
    page = (bench.out / "index.html").read_text()
    assert 'data-run-id="gunicorn-sync/json/4/1"' in page
    assert "status-failed" in page and "faultapp_import_error" in page
    bench.watcher.assert_all_gone(timeout=0)
    assert_nothing_mentions(bench.out)


def test_a_port_already_taken_is_named_at_once(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        began = time.monotonic()
        with pytest.raises(RunnerError) as info:
            start(
                ServeConfig(
                    runner=RUNNERS["gunicorn-sync"],
                    log_path=tmp_path / "server.log",
                    port=port,
                    workers=1,
                    env=sqlite_env(),
                )
            )
        assert time.monotonic() - began < 3  # not a server's bind retries, nor a timeout
        after = {p.pid for p in psutil.Process().children(recursive=True)}
    message = str(info.value).splitlines()[0]
    assert "gunicorn-sync" in message and f"127.0.0.1:{port}" in message
    assert "in use" in message
    assert after <= before  # no server was started


# --- a server that dies or hangs mid-run ----------------------------------------------------------


def test_a_killed_worker_is_replaced_and_the_run_says_it_recovered(
    launch: Callable[..., Bench],
) -> None:
    bench = launch(
        "--runners",
        "gunicorn-sync",
        "--workloads",
        "json",
        *("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "5"),
        *("--workers", "2"),
    )
    bench.wait_for_window("gunicorn-sync-json-u4-r1")
    master = server_root(bench, "gunicorn")
    victim = master.children()[0]
    victim.kill()
    code, out, err = bench.wait(timeout=120)
    assert code == 0, out + err
    (run,) = bench.results()["runs"]
    assert run["status"] == "ok"
    assert run["requests"] > 0
    assert "worker-restarted" in run["flags"]
    assert any(str(victim.pid) in e and "recovered" in e for e in run["events"]), run["events"]
    assert any(n.startswith("worker-restarted:") for n in run["notes"])
    assert "recovered" in out
    check_schema(bench.results())
    bench.watcher.assert_all_gone(timeout=0)


def test_a_killed_master_ends_the_run_at_once_and_the_matrix_goes_on(
    launch: Callable[..., Bench],
) -> None:
    duration = 10.0
    bench = launch(
        "--runners",
        "gunicorn-sync,uvicorn",
        "--workloads",
        "json",
        *("--load", "closed", "--users", "4", "--warmup", "1"),
        *("--duration", f"{duration:g}", "--workers", "2"),
    )
    bench.wait_for_window("gunicorn-sync-json-u4-r1")
    master = server_root(bench, "gunicorn")
    workers = [Seen(w.pid, w.create_time(), "worker") for w in master.children()]
    master.kill()
    killed = time.monotonic()
    bench.wait_for_runs(1, timeout=duration + 60)
    # Without watching the server the run would last until the window's end (9 s more).
    assert time.monotonic() - killed < 6
    (run,) = bench.runs()
    assert run["status"] == "failed"
    assert run["error"] == "the server died during the run (killed by SIGKILL)"
    assert run["log_tail"] and "Booting worker" in run["log_tail"]
    # Its orphaned workers were stopped with it.
    assert workers and not any(w.alive() for w in workers)
    code, out, err = bench.wait(timeout=120)
    assert code == 1, out + err
    results = bench.results()
    check_schema(results)
    assert run_by_id(results, "uvicorn/json/4/1")["status"] == "ok"
    bench.watcher.assert_all_gone(timeout=0)


def test_a_hung_view_ends_as_timeouts_within_the_window(launch: Callable[..., Bench]) -> None:
    bench = launch(
        "--runners",
        "uvicorn",
        "--workloads",
        "json",
        *WINDOW,
        "--request-timeout",
        "1",
        apps={"uvicorn": "tests.faultapp:hang_asgi"},
    )
    code, out, err = bench.wait(timeout=120)
    assert code == 0, out + err
    (run,) = bench.results()["runs"]
    assert run["status"] == "ok"
    assert run["requests"] > 0 and run["failures"] == run["requests"]
    assert {"failures", "timeouts"} <= set(run["flags"])
    assert any("no answer" in e for e in run["events"])
    assert run["duration_s"] == pytest.approx(3, abs=1)
    failures = next(p for p in run["artifacts"]["locust_csv"] if p.endswith("_failures.csv"))
    assert "connection error: timeout" in (bench.out / failures).read_text()
    bench.watcher.assert_all_gone(timeout=0)


# --- the driver interrupted or killed -------------------------------------------------------------


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT,), (signal.SIGINT, signal.SIGTERM)],
    ids=["ctrl-c", "ctrl-c-then-sigterm"],
)
def test_an_interrupted_matrix_stops_everything_and_keeps_what_finished(
    launch: Callable[..., Bench], signals: Sequence[signal.Signals]
) -> None:
    bench = launch(
        "--runners",
        "gunicorn-sync,uvicorn,gunicorn-gthread",
        "--workloads",
        "upstream",
        *WINDOW,
    )
    bench.wait_for_runs(1)
    bench.wait_for_window("uvicorn-upstream-u4-r1")  # a server, Locust and the upstream run
    assert bench.watcher.matching("-m locust") and bench.watcher.matching("apps.upstream")
    for sig in signals:
        bench.proc.send_signal(sig)
        time.sleep(0.3)  # tox sends SIGTERM a while after the interrupt
    began = time.monotonic()
    code, out, err = bench.wait(timeout=30)
    assert time.monotonic() - began < 15
    assert code == 130, out + err
    assert "Traceback" not in err
    results = bench.results()
    check_schema(results)
    assert results["interrupted"] is True
    assert [r["id"] for r in results["runs"]] == ["gunicorn-sync/upstream/4/1"]
    assert results["runs"][0]["status"] == "ok"
    assert (bench.out / "index.html").is_file()  # the report of what finished
    bench.watcher.assert_all_gone(timeout=0)
    assert_nothing_mentions(bench.out)


def test_a_killed_driver_takes_everything_down_and_its_results_still_report(
    launch: Callable[..., Bench], running_dir: Path
) -> None:
    bench = launch("--runners", "gunicorn-sync,uvicorn", "--workloads", "upstream", *WINDOW)
    bench.wait_for_runs(1)
    bench.wait_for_window("uvicorn-upstream-u4-r1")
    server = server_root(bench, "uvicorn")
    port = int(server.cmdline()[server.cmdline().index("--port") + 1])
    # The ledger lists what the driver runs now: the server, Locust and the upstream.
    (ledger,) = running_dir.glob("*.json")
    listed = {e["name"] for e in json.loads(ledger.read_text())["processes"]}
    assert {"uvicorn", "locust", "upstream"} <= listed
    bench.proc.kill()  # kill -9: no clean-up code runs in the driver
    bench.proc.communicate(timeout=10)
    bench.watcher.close()
    # The parent-death signal stops the server, Locust and the upstream by themselves.
    bench.watcher.assert_all_gone(timeout=10)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # the port is free again
    # What finished is saved, and the report can be rebuilt from it.
    results = bench.results()
    assert [r["id"] for r in results["runs"]] == ["gunicorn-sync/upstream/4/1"]
    (bench.out / "index.html").unlink(missing_ok=True)
    rebuilt = subprocess.run(
        [sys.executable, "-m", "runners.report", str(bench.out)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "gunicorn-sync" in (bench.out / "index.html").read_text()
    # The next run finds the stale ledger, finds no process left to stop, removes the
    # server's cgroup (where servers get one: nothing removes it in a killed driver) and
    # the ledger.
    found = supervisor.stop_strays(running_dir)
    assert len(found) == (1 if cgroups.support().available else 0), found
    assert all(line.startswith("cgroup: removed ") for line in found), found
    assert not ledger.exists()


def serve_until_ready(
    args: Sequence[str], env: dict[str, str]
) -> tuple[subprocess.Popen[str], list[str]]:
    """``python -m runners.cli.serve ARGS`` started, and what it printed until it said
    "Ctrl-C" (serving) or stopped printing (60 s at most)."""
    proc = subprocess.Popen(
        [*SERVE, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]
    deadline = time.monotonic() + 60
    while "Ctrl-C" not in lines[-1] and time.monotonic() < deadline and lines[-1]:
        lines.append(proc.stdout.readline())
    return proc, lines


def test_the_next_run_stops_what_a_killed_driver_left(tmp_path: Path, running_dir: Path) -> None:
    """Without the parent-death signal (a server that outlives SIGTERM, a driver killed
    between fork and prctl), the ledger is what lets the next run clean up."""
    env = {**os.environ, **sqlite_env(), "PYTHONPATH": str(REPO_ROOT)}
    env["BENCH_RUNNING_DIR"] = str(running_dir)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from runners.serving import supervisor\n"
        "from runners.serving.server import ServeConfig, start\n"
        "from runners.serving.registry import RUNNERS\n"
        "with supervisor.track():\n"
        f"    server = start(ServeConfig(runner=RUNNERS['gunicorn-sync'], port={port},\n"
        f"        log_path=Path({str(tmp_path / 'stray.log')!r}), workers=2,\n"
        "        die_with_parent=False))\n"
        "    print(server.pid, flush=True)\n"
        "    time.sleep(600)\n"
    )
    driver = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert driver.stdout is not None
    root = int(driver.stdout.readline())
    stray = [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
    driver.kill()
    driver.communicate(timeout=10)
    time.sleep(1)
    assert all(psutil.pid_exists(pid) for pid in stray)  # nobody stopped them
    # An unrelated process whose PID a ledger names with another start time is never touched.
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    fake = {"name": "gunicorn-sync", "pid": bystander.pid, "create_time": 1.0, "cmdline": []}
    driver_entry = {"name": "driver", "pid": 999_999_999, "create_time": 1.0, "cmdline": []}
    (running_dir / "999999999.json").write_text(
        json.dumps({"driver": driver_entry, "processes": [fake]})
    )
    try:
        # The next run: `tox -e serve -- uvicorn --port PORT` on the port the stray holds.
        nxt, lines = serve_until_ready(
            ["uvicorn", "--port", str(port), "--no-prepare", "--quiet", "--workers", "1"], env
        )
        first = lines[0]
        nxt.send_signal(signal.SIGINT)
        rest, err = nxt.communicate(timeout=60)
        text = "".join(lines) + rest
        assert nxt.returncode == 0, text + err
        # The stray's root and two workers, and (where servers get one) its cgroup.
        strays = 4 if cgroups.support().available else 3
        assert first.startswith(
            f"stopped {strays} stray process(es) or resource(s) left by an earlier run"
        ), text
        assert f"serving on http://127.0.0.1:{port}" in text
        assert not any(psutil.pid_exists(pid) for pid in stray)
        assert bystander.poll() is None  # untouched
        assert not list(running_dir.glob("*.json"))
    finally:
        bystander.kill()
        bystander.wait()
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- bad input: one line, exit status 2, before any server starts ---------------------------------


BAD_BENCH_OPTIONS = [
    (["--runners", "nope"], "unknown runner 'nope' (accepted: gunicorn-sync"),
    (["--workloads", "json,nope"], "unknown workload 'nope' (accepted: plaintext"),
    (["--load", "closed", "--users", "16,,64"], "--users: malformed list '16,,64'"),
    (["--load", "closed", "--users", "0"], "--users: 0 is not positive"),
    (["--duration", "-1"], "--duration: -1 must be > 0"),
    (["--duration", "0"], "--duration: 0 must be > 0"),
    (["--workers", "0"], "--workers: 0 is not positive"),
    (["--request-timeout", "0"], "--request-timeout: 0 must be > 0"),
    (
        ["--database", "mysql://root@127.0.0.1/x"],
        "--database: expected sqlite or a postgres:// URL",
    ),
    (
        ["--database", "postgres://nobody:secret@127.0.0.1:1/x"],
        "--database postgres://nobody:***@127.0.0.1:1/x: cannot connect",
    ),
]


def _run_watched(
    argv: list[str], env: dict[str, str], timeout: float = 60
) -> tuple[int, str, str, Watcher]:
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watcher = Watcher(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        watcher.close()
    return proc.returncode, out, err, watcher


@pytest.mark.parametrize(("args", "message"), BAD_BENCH_OPTIONS)
def test_bench_bad_input_is_one_line_and_starts_nothing(
    tmp_path: Path, data_dir: Path, running_dir: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr, watcher = _run_watched(
        [sys.executable, "-m", "runners.bench", *args, "--output", str(out)],
        bench_env(data_dir, running_dir),
    )
    assert code == 2, stdout + stderr
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), stderr
    assert message in lines[0]
    assert "secret" not in stderr
    assert not out.exists()  # nothing was started or written
    assert not watcher.seen, [s.cmdline for s in watcher.seen.values()]


def test_bench_missing_interpreter_is_one_line(
    tmp_path: Path, data_dir: Path, running_dir: Path
) -> None:
    code, stdout, stderr, watcher = _run_watched(
        [*BENCH, "--python", "/nonexistent/python3", "--output", str(tmp_path / "out")],
        bench_env(data_dir, running_dir),
    )
    assert code == 2, stdout + stderr
    assert len(stderr.splitlines()) == 1 and "/nonexistent/python3" in stderr
    assert not watcher.matching("launch.py")


def _occupied_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, int(sock.getsockname()[1])


BAD_SERVE_INPUT: list[tuple[list[str], dict[str, str], str]] = [
    (["nope"], {}, "unknown runner 'nope'; known: gunicorn-sync"),
    ([], {}, "a runner name is required; one of: gunicorn-sync"),
    (["gunicorn-sync", "--workers", "0"], {}, "--workers 0: must be a whole number >= 1"),
    (["gunicorn-gthread", "--threads", "0"], {}, "--threads 0: must be a whole number >= 1"),
    (["gunicorn-sync", "--workers", "x"], {}, "argument --workers: invalid int value: 'x'"),
    (["waitress", "--workers", "2"], {}, "waitress runs a single process (workers=1)"),
    (["uvicorn", "--gc", "freeze"], {}, "--gc freeze needs a pre-fork server"),
    (["gunicorn-sync", "--port", "70000"], {}, "--port 70000: expected 0..65535"),
    (
        ["gunicorn-sync", "--python", "/nonexistent/python3"],
        {},
        "--python /nonexistent/python3: ",
    ),
    (
        ["gunicorn-sync"],
        {"DATABASE_URL": "postgres://nobody@127.0.0.1:1/x"},
        "$DATABASE_URL postgres://nobody@127.0.0.1:1/x: cannot connect",
    ),
    (
        ["gunicorn-sync", "--port", "{busy}"],
        {},
        "runner gunicorn-sync: cannot listen on 127.0.0.1:{busy}",
    ),
]


@pytest.mark.parametrize(("args", "extra_env", "message"), BAD_SERVE_INPUT)
def test_serve_bad_input_is_one_line_and_starts_nothing(
    tmp_path: Path, running_dir: Path, args: list[str], extra_env: dict[str, str], message: str
) -> None:
    holder, busy = _occupied_port()
    with holder:
        args = [a.replace("{busy}", str(busy)) for a in args]
        env = {**os.environ, **sqlite_env(), "PYTHONPATH": str(REPO_ROOT), **extra_env}
        env["BENCH_RUNNING_DIR"] = str(running_dir)
        log = tmp_path / "server.log"
        code, stdout, stderr, watcher = _run_watched(
            [sys.executable, "-m", "runners.cli.serve", *args, "--log", str(log)], env
        )
    assert code == 2, stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("serve: error: "), stderr
    assert message.replace("{busy}", str(busy)) in lines[0]
    assert not log.exists()
    assert not watcher.matching("launch.py") and not watcher.matching("apps.manage")
