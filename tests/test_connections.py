"""New TCP connections per request, measured from the kernel (runners/sampling/connections.py).

One persistent HTTP/1.1 client (``http.client.HTTPConnection``, which reuses
its connection while the server keeps it open and reconnects when the server
closes it) makes the same requests to each runner; the counter must tell a
server that closes every connection (gunicorn's sync worker) from those that
keep them alive (gunicorn's gthread worker). A real short bench run records the
measured figure per run (``connections``, ``connections_per_request``).
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runners.sampling.connections import ConnectionCounter
from runners.serving.server import RunningServer
from tests.servers import run_bench, running

REQUESTS = 40


def _requests(server: RunningServer, n: int = REQUESTS) -> None:
    """``n`` keep-alive GETs through one ``HTTPConnection``: a new TCP connection only
    when the server closed the previous one."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for _ in range(n):
            conn.request("GET", "/sync/plaintext")
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == b"Hello, World!"
    finally:
        conn.close()


def _connections_for_requests(runner: str) -> int:
    with running(runner, workers=1) as server:
        _requests(server, 3)  # warm: the first request loads lazily-imported parts
        counter = ConnectionCounter(server.port, server.pid).start()
        _requests(server)
        return counter.stop()


@pytest.mark.servers
def test_gunicorn_sync_opens_a_connection_per_request() -> None:
    assert _connections_for_requests("gunicorn-sync") == REQUESTS


@pytest.mark.servers
def test_gunicorn_gthread_reuses_one_connection() -> None:
    assert _connections_for_requests("gunicorn-gthread") == 1


@pytest.mark.servers
def test_connections_opened_and_closed_between_readings_are_counted() -> None:
    """Sixty short connections inside one long interval: each is found from its TIME_WAIT."""
    with running("gunicorn-gthread", workers=1) as server:
        counter = ConnectionCounter(server.port, server.pid, interval=60).start()
        for _ in range(60):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while sock.recv(4096):
                    pass
        assert counter.stop() == 60


@pytest.mark.servers
def test_open_connections_at_start_are_not_counted() -> None:
    with running("gunicorn-gthread", workers=1) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/health")
        conn.getresponse().read()
        counter = ConnectionCounter(server.port, server.pid).start()
        for _ in range(5):
            conn.request("GET", "/health")
            conn.getresponse().read()
        time.sleep(0.3)  # at least one reading in between
        conn.close()
        assert counter.stop() == 0


@pytest.mark.servers
def test_the_port_must_belong_to_the_server() -> None:
    """A listener outside the server's process tree is refused, not counted."""
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL
    )
    try:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            with pytest.raises(ValueError, match="listens on port"):
                ConnectionCounter(listener.getsockname()[1], other.pid).start()
    finally:
        other.kill()
        other.wait()


@pytest.fixture(scope="module")
def bench_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One closed-loop window of a few seconds per runner, through the bench CLI (and its
    report page, under ``page``)."""
    out = tmp_path_factory.mktemp("keepalive") / "results"
    data_dir: Path = tmp_path_factory.mktemp("keepalive-data")
    bench = run_bench(
        out,
        data_dir,
        *("--runners", "gunicorn-sync,gunicorn-gthread,uwsgi", "--workloads", "plaintext"),
        *("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "2"),
    )
    results = bench.check()
    return {"page": (out / "index.html").read_text()} | {r["runner"]: r for r in results["runs"]}


@pytest.mark.servers
@pytest.mark.parametrize("runner", ["gunicorn-sync", "uwsgi"])
def test_a_bench_run_records_a_connection_per_request(
    bench_runs: dict[str, Any], runner: str
) -> None:
    """gunicorn's sync worker says ``Connection: close``; uWSGI's ``--http-socket`` closes
    without saying so (its ``--http11-socket`` keeps them, but a worker then serves one
    connection until the client leaves: Locust's other users time out)."""
    run = bench_runs[runner]
    assert run["status"] == "ok", run.get("error")
    assert run["requests"] > 50
    assert run["failures"] == 0
    assert run["connections_per_request"] == pytest.approx(1.0, abs=0.1), run["connections"]


@pytest.mark.servers
def test_a_bench_run_records_gthread_keeping_connections(bench_runs: dict[str, Any]) -> None:
    run = bench_runs["gunicorn-gthread"]
    assert run["status"] == "ok", run.get("error")
    assert run["requests"] > 50
    assert run["connections"] is not None
    assert run["connections_per_request"] < 0.05, run["connections"]
    # The report says what closing costs, and shows the figure per run.
    page = bench_runs["page"]
    assert "gunicorn-sync closes every connection" in page
    assert "pays a TCP connect" in page
    assert "gunicorn-gthread kept connections alive" in page
    assert "conn/req" in page
