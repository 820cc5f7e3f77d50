"""Shared fixtures: a small seeded database, sync/async API callers, the upstream server.

Async views are exercised with Django's AsyncClient run through
``async_to_sync`` (as Django's own TestCase runs async tests): the ORM calls
the views make then come back to the test's thread, so they see the test's
transaction and its rollback, and query counting works for both variants.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from pytest_django import DjangoDbBlocker

from apps.bench.seed import SeedSizes, is_seeded, seed
from tests.sharing import (  # noqa: F401 - the hooks that let a measuring module run alone
    pytest_runtest_protocol,
    pytest_terminal_summary,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL = SeedSizes(users=30, follows=5, posts=200, likes=600, comments=400)
"""The social graph the app tests run against (World and Fortune are full size)."""
VARIANTS = ("sync", "async")
TINY_ARGS = [
    "--users",
    "12",
    "--follows",
    "3",
    "--posts",
    "40",
    "--likes",
    "80",
    "--comments",
    "60",
]
"""Seed options for the tests that prepare an SQLite file in a child process."""


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> None:
    """Seed the test database once per session (committed; tests roll back on top)."""
    with django_db_blocker.unblock():
        seed(SMALL)


@pytest.fixture
def seeded(db: None) -> SeedSizes:
    """The seeded database (re-seeded if a transactional test flushed it)."""
    if not is_seeded(SMALL):
        seed(SMALL)
    return SMALL


@pytest.fixture(scope="session", autouse=True)
def _private_cache_prefix() -> Iterator[None]:
    """A key prefix of our own, in case the cache is a shared Redis."""
    from django.conf import settings

    caches = {alias: {**config} for alias, config in settings.CACHES.items()}
    for config in caches.values():
        config["KEY_PREFIX"] = f"bench-test-{uuid.uuid4().hex[:12]}"
    with override_settings(CACHES=caches):
        yield
        from django.core.cache import cache

        from apps.bench.models import WORLD_ROWS
        from apps.bench.views_common import world_key

        cache.delete_many([world_key(i) for i in range(1, WORLD_ROWS + 1)])


# -- calling the app ---------------------------------------------------------


@dataclass(frozen=True)
class Resp:
    """What a test needs of a response, the same for both variants."""

    status: int
    headers: dict[str, str]
    content: bytes
    templates: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def _resp(response: HttpResponseBase) -> Resp:
    assert isinstance(response, HttpResponse), type(response)
    templates = [t.name or "" for t in getattr(response, "templates", [])]
    return Resp(response.status_code, dict(response.headers), response.content, templates)


@dataclass(frozen=True)
class Api:
    """Calls ``/<variant>/<path>`` through Client (sync) or AsyncClient (async)."""

    variant: str
    enforce_csrf_checks: bool = False

    def url(self, path: str) -> str:
        return f"/{self.variant}/{path}"

    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> Resp:
        return call(method, self.url(path), body, content_type, self)

    def get(self, path: str) -> Resp:
        return self.request("GET", path)

    def post(self, path: str, data: Any = None, *, raw: bytes | None = None) -> Resp:
        body = raw if raw is not None else json.dumps(data).encode()
        return self.request("POST", path, body)


def call(
    method: str,
    url: str,
    body: bytes = b"",
    content_type: str = "application/json",
    api: Api | None = None,
) -> Resp:
    """One request to any URL, through the test client of ``api.variant``."""
    variant = api.variant if api else "sync"
    csrf = api.enforce_csrf_checks if api else False
    if variant == "sync":
        client = Client(enforce_csrf_checks=csrf)
        return _resp(client.generic(method, url, body, content_type))
    async_client = AsyncClient(enforce_csrf_checks=csrf)

    async def send() -> HttpResponseBase:
        return await async_client.generic(method, url, body, content_type)

    return _resp(async_to_sync(send)())


@pytest.fixture(params=VARIANTS)
def api(request: pytest.FixtureRequest) -> Api:
    """Parametrises a test over the sync and the async views."""
    return Api(str(request.param))


# -- the upstream service ----------------------------------------------------


@dataclass
class UpstreamProcess:
    process: subprocess.Popen[str]
    url: str

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        returncode = self.process.wait(timeout)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return returncode


def start_upstream() -> UpstreamProcess:
    """``python -m apps.upstream`` on a free loopback port (the OS picks it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.upstream", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    prefix = "upstream listening on "
    if not line.startswith(prefix):
        process.kill()
        process.wait()
        raise AssertionError(f"unexpected first line from apps.upstream: {line!r}")
    return UpstreamProcess(process, line.removeprefix(prefix))


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="session")
def upstream_url() -> Iterator[str]:
    """The base URL of a real upstream server, stopped (and checked gone) at the end."""
    upstream = start_upstream()
    try:
        yield upstream.url
    finally:
        assert upstream.stop() == 0
        assert_gone(upstream.process.pid)


# -- a prepared SQLite file, made by the real command --------------------------


@dataclass(frozen=True)
class PreparedSqlite:
    data_dir: Path
    env: dict[str, str]
    results: list[subprocess.CompletedProcess[str]]
    """The two ``prepare`` runs, started at the same time."""


@pytest.fixture(scope="session")
def prepared_sqlite(tmp_path_factory: pytest.TempPathFactory) -> PreparedSqlite:
    """A fresh BENCH_DATA_DIR prepared by two concurrent ``prepare`` commands."""
    data_dir = tmp_path_factory.mktemp("bench-data")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "BENCH_DATA_DIR": str(data_dir)}
    for name in ("DATABASE_URL", "REDIS_URL", "BENCH_MIDDLEWARE"):
        env.pop(name, None)
    command = [sys.executable, "-m", "apps.manage", "prepare", *TINY_ARGS]
    processes = [
        subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    return PreparedSqlite(data_dir, env, results)


# -- the test tiers ------------------------------------------------------------
#
# A test that starts a server, Locust, the upstream service, a bench or ui run
# or pyperf workers is marked ``servers``; one that drives Chromium, ``browser``.
# The fast tier (``tox -e fast``) runs the others. The guard below keeps the
# markers honest: an unmarked test that starts such a process fails at once.

SERVER_MODULES = (
    "gunicorn",
    "uvicorn",
    "granian",
    "hypercorn",
    "daphne",
    "waitress",
    "pyuwsgi",
    "uwsgi",
    "locust",
    "apps.upstream",
    "pyperf",
)
SERVER_PROGRAMS = ("chromium", "wrk", "gunicorn", "uvicorn", "granian", "locust", "py-spy")


def starts_a_server(args: Any) -> bool:
    """Whether a ``Popen`` argument list runs a server, Locust, the upstream service, pyperf
    or a browser (directly or through the launcher, ``launch.py ... -- ARGV``).

    The harness's own commands (``python -m runners.bench``, ``runners.cli.ui``...) are
    not: a test may run them to check that a bad option stops them before anything
    starts; the fast tier's short per-test timeout catches one that starts a server."""
    argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
    if any(Path(a).name == "launch.py" for a in argv) and "--" in argv:
        return starts_a_server(argv[argv.index("--") + 1 :])
    if argv and Path(argv[0]).name in SERVER_PROGRAMS:
        return True
    return any(
        flag == "-m" and any(module == m or module.startswith(m + ".") for m in SERVER_MODULES)
        for flag, module in itertools.pairwise(argv)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the session's upstream service starts a server (once)."""
    for item in items:
        if "upstream_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(autouse=True)
def _markers_say_what_starts(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("servers") or request.node.get_closest_marker("browser"):
        return
    real_init = subprocess.Popen.__init__
    test = request.node.nodeid

    def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if starts_a_server(args):
            raise AssertionError(
                f"{test} starts {' '.join(map(str, args))[:120]!r}: mark it "
                "@pytest.mark.servers (or browser) so the fast tier leaves it out"
            )
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
