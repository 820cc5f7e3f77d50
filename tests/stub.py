"""A loopback HTTP stub the Locust tests drive instead of a Django server, when what
matters is a behaviour the test chooses:

- ``fast``: answers ``/sync/json`` at once (404 elsewhere);
- ``half-wrong``: every other answer has the wrong body (a failure for Locust's check);
- ``stall``: once per second, 200 ms during which nothing is answered;
- ``hang``: never answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

HELLO = b'{"message": "Hello, World!"}'
GOODBYE = b'{"message": "Goodbye"}'
Behaviour = Literal["fast", "half-wrong", "stall", "hang"]


class Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = behaviour
        self.began = time.monotonic()
        self.lock = threading.Lock()
        self.served = 0
        self.paths: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Stub

    def do_GET(self) -> None:
        stub = self.server
        with stub.lock:
            stub.served += 1
            n = stub.served
            stub.paths.add(self.path)
        if stub.behaviour == "hang":
            time.sleep(30)
            return
        if stub.behaviour == "stall":
            phase = (time.monotonic() - stub.began) % 1.0
            if phase < 0.2:
                time.sleep(0.2 - phase)
        if self.path != "/sync/json":
            status, body = 404, b"{}"
        else:
            wrong = stub.behaviour == "half-wrong" and n % 2 == 0
            status, body = 200, GOODBYE if wrong else HELLO
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
