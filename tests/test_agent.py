"""The agent (``tox -e agent``) on loopback: a real agent process and the real driver.

A run through the agent has memory and CPU samples and both hosts' environments; a
bad token gets 401 and starts nothing; an unknown runner or a command line is refused;
a driver killed with ``kill -9`` leaves no server behind once its lease runs out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from runners.agent.client import AgentClient, AgentError, client_token, parse_url
from runners.agent.protocol import ProtocolError, ServeRequest
from runners.agent.server import main as agent_main
from runners.agent.server import read_token
from runners.bench import main as bench_main
from runners.hosting import WindowFigures
from runners.results.document import Environment
from runners.sampling.memory import sample_tree
from runners.serving.cpus import format_cpus
from tests.servers import (
    BENCH_SEED,
    assert_no_processes,
    run_bench,
    server_cpus,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "agent-test-token-0123456789abcdef"
LEASE_S = 2.0
SHORT = ("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "2", "--no-report")


@dataclass
class AgentProcess:
    proc: subprocess.Popen[str]
    url: str
    token_file: Path
    lines: list[str] = field(default_factory=list)

    def client(self, token: str = TOKEN) -> AgentClient:
        return AgentClient(self.url, token)

    def server_pids(self) -> set[int]:
        """Every process under the agent (its servers and their upstreams)."""
        try:
            return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()


def loadgen_cpus() -> str:
    others = [c for c in sorted(os.sched_getaffinity(0)) if c not in server_cpus()]
    return format_cpus(others or server_cpus())


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """``python -m runners.agent`` on a free loopback port, a short lease, its own data."""
    tmp = tmp_path_factory.mktemp("agent")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "BENCH_DATA_DIR": str(tmp / "data"),
        "BENCH_RUNNING_DIR": str(tmp / "running"),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "BENCH_AGENT_TOKEN", "CI"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "runners.agent", "--port", "0", "--lease", str(LEASE_S)]
    argv += ["--token-file", str(token_file), "--server-cpus", format_cpus(server_cpus())]
    argv += ["--log-dir", str(tmp / "logs")]
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    found = re.search(r"listening on (http://\S+)", first)
    assert found, first + (proc.stdout.read() if proc.poll() is not None else "")
    lines: list[str] = [first]
    handle = AgentProcess(proc, found.group(1), token_file, lines)
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        yield handle
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0, "".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not handle.server_pids()


# --- the fast tier: no process -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"runner": "nope"}, "unknown runner 'nope'"),
        ({"runner": "gunicorn-sync; rm -rf /"}, "unknown runner"),
        ({"runner": "gunicorn-sync", "workers": 0}, "workers"),
        ({"runner": "gunicorn-sync", "workers": "3 --bind 0.0.0.0:80"}, "workers"),
        ({"runner": "gunicorn-sync", "database": "file:///etc/passwd"}, "database"),
        ({"runner": "uvicorn", "variant": "both"}, "variant"),
    ],
)
def test_serve_requests_name_known_runners_and_checked_settings(
    request_body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        ServeRequest.from_json(request_body)


def test_settings_a_server_cannot_honour_are_refused() -> None:
    with pytest.raises(ProtocolError, match="single process"):
        ServeRequest.from_json({"runner": "waitress", "workers": 3}).check(1)
    ServeRequest.from_json({"runner": "gunicorn-sync", "workers": 3}).check(1)


def test_tokens_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_AGENT_TOKEN", raising=False)
    with pytest.raises(ValueError, match="no token"):
        read_token(None)
    with pytest.raises(ValueError, match="no agent token"):
        client_token(None)
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ValueError, match="shorter than 16"):
        read_token(short)
    monkeypatch.setenv("BENCH_AGENT_TOKEN", TOKEN)
    assert read_token(None) == client_token(None) == TOKEN
    assert parse_url("http://10.0.0.2:8765") == ("10.0.0.2", 8765)
    for bad in ("https://h:1", "http://h", "h:1", "http://h:1/x"):
        with pytest.raises(ValueError):
            parse_url(bad)


@pytest.mark.parametrize(
    "args",
    [
        ("--server-cpus", "0"),
        ("--python", "3.12"),
        ("--profile",),
        ("--micro",),
    ],
)
def test_options_the_agent_cannot_honour_are_refused(
    args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BENCH_AGENT_TOKEN", TOKEN)
    assert bench_main.main(["--agent", "http://127.0.0.1:9", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: --agent: ") and args[0] in err, err


def test_the_report_shows_the_server_host() -> None:
    from runners.report.compare import environment_rows
    from runners.results import environment as env_capture
    from runners.results.document import CpuPlacement

    def env(server: tuple[int, ...]) -> Environment:
        placement = CpuPlacement(server_cpus=server, loadgen_cpus=(1,))
        return env_capture.capture(placement=placement, database_url=None, redis_url=None)

    here = env((7,))
    rows = dict(environment_rows(replace(here, server_host=env((3, 4)))))
    assert rows["Server CPUs"] == "7" and rows["server host: Server CPUs"] == "3, 4"
    assert "server host: package django" in rows
    assert not any(name.startswith("server host") for name, _ in environment_rows(here))


def test_window_figures_travel_unchanged() -> None:
    sample = sample_tree(os.getpid(), time.monotonic() - 1.0)
    figures = WindowFigures(50.0, (sample,), 0.5, None)
    back = WindowFigures.from_json(json.loads(json.dumps(figures.to_json())))
    assert back == figures
    assert back.samples[0].cpu_seconds == sample.cpu_seconds


# --- a real agent -------------------------------------------------------------------------------


@pytest.mark.servers
def test_a_bad_or_missing_token_gets_401_and_starts_nothing(agent: AgentProcess) -> None:
    request = {"request": {"runner": "uvicorn"}, "lease": "x"}
    for token in ("", "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1]):
        for method, path in (("POST", "/serve"), ("POST", "/lease"), ("GET", "/environment")):
            with pytest.raises(AgentError) as caught:
                agent.client(token).call(method, path, request)
            assert caught.value.status == 401, (token, path, caught.value)
    assert not agent.server_pids()
    assert agent.client().environment().placement.server_cpus == server_cpus()


@pytest.mark.servers
def test_an_unknown_runner_or_a_command_is_refused(agent: AgentProcess) -> None:
    with agent.client().lease() as lease:
        for request in (
            {"runner": "nope"},
            {"runner": "sh -c 'sleep 100'"},
            {"runner": "uvicorn", "workers": -1},
            {"runner": "waitress", "workers": 4},
        ):
            with pytest.raises(AgentError) as caught:
                lease.call("/serve", {"request": request})
            assert caught.value.status == 400, caught.value
        assert not agent.server_pids()


@pytest.mark.servers
def test_a_run_through_the_agent_has_samples_and_both_environments(
    agent: AgentProcess, tmp_path: Path
) -> None:
    out = tmp_path / "through-agent"
    bench = run_bench(
        out,
        tmp_path / "driver-data",
        *("--runners", "uvicorn", "--workloads", "json", *SHORT),
        *("--agent", agent.url, "--agent-token-file", str(agent.token_file)),
        *("--loadgen-cpus", loadgen_cpus()),
    )
    results = bench.check()
    (run,) = results["runs"]
    assert run["requests"] > 20 and run["rps"] > 0
    samples = run["memory"]["samples"]
    assert len(samples) >= 3, samples
    assert run["memory"]["pss_peak_bytes"] > 10 * 2**20
    assert all(s["processes"] for s in samples)
    assert run["cpu_seconds"] > 0
    env = results["environment"]
    server_host = env["server_host"]
    assert server_host["placement"]["server_cpus"] == list(server_cpus())
    assert env["placement"]["server_cpus"] == list(server_cpus())
    assert server_host["database"] == "sqlite" and server_host["seed"]["users"] == 30
    assert run["server_cpus"] == list(server_cpus())
    log = (out / run["artifacts"]["server_log"]).read_text()
    assert log.startswith("# uvicorn: "), log[:300]
    # The agent stopped the run's server and released the lease.
    wait_until(lambda: not agent.server_pids(), 10, lambda: str(agent.server_pids()))
    assert any("released" in line for line in agent.lines), agent.lines


@pytest.mark.servers
def test_a_killed_driver_leaves_no_server_once_its_lease_runs_out(
    agent: AgentProcess, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "BENCH_DATA_DIR": str(tmp_path / "d"),
        "BENCH_RUNNING_DIR": str(tmp_path / "running"),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CI"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "runners.bench", "--runners", "gunicorn-sync"]
    argv += ["--workloads", "json", "--load", "closed", "--users", "2", "--warmup", "1"]
    argv += ["--duration", "60", "--no-report", "--seed", BENCH_SEED]
    argv += ["--agent", agent.url, "--agent-token-file", str(agent.token_file)]
    argv += ["--loadgen-cpus", loadgen_cpus(), "--output", str(tmp_path / "killed")]
    driver = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # gunicorn's master and its workers, up on the agent's side.
        wait_until(lambda: len(agent.server_pids()) >= 3, 60, lambda: str(agent.server_pids()))
        served = agent.server_pids()
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        killed = time.monotonic()
        assert_no_processes(served, timeout=LEASE_S + 15)
        # Within the lease, the reaper's tick and the server's own stop (SIGTERM first).
        assert time.monotonic() - killed < LEASE_S + 12
        # A worker the master forked after ``served`` was read goes with it (and a zombie
        # may linger in the agent's children until it is reaped).
        wait_until(lambda: not agent.server_pids(), 10, lambda: str(agent.server_pids()))
        assert any("no heartbeat" in line for line in agent.lines), agent.lines
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_the_agent_refuses_to_start_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BENCH_AGENT_TOKEN", raising=False)
    assert agent_main(["--port", "0"]) == 2
    assert "no token" in capsys.readouterr().err
