"""The upstream service (apps.upstream) and the I/O-bound ``upstream`` views."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import httpx
import pytest
from asgiref.sync import async_to_sync
from pytest_django import Settings as SettingsWrapper

from apps.bench import upstream_client
from tests.conftest import Api, assert_gone, start_upstream


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host, int(port)


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[str, bytes]:
    """Read one response (head + Content-Length body) from a keep-alive socket."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        rest += chunk
    buffer[:] = rest[length:]
    return lines[0], rest[:length]


# -- the server on its own ---------------------------------------------------


def test_upstream_keep_alive_and_routes(upstream_url: str) -> None:
    with socket.create_connection(_host_port(upstream_url), timeout=5) as sock:
        buffer = bytearray()
        requests = [
            (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "200", b'{"status":"ok"}'),
            (b"GET /delay?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n", "200", b'{"ms":0}'),
            (b"GET /delay?ms=30 HTTP/1.1\r\nHost: x\r\n\r\n", "200", b'{"ms":30}'),
            (b"GET /delay?ms=nope HTTP/1.1\r\nHost: x\r\n\r\n", "400", None),
            (b"GET /delay?ms=-1 HTTP/1.1\r\nHost: x\r\n\r\n", "400", None),
            (b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", "404", None),
            (b"POST /delay HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "405", None),
        ]
        for raw, status, body in requests:
            sock.sendall(raw)
            started = time.perf_counter()
            status_line, content = _read_response(sock, buffer)
            assert status_line.split()[1] == status, status_line
            if body is not None:
                assert content == body
            if raw.startswith(b"GET /delay?ms=30 "):
                assert time.perf_counter() - started >= 0.03
        # Pipelined requests on the same connection are answered in order.
        sock.sendall(b"GET /delay?ms=1 HTTP/1.1\r\n\r\nGET /delay?ms=2 HTTP/1.1\r\n\r\n")
        assert _read_response(sock, buffer)[1] == b'{"ms":1}'
        assert _read_response(sock, buffer)[1] == b'{"ms":2}'
        # Connection: close is honoured.
        sock.sendall(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        _read_response(sock, buffer)
        assert sock.recv(10) == b""


def test_upstream_delays_concurrently(upstream_url: str) -> None:
    async def fetch_all() -> list[int]:
        async with httpx.AsyncClient(base_url=upstream_url) as client:
            responses = await asyncio.gather(
                *(client.get("/delay", params={"ms": 300}) for _ in range(10))
            )
        return [r.status_code for r in responses]

    started = time.perf_counter()
    assert asyncio.run(fetch_all()) == [200] * 10
    assert time.perf_counter() - started < 2.5  # not 10 x 300 ms


@pytest.mark.servers
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_upstream_stops_cleanly(sig: int) -> None:
    upstream = start_upstream()
    assert httpx.get(f"{upstream.url}/health").status_code == 200
    # An idle keep-alive connection must not keep it alive.
    with httpx.Client() as client:
        assert client.get(f"{upstream.url}/delay?ms=0").json() == {"ms": 0}
        assert upstream.stop(sig) == 0
    assert_gone(upstream.process.pid)


# -- the views ---------------------------------------------------------------


@pytest.mark.parametrize("ms", [0, 120])
def test_upstream_view(api: Api, settings: SettingsWrapper, upstream_url: str, ms: int) -> None:
    settings.UPSTREAM_URL = upstream_url
    started = time.perf_counter()
    resp = api.get(f"upstream?ms={ms}")
    elapsed = time.perf_counter() - started
    assert resp.status == 200, resp.content
    assert resp.content_type == "application/json"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert resp.json() == {"ms": ms, "upstream": {"ms": ms}}
    assert elapsed >= ms / 1000


def test_upstream_view_without_ms_means_0(
    api: Api, settings: SettingsWrapper, upstream_url: str
) -> None:
    settings.UPSTREAM_URL = upstream_url
    assert api.get("upstream").json() == {"ms": 0, "upstream": {"ms": 0}}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_upstream_unreachable_is_502(api: Api, settings: SettingsWrapper) -> None:
    settings.UPSTREAM_URL = f"http://127.0.0.1:{_closed_port()}"
    resp = api.get("upstream?ms=0")
    assert resp.status == 502
    assert resp.content_type == "application/json"
    assert resp.json()["error"] == "upstream unreachable"


def test_upstream_error_status_is_502(
    api: Api, settings: SettingsWrapper, upstream_url: str
) -> None:
    # A path the upstream does not know: it answers 404, the view reports 502.
    settings.UPSTREAM_URL = f"{upstream_url}/missing"
    resp = api.get("upstream?ms=0")
    assert resp.status == 502
    assert resp.json() == {"error": "upstream error", "upstream_status": 404}


def test_sync_client_is_shared() -> None:
    assert upstream_client.sync_client() is upstream_client.sync_client()


def test_async_clients_per_loop_and_stale_loops_dropped() -> None:
    async def clients() -> tuple[upstream_client.AsyncClients, upstream_client.AsyncClients]:
        return upstream_client.async_clients(), upstream_client.async_clients()

    first_a, first_b = async_to_sync(clients)()
    assert first_a is first_b
    second_a, _ = async_to_sync(clients)()
    assert second_a is not first_a  # a new loop, new clients
    # The first loop is closed: its clients were dropped when the second's were made.
    assert list(upstream_client._async_clients.values()) == [second_a]
