"""Database connections per interface, and the async upstream clients, under real servers.

- Under ASGI Django runs each request's sync work in a new thread, so
  persistent connections (CONN_MAX_AGE=None) are never reused and pile up
  until the garbage collector finds them. The settings turn them off under
  ASGI (a pool on PostgreSQL) and keep them under WSGI; the entry points say
  which interface is in use.
- The async upstream view spreads concurrent calls over a few httpx
  AsyncClients (httpcore's pool costs more per request the more connections
  it holds) and answers them concurrently.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from pytest_django import Settings as SettingsWrapper

from apps.bench import upstream_client
from apps.project import settings as project_settings
from runners.serving.proctree import tree_pids
from runners.serving.server import RunningServer
from tests.conftest import REPO_ROOT
from tests.servers import get, prepare_small, prepared_data_dir, running

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
PG_URL = "postgres://bench@db.example:5432/bench"

# -- the settings ----------------------------------------------------------------


def test_sqlite_connections_persist_under_wsgi_only() -> None:
    assert project_settings._database(None, "wsgi")["CONN_MAX_AGE"] is None
    assert project_settings._database(None, "asgi")["CONN_MAX_AGE"] == 0


def test_postgres_persistent_under_wsgi_pooled_under_asgi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wsgi = project_settings._database(PG_URL, "wsgi")
    assert wsgi["CONN_MAX_AGE"] is None
    assert wsgi["OPTIONS"] == {}

    monkeypatch.setattr(project_settings, "_has_psycopg_pool", lambda: True)
    asgi = project_settings._database(PG_URL, "asgi")
    assert asgi["CONN_MAX_AGE"] == 0  # Django refuses a pool with persistent connections
    options = asgi["OPTIONS"]
    assert isinstance(options, dict) and options["pool"]["max_size"] >= 1

    # Without psycopg_pool the server fails at startup, not on every request.
    monkeypatch.setattr(project_settings, "_has_psycopg_pool", lambda: False)
    with pytest.raises(ImproperlyConfigured, match=r"psycopg\[pool\]"):
        project_settings._database(PG_URL, "asgi")


def test_bad_interface_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_INTERFACE", "cgi")
    with pytest.raises(ValueError, match="BENCH_INTERFACE"):
        project_settings._interface()


PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
from django.conf import settings
print(json.dumps([settings.INTERFACE, settings.DATABASES["default"]["CONN_MAX_AGE"]]))
"""


@pytest.mark.parametrize(
    ("module", "expected"),
    [("apps.project.asgi", ["asgi", 0]), ("apps.project.wsgi", ["wsgi", None])],
)
def test_entry_point_names_its_interface(module: str, expected: list[Any], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BENCH_INTERFACE"}}
    # Even a stray value in the environment does not override the entry point.
    env["BENCH_INTERFACE"] = "wsgi" if expected[0] == "asgi" else "asgi"
    env.update(PYTHONPATH=str(REPO_ROOT), BENCH_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


# -- real servers: open database connections ---------------------------------------


def _open_files(server: RunningServer, name: str) -> dict[int, int]:
    """Per process of the server's tree: descriptors open on the file ``name``."""
    counts: dict[int, int] = {}
    try:
        pids = tree_pids(server.pid)
    except ProcessLookupError:
        return counts
    for pid in pids:
        count = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    count += os.readlink(f"/proc/{pid}/fd/{fd}") == name
                except OSError:
                    continue  # closed meanwhile
        except OSError:
            continue  # process gone
        counts[pid] = count
    return counts


def _hammer(server: RunningServer, paths: list[str], concurrency: int) -> list[int]:
    def one(path: str) -> int:
        return get(server, path)[0]

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, paths))


@pytest.fixture
def sampler() -> Iterator[Callable[[Callable[[], int]], list[int]]]:
    """``sampler(count)``: calls ``count`` every 20 ms until the test ends; the values."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(count: Callable[[], int]) -> list[int]:
        values: list[int] = []

        def loop() -> None:
            while not stop.is_set():
                try:
                    values.append(count())
                except Exception:  # the server has stopped
                    return
                stop.wait(0.02)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)
        return values

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


FEED_PATHS = [f"/async/feed/{1 + i % 20}" for i in range(240)]
CONCURRENCY = 16


@pytest.mark.servers
@pytest.mark.parametrize("name", ["uvicorn", "gunicorn-asgi"])
def test_asgi_server_does_not_accumulate_sqlite_connections(
    name: str, sampler: Callable[[Callable[[], int]], list[int]]
) -> None:
    database = str(prepared_data_dir() / "bench.sqlite3")
    with running(name, workers=1) as server:
        during = sampler(lambda: sum(_open_files(server, database).values()))
        statuses = _hammer(server, FEED_PATHS, CONCURRENCY)
        # A request's connection closes just after its response is sent.
        deadline = time.monotonic() + 3
        while sum((after := _open_files(server, database)).values()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
    assert statuses == [200] * len(FEED_PATHS)
    # Persistent connections left one open per request served (minus what a
    # full gc pass happened to collect): hundreds here.
    assert max(during) <= CONCURRENCY + 2, during
    assert sum(after.values()) == 0, after


@pytest.mark.servers
def test_wsgi_server_keeps_one_persistent_connection_per_worker() -> None:
    database = str(prepared_data_dir() / "bench.sqlite3")
    with running("gunicorn-sync", workers=2) as server:
        paths = [path.replace("/async/", "/sync/") for path in FEED_PATHS[:80]]
        statuses = _hammer(server, paths, 4)
        counts = _open_files(server, database)
    assert statuses == [200] * len(paths)
    assert all(count <= 1 for count in counts.values()), counts  # reused, not reopened
    assert sum(counts.values()) >= 1, counts  # and kept after the request


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped after) for a server with a pool."""
    if not TEST_DATABASE_URL:
        pytest.skip("set TEST_DATABASE_URL (postgres://...) to test PostgreSQL under ASGI")
    import psycopg
    from psycopg import sql

    name = f"bench_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.mark.servers
@pytest.mark.slow
def test_asgi_server_uses_a_bounded_postgres_pool(
    postgres_url: str, tmp_path: Path, sampler: Callable[[Callable[[], int]], list[int]]
) -> None:
    import psycopg

    name = urlsplit(postgres_url).path.lstrip("/")
    env = {"BENCH_DATA_DIR": str(tmp_path), "DATABASE_URL": postgres_url, "REDIS_URL": ""}
    prepare_small(env)

    def backends() -> int:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
        return int(row[0]) if row else 0

    with running("uvicorn", workers=1, env=env) as server:
        during = sampler(backends)
        statuses = _hammer(server, FEED_PATHS, CONCURRENCY)
    assert statuses == [200] * len(FEED_PATHS)
    options = project_settings._database(postgres_url, "asgi")["OPTIONS"]
    assert isinstance(options, dict)
    # Persistent connections ran out of PostgreSQL's 100 slots within seconds.
    assert 1 <= max(during) <= options["pool"]["max_size"], during


# -- the async upstream view ---------------------------------------------------------


@pytest.mark.servers
def test_async_upstream_view_serves_concurrent_requests_concurrently() -> None:
    count, ms = 24, 250
    with running("uvicorn", workers=1, with_upstream=True) as server:
        assert get(server, "/async/upstream?ms=0")[0] == 200  # warm
        started = time.perf_counter()
        statuses = _hammer(server, [f"/async/upstream?ms={ms}"] * count, count)
        elapsed = time.perf_counter() - started
    assert statuses == [200] * count
    # One after the other would take count x ms = 6 s.
    assert elapsed < 2.5, f"{count} concurrent {ms} ms calls took {elapsed:.2f} s"


def test_async_clients_spread_concurrent_requests(
    settings: SettingsWrapper, upstream_url: str
) -> None:
    settings.UPSTREAM_URL = upstream_url
    count, per_client = 20, upstream_client.REQUESTS_PER_ASYNC_CLIENT
    peaks: list[int] = []

    async def run() -> tuple[upstream_client.AsyncClients, list[int], float]:
        import asyncio

        clients = upstream_client.async_clients()
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                peaks.append(max(clients.in_flight, default=0))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(clients.get(upstream_client.delay_url(200)) for _ in range(count))
        )
        elapsed = time.perf_counter() - started
        done.set()
        await watcher
        for client in clients.clients:
            await client.aclose()
        return clients, [r.status_code for r in responses], elapsed

    clients, statuses, elapsed = async_to_sync(run)()
    assert statuses == [200] * count
    assert elapsed < 2.0  # concurrently, not 20 x 200 ms
    assert len(clients.clients) == -(-count // per_client)  # 3 clients for 20 requests
    assert max(peaks) <= per_client
    assert clients.in_flight == [0] * len(clients.clients)


def test_one_ssl_context_for_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        made.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", counting)
    monkeypatch.setattr(upstream_client, "_ssl_context", None)

    async def new_loop_clients() -> None:
        upstream_client.async_clients()._pick()

    for _ in range(3):  # as async views under WSGI do: a new loop per request
        async_to_sync(new_loop_clients)()
    # httpx would build (and load the CA bundle into) one per client: ~40 ms each.
    assert len(made) == 1
