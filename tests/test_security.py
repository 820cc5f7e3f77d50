"""Security defaults: everything binds 127.0.0.1 unless told otherwise, no debug pages.

(That reports escape every value they show is tested in ``tests/test_report.py``,
``test_every_value_is_escaped``.)
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from loadtests.catalog import WORKLOADS
from runners.bench import matrix as bench_matrix
from runners.bench import options as bench_options
from runners.cli import serve, ui_options
from runners.load.locust import LocustPlan, command
from runners.serving.proctree import tree_pids
from runners.serving.server import ServeConfig, upstream
from tests.servers import get, running

LOOPBACK = "127.0.0.1"
# One runner per server program: each builds its bind option its own way.
ONE_PER_SERVER = (
    "gunicorn-sync",
    "uwsgi",
    "waitress",
    "granian-wsgi",
    "uvicorn",
    "hypercorn",
    "daphne",
)
DEBUG_MARKERS = ("Traceback", "Django Version", "Exception Value", "faultapp-boom-secret-detail")


def listening(pids: Iterable[int]) -> set[str]:
    """The addresses the processes ``pids`` listen on (TCP)."""
    found: set[str] = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        found |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def test_defaults_bind_loopback() -> None:
    assert ServeConfig.__dataclass_fields__["host"].default == LOOPBACK
    assert serve.build_parser().parse_args(["uvicorn"]).host == LOOPBACK
    # The bench driver never sets a host: its servers get the default.
    options, _ = bench_options.parse_options(["--runners", "uvicorn", "--workloads", "json"])
    assert options is not None
    assert "host" not in repr(bench_matrix.matrix_block(options))


def test_bench_locust_has_no_web_ui(tmp_path: Path) -> None:
    argv = command(
        LocustPlan(
            host="http://127.0.0.1:1",
            workload="json",
            variant="sync",
            out_prefix=tmp_path / "run",
            run_time_limit_s=30,
        )
    )
    assert "--headless" in argv
    assert WORKLOADS["json"].user_class in argv


def test_locust_web_ui_binds_loopback_by_default() -> None:
    args = ui_options.build_parser().parse_args(["uvicorn"])
    assert args.web_host == LOOPBACK
    assert args.host == LOOPBACK


@pytest.mark.servers
@pytest.mark.parametrize("name", ONE_PER_SERVER)
def test_servers_listen_on_loopback_only(name: str) -> None:
    with running(name) as server:
        assert urlsplit(server.url).hostname == LOOPBACK
        addresses = listening(tree_pids(server.pid))
        assert addresses == {LOOPBACK}, addresses


@pytest.mark.servers
def test_the_upstream_listens_on_loopback_only() -> None:
    with upstream() as url:
        parts = urlsplit(url)
        assert parts.hostname == LOOPBACK
        bound = {
            c.laddr.ip
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == parts.port
        }
        assert bound == {LOOPBACK}, bound
        assert all(ipaddress.ip_address(ip).is_loopback for ip in bound)


@pytest.mark.servers
@pytest.mark.parametrize(
    ("name", "app"),
    [
        ("gunicorn-sync", "tests.faultapp_boom:application"),
        ("uvicorn", "tests.faultapp_boom:asgi_application"),
    ],
)
def test_a_real_server_shows_no_debug_page(name: str, app: str) -> None:
    """DEBUG is off: a 404 and an unhandled error in a view are short JSON answers,
    with the traceback in the server's log only."""
    with running(name, app=app, workers=1) as server:
        status, body = get(server, "/no/such/page")
        assert status == 404
        assert json.loads(body) == {"error": "not found"}
        status, body = get(server, "/boom")
        assert status == 500
        assert json.loads(body) == {"error": "server error"}
        for marker in DEBUG_MARKERS:
            assert marker.encode() not in body
        status, body = get(server, f"/{server.variant}/json")
        assert status == 200
        log = server.log_path.read_text(errors="replace")
    assert "faultapp-boom-secret-detail" in log  # the details went to the log
