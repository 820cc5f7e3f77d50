"""The pre-check's idle timing reads a warm server: each worker's first request of a page
is cold (imports, templates, a connection), and an idle server is judged by what follows.

An in-thread HTTP server stands in for a server of three workers, each slow on its first
request; nothing is started as a process, so it runs in the fast tier."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from loadtests.traffic import TrafficEntry
from runners.bench import precheck

COLD_S = 0.15
WORKERS = 3


class ColdFirst(http.server.BaseHTTPRequestHandler):
    """Its first ``WORKERS`` requests take ``COLD_S`` each (three cold workers), the rest
    answer at once."""

    served = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with ColdFirst.lock:
            ColdFirst.served += 1
            cold = ColdFirst.served <= WORKERS
        if cold:
            time.sleep(COLD_S)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Server:
    """What ``read_url`` reads of a hosted server."""

    host: str
    port: int
    workers: int


@pytest.fixture
def cold_server() -> Iterator[Server]:
    ColdFirst.served = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ColdFirst)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server("127.0.0.1", httpd.server_address[1], WORKERS)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_the_idle_timing_skips_each_workers_cold_first_request(cold_server: Server) -> None:
    entry = TrafficEntry(weight=1, method="GET", path="/page/", body=None, headers=())
    reading = precheck.read_url(cold_server, "gunicorn-sync", entry)  # type: ignore[arg-type]
    assert reading.error is None and reading.status == 200 and reading.size == 2
    assert len(reading.idle_ms) == precheck.IDLE_REQUESTS
    # Every worker's first request went untimed: the median is the warm page's.
    assert reading.p50_ms is not None and reading.p50_ms < 1000 * COLD_S / 3, reading
    assert ColdFirst.served == precheck.WARM_PER_WORKER * WORKERS + precheck.IDLE_REQUESTS
