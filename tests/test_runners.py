"""Runners: the registry, their command lines, and each one serving for real."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from runners import PYCACHE, REPO_ROOT
from runners.sampling.memory import sample_tree
from runners.serving import supervisor
from runners.serving.commands import Settings, command
from runners.serving.net import free_port
from runners.serving.proctree import tree_pids
from runners.serving.registry import RUNNERS, format_table, worker_count
from runners.serving.server import (
    ServeConfig,
    start,
    stop,
)
from runners.serving.supervisor import RunnerError, log_tail
from runners.vocabulary import GcMode
from tests.servers import (
    assert_no_processes,
    get,
    get_json,
    running,
    server_cpus,
    small_workers,
    sqlite_env,
    wait_until,
)

REQUIRED = {
    "gunicorn-sync": "prefork",
    "gunicorn-sync-preload": "prefork",
    "gunicorn-sync-freeze": "prefork",
    "uwsgi": "prefork",
    "gunicorn-gthread": "threaded",
    "waitress": "threaded",
    "granian-wsgi": "threaded",
    "uvicorn": "async",
    "gunicorn-uvicorn": "async",
    "gunicorn-asgi": "async",
    "granian-asgi": "async",
    "hypercorn": "async",
    "daphne": "async",
}
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


# -- the records ---------------------------------------------------------------


def test_required_runners_exist_with_their_family() -> None:
    for name, family in REQUIRED.items():
        assert RUNNERS[name].family == family
        assert RUNNERS[name].name == name


def test_asgi_runners_serve_async_views_by_default() -> None:
    for runner in RUNNERS.values():
        assert runner.variant == ("async" if runner.interface == "asgi" else "sync"), runner.name


def test_worker_rules() -> None:
    assert [worker_count("2n+1", n) for n in (1, 2, 4)] == [3, 5, 9]
    assert [worker_count("n", n) for n in (0, 1, 4)] == [1, 1, 4]
    assert worker_count("1", 8) == 1


def test_format_table_lists_every_runner() -> None:
    table = format_table(1)
    for name, family in REQUIRED.items():
        line = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert family in line
    assert "3 (2n+1)" in table


def test_serve_list_prints_every_runner() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runners.cli.serve", "--list", "--server-cpus", "0"],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in REQUIRED:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_command_runs_the_configured_python_as_a_module(name: str) -> None:
    runner = RUNNERS[name]
    settings = Settings("127.0.0.1", 8000, small_workers(runner), runner.threads, python="/py")
    cmd = command(runner, settings)
    assert cmd.argv[0] == "/py"
    assert cmd.argv[1] in {"-m", "-c"}
    assert cmd.env["BENCH_GC"] == "default"
    assert "127.0.0.1" in " ".join(cmd.argv)
    assert "8000" in " ".join(cmd.argv)


def test_command_details() -> None:
    def argv(name: str, workers: int = 3, threads: int | None = None) -> tuple[str, ...]:
        runner = RUNNERS[name]
        settings = Settings("127.0.0.1", 9000, workers, threads or runner.threads)
        return command(runner, settings).argv

    assert "--preload" not in argv("gunicorn-sync")
    assert "--preload" in argv("gunicorn-sync-preload")
    assert "--lazy-apps" not in argv("uwsgi")
    uvicorn = argv("uvicorn", workers=2)
    assert uvicorn[uvicorn.index("--loop") + 1] == "uvloop"
    assert uvicorn[uvicorn.index("--http") + 1] == "httptools"
    gthread = argv("gunicorn-gthread", threads=8)
    assert gthread[gthread.index("--threads") + 1] == "8"
    granian = argv("granian-wsgi", threads=6)
    assert granian[granian.index("--blocking-threads") + 1] == "6"
    assert command(RUNNERS["uvicorn"], Settings("h", 1, 1, None)).master is False
    assert command(RUNNERS["uvicorn"], Settings("h", 1, 2, None)).master is True
    assert command(RUNNERS["daphne"], Settings("h", 1, 1, None)).master is False


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("daphne", Settings("h", 1, 2, None), "single process"),
        ("waitress", Settings("h", 1, 3, 4), "single process"),
        ("uvicorn", Settings("h", 1, 1, None, gc="freeze"), "pre-fork"),
        ("granian-asgi", Settings("h", 1, 1, None, gc="off"), "pre-fork"),
        ("hypercorn", Settings("h", 1, 1, 4), "thread"),
        ("gunicorn-sync", Settings("h", 1, 0, None), "workers"),
    ],
)
def test_command_rejects_settings_the_server_cannot_honour(
    name: str, settings: Settings, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        command(RUNNERS[name], settings)


def test_spawned_processes_cache_bytecode_outside_the_sources_even_when_the_shell_turns_it_off(
    tmp_path: Path,
) -> None:
    """A worker that compiled every module it imported would measure the compiler (its
    time and its garbage); a project's folder must not get a ``__pycache__`` either."""
    assert not PYCACHE.is_relative_to(REPO_ROOT / "apps")
    code = "import sys; print(sys.flags.dont_write_bytecode, sys.pycache_prefix)"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    log = tmp_path / "child.log"
    child = supervisor.spawn("bytecode", [sys.executable, "-c", code], env=env, log_path=log)
    child.popen.wait(timeout=30)
    supervisor.stop(child, 2.0)
    assert log.read_text().splitlines()[-1].split() == ["0", str(PYCACHE)], log.read_text()


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_log_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(path, 3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing") == ""


# -- every runner, for real ------------------------------------------------------


def _affinity(pid: int) -> tuple[int, ...]:
    return tuple(sorted(psutil.Process(pid).cpu_affinity()))


@pytest.mark.servers
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_runner_serves_and_accounts(name: str) -> None:
    runner = RUNNERS[name]
    with running(name) as server:
        assert server.alive()
        assert server.variant == runner.variant
        assert server.base_url() == f"{server.url}/{runner.variant}"
        assert get(server, "/health")[0] == 200
        assert get_json(server, f"/{server.variant}/json") == {"message": "Hello, World!"}
        status, body = get(server, f"/{server.variant}/plaintext")
        assert (status, body) == (200, b"Hello, World!")
        for _ in range(4):
            assert get(server, f"/{server.variant}/db")[0] == 200

        sample = sample_tree(server.pid)
        # Accounting invariants, per process and summed.
        for proc in sample.processes:
            assert 0 < proc.uss <= proc.pss <= proc.rss, proc
            assert proc.shared == proc.rss - proc.uss
            assert proc.cpu_seconds >= 0
        assert sample.rss == sum(p.rss for p in sample.processes)
        assert sample.pss == sum(p.pss for p in sample.processes)
        assert sample.uss == sum(p.uss for p in sample.processes)
        # Process count: the configured workers plus the master, if any.
        assert len(sample.server_processes) == server.expected_processes()
        assert len(sample.workers) == server.workers == small_workers(runner)
        root = sample.processes[0]
        assert root.pid == server.pid
        assert root.role == ("master" if server.command.master else "worker")
        # The whole tree runs on the server CPUs, loading its modules compiled.
        for pid in tree_pids(server.pid):
            assert _affinity(pid) == server_cpus()
            environ = psutil.Process(pid).environ()
            assert environ["PYTHONPYCACHEPREFIX"] == str(PYCACHE)
            assert "PYTHONDONTWRITEBYTECODE" not in environ
        pids = tree_pids(server.pid)
    assert not server.alive()
    assert_no_processes(pids, timeout=0)


@pytest.mark.servers
@pytest.mark.parametrize("name", ["uvicorn", "granian-asgi"])
def test_asgi_runner_can_serve_the_sync_views(name: str) -> None:
    with running(name, workers=1, variant="sync") as server:
        assert server.base_url().endswith("/sync")
        assert get_json(server, "/sync/json") == {"message": "Hello, World!"}
        assert get(server, "/sync/fortunes")[0] == 200


@pytest.mark.servers
def test_upstream_starts_and_stops_with_the_runner() -> None:
    with running("uvicorn", workers=1, with_upstream=True) as server:
        assert server.upstream_url
        assert get_json(server, "/async/upstream?ms=1")["upstream"] == {"ms": 1}
        upstream_pid = server._upstream.pid if server._upstream else -1
        # The upstream is not part of the server's tree (not sampled).
        assert upstream_pid not in tree_pids(server.pid)
    assert_no_processes([upstream_pid], timeout=0)


@pytest.mark.servers
def test_a_runner_that_fails_to_start_names_itself_and_shows_its_log(tmp_path: Path) -> None:
    config = ServeConfig(
        runner=RUNNERS["gunicorn-sync"],
        log_path=tmp_path / "broken.log",
        workers=1,
        env=sqlite_env(),
        app="no_such_module_here:application",
        startup_timeout=30,
    )
    with pytest.raises(RunnerError) as info:
        start(config)
    message = str(info.value)
    assert "runner gunicorn-sync" in message
    assert "no_such_module_here" in message  # from the log's tail
    assert str(tmp_path / "broken.log") in message


@pytest.mark.servers
def test_a_runner_that_dies_is_reported_and_cleaned_up() -> None:
    with running("gunicorn-sync", workers=2) as server:
        workers = [p.pid for p in sample_tree(server.pid).workers]
        os.kill(server.pid, signal.SIGKILL)  # the master dies, its workers linger
        deadline = time.monotonic() + 5
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.alive()
    # stop() (in running) killed the orphaned workers too.
    assert_no_processes(workers, timeout=0)


@pytest.mark.servers
def test_stop_kills_after_the_grace_period() -> None:
    """gunicorn waits 30 s for an in-flight request; stop() SIGKILLs after `grace`."""
    with running(
        "gunicorn-sync", workers=1, grace=1.0, with_upstream=True, app="tests.faultapp:hang_wsgi"
    ) as server:
        pids = tree_pids(server.pid)
        thread = threading.Thread(
            target=lambda: _ignore_errors(get, server, "/sync/json", 60), daemon=True
        )
        thread.start()
        # In flight: the worker accepted the request (and hangs in it for an hour).
        wait_until(
            lambda: server.port in _accepted_ports(pids),
            10,
            lambda: "the worker never accepted the request",
        )
        began = time.monotonic()
        stop(server)
        assert time.monotonic() - began < 8
    assert_no_processes(pids, timeout=0)


def _accepted_ports(pids: list[int]) -> set[int]:
    """Local ports of the connections ``pids`` have accepted (not their listening sockets)."""
    ports = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections("tcp"):
                if conn.status == psutil.CONN_ESTABLISHED and conn.laddr:
                    ports.add(conn.laddr.port)
    return ports


def _ignore_errors(func: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(Exception):
        func(*args)


@pytest.mark.servers
@pytest.mark.parametrize(
    ("name", "gc", "expected"),
    [
        ("gunicorn-sync", None, {"enabled": True, "threshold0": 700, "frozen": False}),
        ("gunicorn-sync-freeze", None, {"enabled": True, "threshold0": 700, "frozen": True}),
        ("gunicorn-sync", "off", {"enabled": False, "threshold0": 0, "frozen": False}),
        ("uwsgi", "freeze", {"enabled": True, "threshold0": 700, "frozen": True}),
        ("uwsgi", "off", {"enabled": False, "threshold0": 0, "frozen": False}),
    ],
)
def test_gc_modes_reach_the_workers(
    name: str, gc: GcMode | None, expected: dict[str, object]
) -> None:
    with running(name, gc=gc, app="tests.gc_probe:application") as server:
        seen: dict[int, dict[str, Any]] = {}
        for _ in range(12):
            state = get_json(server, "/probe")
            seen[state["pid"]] = state
        workers = {p.pid for p in sample_tree(server.pid).workers}
        assert set(seen) <= workers
        for state in seen.values():
            assert state["enabled"] is expected["enabled"]
            assert state["threshold"][0] == expected["threshold0"]
            assert (state["frozen"] > 0) is expected["frozen"]


# -- the serve CLI -----------------------------------------------------------------


def _serve_cli(*args: str, sigint: bool = False) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m runners.cli.serve`` and return it with the server's PID."""
    env = {**ENV, **sqlite_env()}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runners.cli.serve",
            *args,
            "--port",
            "0",
            "--quiet",
            "--no-prepare",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell would let Ctrl-C through even when started in the background.
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if sigint else None,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if not line or "Ctrl-C" in line:
            break
    text = "".join(lines)
    assert "Ctrl-C" in text, text
    pid = int(text.split(", pid ")[1].split(",")[0])
    return proc, pid


@pytest.mark.servers
def test_serve_cli_ctrl_c_leaves_no_process() -> None:
    proc, pid = _serve_cli("uvicorn", "--workers", "2", sigint=True)
    pids = tree_pids(pid)
    assert len(pids) >= 3
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "no process left" in out
    assert_no_processes(pids, timeout=0)


@pytest.mark.servers
def test_killing_the_driver_takes_the_server_down() -> None:
    proc, pid = _serve_cli("gunicorn-sync", "--workers", "2")
    pids = tree_pids(pid)
    proc.kill()  # SIGKILL: no cleanup code runs in the driver
    proc.communicate(timeout=10)
    assert_no_processes(pids, timeout=15)


def test_serve_cli_rejects_unknown_runner() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runners.cli.serve", "nope"],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown runner 'nope'" in result.stderr
