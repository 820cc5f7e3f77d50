"""A small upstream HTTP service for the I/O-bound ``upstream`` endpoint.

Pure asyncio, standard library only, HTTP/1.1 with keep-alive::

    python -m apps.upstream --host 127.0.0.1 --port 8081

- ``GET /delay?ms=N`` answers 200 ``{"ms": N}`` after N milliseconds
  (0 <= N <= 60000; anything else is a 400).
- ``GET /health`` answers 200 ``{"status": "ok"}`` at once.

Once listening it prints ``upstream listening on http://HOST:PORT`` (with the
real port when ``--port 0`` asks the OS for a free one). SIGTERM and SIGINT
stop it cleanly: the listener closes, open connections are dropped, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

MAX_DELAY_MS = 60_000
MAX_HEADER_LINES = 100
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
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "Server: bench-upstream\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def _route(method: str, target: str) -> tuple[int, object]:
    url = urlsplit(target)
    if url.path not in {"/delay", "/health"}:
        return 404, {"error": "not found"}
    if method not in {"GET", "HEAD"}:
        return 405, {"error": "method not allowed"}
    if url.path == "/health":
        return 200, {"status": "ok"}
    values = parse_qs(url.query).get("ms", ["0"])
    try:
        ms = int(values[0])
    except ValueError:
        ms = -1
    if not 0 <= ms <= MAX_DELAY_MS:
        return 400, {"error": f"ms must be an integer from 0 to {MAX_DELAY_MS}"}
    if ms:
        await asyncio.sleep(ms / 1000)
    return 200, {"ms": ms}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bool] | None:
    """Read one request; return (method, target, keep_alive), None at EOF."""
    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        raw = await reader.readline()
        if raw in {b"\r\n", b"\n", b""}:
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadRequest("too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest("chunked request bodies are not supported")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise BadRequest("bad content-length") from exc
    if not 0 <= length <= MAX_BODY:
        raise BadRequest("bad content-length")
    if length:
        await reader.readexactly(length)
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection open unless told otherwise; 1.0 the reverse.
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return method, target, keep_alive


class UpstreamServer:
    def __init__(self) -> None:
        self._connections: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except BadRequest as exc:
                    writer.write(_response(400, {"error": str(exc)}, keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                method, target, keep_alive = request
                status, payload = await _route(method, target)
                response = _response(status, payload, keep_alive=keep_alive)
                if method == "HEAD":
                    response = response[: response.index(b"\r\n\r\n") + 4]
                writer.write(response)
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            return  # client went away, idled out, or sent a line too long
        except asyncio.CancelledError:
            # Shutdown (close_connections). Ending normally rather than
            # re-raising: Python 3.11's start_server logs an error for
            # connection tasks that end cancelled.
            return
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close_connections(self) -> None:
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve(host: str, port: int) -> None:
    upstream = UpstreamServer()
    server = await asyncio.start_server(upstream.handle, host, port, backlog=2048)
    bound_port = server.sockets[0].getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"upstream listening on http://{shown_host}:{bound_port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await upstream.close_connections()
        await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port, 0 for a free one (8081)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
