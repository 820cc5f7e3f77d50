"""The PostgreSQL (psycopg 3) and Redis paths, for real.

Needs TEST_DATABASE_URL (a postgres:// URL whose user may create databases,
e.g. postgres://postgres@127.0.0.1:5432/test) and TEST_REDIS_URL (e.g.
redis://127.0.0.1:6379/0); skipped without them. CI sets both.

On a database of its own (``bench_test_<random>``, dropped afterwards) it:

1. runs ``python -m apps.manage prepare`` with a small seed, twice (the second
   run must find everything done), with DATABASE_URL and REDIS_URL set;
2. checks, in a child process with those settings, that Django really talks
   to PostgreSQL and Redis;
3. runs the app test modules (every endpoint sync and async through Django's
   test clients, the TechEmpower rules, query counts, bad input, seeding) in a
   child pytest with DATABASE_URL and REDIS_URL set. pytest-django creates and
   drops its own ``test_bench_test_<random>`` database for that run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import REPO_ROOT

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")

pytestmark = [
    pytest.mark.skipif(
        not (TEST_DATABASE_URL and TEST_REDIS_URL),
        reason="set TEST_DATABASE_URL (postgres://...) and TEST_REDIS_URL (redis://...) "
        "to test the PostgreSQL and Redis paths",
    ),
    pytest.mark.slow,
    pytest.mark.timeout(400),
]

SMALL_ARGS = ["--users", "30", "--follows", "5", "--posts", "200"]
SMALL_ARGS += ["--likes", "600", "--comments", "400"]
APP_TEST_MODULES = [
    "tests/test_app_techempower.py",
    "tests/test_app_social.py",
    "tests/test_app_errors.py",
    "tests/test_app_upstream.py",
    "tests/test_app_seed.py",
]

PROBE = """
from django.core.cache import cache
from django.db import connection
from apps.bench.models import Member, World
print("vendor", connection.vendor)
connection.ensure_connection()
print("driver", type(connection.connection).__module__.split(".")[0])
from django.core.cache import caches
print("cache", type(caches["default"]).__name__)
key = "bench-probe-" + __import__("uuid").uuid4().hex
cache.set(key, {"ok": 1}, 30)
print("cache-roundtrip", cache.get(key))
cache.delete(key)
print("worlds", World.objects.count(), "members", Member.objects.count())
"""


def _drop(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def bench_database() -> Iterator[str]:
    """A fresh PostgreSQL database of our own; yields its URL, drops it after."""
    import psycopg
    from psycopg import sql

    name = f"bench_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(TEST_DATABASE_URL)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        _drop(name)
        _drop(f"test_{name}")  # pytest-django's, should the child run die early


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "BENCH_DATA_DIR": str(data_dir),
    }
    for name in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "BENCH_MIDDLEWARE", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def test_postgres_and_redis(bench_database: str, tmp_path: Path) -> None:
    env = _env(bench_database, tmp_path)

    first = _run(["-m", "apps.manage", "prepare", *SMALL_ARGS], env, 120)
    assert first.stdout.startswith("prepare: migrated and seeded"), first.stdout
    # Nothing to do the second time, and it says so (no timing here:
    # a process start and Django's setup took 2 s on a slow machine).
    second = _run(["-m", "apps.manage", "prepare", *SMALL_ARGS], env, 60)
    assert second.stdout.startswith("prepare: already done"), second.stdout

    probe = _run(["-m", "apps.manage", "shell", "-c", PROBE], env, 60).stdout.splitlines()
    assert "vendor postgresql" in probe
    assert "driver psycopg" in probe
    assert "cache RedisCache" in probe
    assert "cache-roundtrip {'ok': 1}" in probe
    assert "worlds 10000 members 30" in probe

    # The whole app suite, on PostgreSQL + Redis (minus the SQLite-file test).
    suite = _run(
        [
            "-m",
            "pytest",
            *APP_TEST_MODULES,
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "not sqlite",
        ],
        env,
        360,
    )
    assert " passed" in suite.stdout
    assert " failed" not in suite.stdout
    assert " error" not in suite.stdout
