"""New TCP connections per request, counted by the load generator as its users connect
(``loadtests/locustfile.py`` hooks geventhttpclient's ``after_connect``, and
``loadtests/pacing.py`` keeps the count per window).

A real short bench run records the figure per run (``connections``,
``connections_per_request``): it must tell the servers that close every
connection (gunicorn's sync worker, uWSGI's ``--http-socket``) from one that keeps
them alive (gunicorn's gthread worker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtests.pacing import Pacer
from tests.servers import run_bench


def test_a_window_counts_the_connections_opened_inside_it() -> None:
    now = [10.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.connected()  # no window: not counted
    window = pacer.open_window(11.0, 13.0)
    pacer.connected()  # before the window opens
    now[0] = 11.5
    pacer.connected()
    pacer.connected()
    now[0] = 13.0
    pacer.connected()  # at its end: outside
    assert window.connects == 2


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
