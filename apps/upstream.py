"""A small upstream HTTP service for the I/O-bound ``upstream`` endpoint.

Pure asyncio, standard library only, HTTP/1.1 with keep-alive::

    python -m apps.upstream --host 127.0.0.1 --port 8081

- ``GET /delay?ms=N`` answers 200 ``{"ms": N}`` after N milliseconds
  (0 <= N <= 60000; anything else is a 400).
- ``GET /health`` answers 200 ``{"status": "ok"}`` at once.
- ``GET /stats`` answers 200 ``{"requests": N, "cpu_seconds": S}`` at once: the delay
  requests it has answered and its own CPU time (the driver reads it at a measured
  window's edges: the upstream shares the load generator's CPUs, and what it costs
  them is recorded).

Once listening it prints ``upstream listening on http://HOST:PORT`` (with the
real port when ``--port 0`` asks the OS for a free one). SIGTERM and SIGINT
stop it cleanly: the listener closes, open connections are dropped, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from urllib.parse import parse_qs

MAX_DELAY_MS = 60_000
MAX_HEADER_LINES = 100
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY = 1 << 20
IDLE_TIMEOUT = 300.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    501: "Not Implemented",
}


class BadRequest(Exception):
    pass


def _response(status: int, payload: object, *, keep_alive: bool) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _head(status, len(body), keep_alive) + body


def _head(status: int, length: int, keep_alive: bool) -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "Server: bench-upstream\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
        "\r\n"
    ).encode("ascii")


ANSWERED = [0]
"""Delay requests answered (``/stats``)."""


def _route(method: str, target: str) -> tuple[int, object, int]:
    """(status, payload, delay in ms) of one request."""
    path, _, query = target.partition("?")
    if path not in {"/delay", "/health", "/stats"}:
        return 404, {"error": "not found"}, 0
    if method not in {"GET", "HEAD"}:
        return 405, {"error": "method not allowed"}, 0
    if path == "/health":
        return 200, {"status": "ok"}, 0
    if path == "/stats":
        return 200, {"requests": ANSWERED[0], "cpu_seconds": time.process_time()}, 0
    values = parse_qs(query).get("ms", ["0"])
    try:
        ms = int(values[0])
    except ValueError:
        ms = -1
    if not 0 <= ms <= MAX_DELAY_MS:
        return 400, {"error": f"ms must be an integer from 0 to {MAX_DELAY_MS}"}, 0
    return 200, {"ms": ms}, ms


def _parse_head(head: bytes) -> tuple[str, str, bool, int]:
    """(method, target, keep_alive, body length) of one request's head (the bytes before
    the blank line); ``BadRequest`` for what is not HTTP/1.x as this service speaks it."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line")
    method, target, version = parts
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise BadRequest("too many headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest("chunked request bodies are not supported")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise BadRequest("bad content-length") from exc
    if not 0 <= length <= MAX_BODY:
        raise BadRequest("bad content-length")
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection open unless told otherwise; 1.0 the reverse.
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return method, target, keep_alive, length


class UpstreamConnection(asyncio.Protocol):
    """One client connection: requests parsed from its bytes as they come, answered in
    order (pipelining) once each one's delay has passed. A bare ``asyncio.Protocol``: the
    service shares the load generator's CPUs, so it costs as little as it can."""

    def __init__(self, service: UpstreamService) -> None:
        self.service = service
        self.buffer = bytearray()
        self.pending: collections.deque[list[tuple[bytes, bool] | None]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.service.connections.add(self)
        self._idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.service.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()

    def _idle_timer(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._idle_timer()
        self.buffer += data
        try:
            self._parse()
        except BadRequest as exc:
            self._answer(_response(400, {"error": str(exc)}, keep_alive=False), False)
            self.buffer.clear()
            self.closing = True

    def _parse(self) -> None:
        while not self.closing:
            end = self.buffer.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end, sep = self.buffer.find(b"\n\n"), 2
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES or self.buffer.count(b"\n") > (
                    MAX_HEADER_LINES + 1
                ):
                    raise BadRequest("too many headers")
                return
            method, target, keep_alive, length = _parse_head(bytes(self.buffer[:end]))
            if len(self.buffer) < end + sep + length:
                return  # the body is still coming
            del self.buffer[: end + sep + length]
            self._respond(method, target, keep_alive)
            if not keep_alive:
                self.closing = True

    def _respond(self, method: str, target: str, keep_alive: bool) -> None:
        status, payload, ms = _route(method, target)
        response = _response(status, payload, keep_alive=keep_alive)
        if method == "HEAD":
            response = response[: response.index(b"\r\n\r\n") + 4]
        slot: list[tuple[bytes, bool] | None] = [None]
        self.pending.append(slot)
        delayed = status == 200 and isinstance(payload, dict) and "ms" in payload
        if ms:
            loop = asyncio.get_running_loop()
            loop.call_later(ms / 1000, self._done, slot, response, keep_alive, delayed)
        else:
            self._done(slot, response, keep_alive, delayed)

    def _done(
        self,
        slot: list[tuple[bytes, bool] | None],
        response: bytes,
        keep_alive: bool,
        delayed: bool,
    ) -> None:
        if delayed:
            ANSWERED[0] += 1
        slot[0] = (response, keep_alive)
        self._answer_ready()

    def _answer(self, response: bytes, keep_alive: bool) -> None:
        self.pending.append([(response, keep_alive)])
        self._answer_ready()

    def _answer_ready(self) -> None:
        """Write the answers whose turn has come (in the order of their requests)."""
        transport = self.transport
        while self.pending and self.pending[0][0] is not None:
            answer = self.pending.popleft()[0]
            assert answer is not None
            response, keep_alive = answer
            if transport is None or transport.is_closing():
                return
            transport.write(response)
            if not keep_alive:
                self.pending.clear()
                transport.close()
                return


class UpstreamService:
    """Every open connection, so that a stop closes them."""

    def __init__(self) -> None:
        self.connections: set[UpstreamConnection] = set()

    def close_connections(self) -> None:
        for connection in list(self.connections):
            connection.close()


async def serve(host: str, port: int) -> None:
    service = UpstreamService()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamConnection(service), host, port, backlog=2048)
    bound_port = server.sockets[0].getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"upstream listening on http://{shown_host}:{bound_port}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        service.close_connections()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port, 0 for a free one (8081)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
