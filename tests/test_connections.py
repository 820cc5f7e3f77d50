"""New TCP connections per request, measured from the kernel (runners/sampling/connections.py).

One persistent HTTP/1.1 client (``http.client.HTTPConnection``, which reuses
its connection while the server keeps it open and reconnects when the server
closes it) makes the same requests to each runner; the counter must tell a
server that closes every connection (gunicorn's sync worker) from those that
keep them alive (gunicorn's gthread worker).
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time

import pytest

from runners.sampling.connections import ConnectionCounter
from runners.serving.server import RunningServer
from tests.servers import running

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
