"""A loopback HTTP stub the Locust tests drive instead of a Django server, when what
matters is a behaviour the test chooses:

- ``fast``: answers ``/sync/json`` at once (404 elsewhere);
- ``half-wrong``: every other answer has the wrong body (a failure for Locust's check);
- ``stall``: once per second, 200 ms during which nothing is answered;
- ``hang``: never answers;
- ``any``: answers any method on any path, with a short body: 200, or N for
  ``/status/N``; it counts the requests by method and path (``hits``), keeps the body
  and headers each one last had (``received``) and counts connections (``connections``).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

HELLO = b'{"message": "Hello, World!"}'
GOODBYE = b'{"message": "Goodbye"}'
Behaviour = Literal["fast", "half-wrong", "stall", "hang", "any"]


class Stub(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # Locust's users connect at once (5 drops SYNs: 1 s stalls)

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = behaviour
        self.began = time.monotonic()
        self.lock = threading.Lock()
        self.served = 0
        self.paths: set[str] = set()
        self.hits: Counter[str] = Counter()
        self.received: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.connections = 0

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that left
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Stub

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
        if self.server.behaviour == "any":
            # Headers and body leave in two writes: without this, the body waits for the
            # client's delayed ACK of the headers (40 ms a request).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        stub = self.server
        request = f"{self.command} {self.path}"
        body_in = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with stub.lock:
            stub.served += 1
            n = stub.served
            stub.paths.add(self.path)
            stub.hits[request] += 1
            stub.received[request] = (body_in, dict(self.headers))
        if stub.behaviour == "hang":
            time.sleep(30)
            return
        if stub.behaviour == "stall":
            phase = (time.monotonic() - stub.began) % 1.0
            if phase < 0.2:
                time.sleep(0.2 - phase)
        if stub.behaviour == "any":
            status = int(self.path[8:]) if self.path.startswith("/status/") else 200
            body = b"ok"
        elif self.path != "/sync/json":
            status, body = 404, b"{}"
        else:
            wrong = stub.behaviour == "half-wrong" and n % 2 == 0
            status, body = 200, GOODBYE if wrong else HELLO
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(behaviour: Behaviour) -> Iterator[Stub]:
    server = Stub(behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
