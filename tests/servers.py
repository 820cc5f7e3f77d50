"""Helpers for tests that start real servers (mark them ``@pytest.mark.servers``).

- ``prepared_data_dir()``: a BENCH_DATA_DIR migrated and seeded once per test
  process (small sizes, about a second), removed at exit. ``sqlite_env()`` is
  the server environment pointing at it (DATABASE_URL/REDIS_URL blanked).
- ``running(name, **overrides)``: start a runner pinned to the server CPUs,
  with a small worker count, on the prepared data; on exit, stop it and
  assert that no process it ever had is left.
- ``get(server, path)``, ``get_json``: plain HTTP to the server.
- ``assert_no_processes(pids)``: none of ``pids`` is alive (zombies aside).
- ``wait_until(predicate, timeout, why)``: an event-based wait with a deadline.

Fixtures: import them under a different name, e.g.
``from tests.servers import data_dir_fixture  # noqa: F401`` gives ``data_dir``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

from runners.results.schema import SCHEMA_PATH
from runners.serving.commands import SINGLE_PROCESS_SERVERS
from runners.serving.cpus import default_placement
from runners.serving.net import http_get
from runners.serving.proctree import tree_pids
from runners.serving.registry import Runner, get_runner
from runners.serving.server import RunningServer, ServeConfig, prepare_database, serve


def sqlite_env_for(data_dir: Path) -> dict[str, str]:
    """Server environment for an SQLite file in ``data_dir`` (DATABASE_URL and
    REDIS_URL blanked, which the settings read as unset)."""
    return {"BENCH_DATA_DIR": str(data_dir), "DATABASE_URL": "", "REDIS_URL": ""}


def prepare_small(env: dict[str, str]) -> None:
    """Migrate and seed a small data set (about a second) with the real command."""
    prepare_database(env, users=20, follows=3, posts=100, likes=100, comments=50)


@functools.cache
def prepared_data_dir() -> Path:
    """A BENCH_DATA_DIR with a small seeded SQLite database, made once per process."""
    path = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    atexit.register(shutil.rmtree, path, True)
    prepare_small(sqlite_env_for(path))
    return path


def sqlite_env() -> dict[str, str]:
    """Server environment for the prepared SQLite data."""
    return sqlite_env_for(prepared_data_dir())


@functools.cache
def _log_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-server-logs-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@pytest.fixture(scope="session", name="data_dir")
def data_dir_fixture() -> Path:
    """The prepared BENCH_DATA_DIR (see ``prepared_data_dir``)."""
    return prepared_data_dir()


def server_cpus() -> tuple[int, ...]:
    """The CPUs tests pin servers to: the server half of the default placement."""
    return default_placement().server


def small_workers(runner: Runner) -> int:
    """The worker count tests use: 2, or 1 for single-process servers."""
    return 1 if runner.server in SINGLE_PROCESS_SERVERS else 2


def assert_no_processes(pids: Iterable[int], timeout: float = 5.0) -> None:
    """Fail unless none of ``pids`` is alive within ``timeout`` (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {' '.join(proc.cmdline())[:100]}")
            except psutil.NoSuchProcess:
                continue
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left: {left}"


def wait_until(predicate: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    """Until ``predicate()`` holds; ``AssertionError`` with ``why()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s: {why()}")
        time.sleep(0.1)


@contextlib.contextmanager
def running(
    runner_name: str, log_dir: Path | None = None, **overrides: Any
) -> Iterator[RunningServer]:
    """Serve the prepared app with ``runner_name``; checks nothing is left after.

    ``overrides`` are ``ServeConfig`` fields (``workers``, ``variant``, ``gc``,
    ``with_upstream``, ``app``...). Defaults: ``small_workers``, the server
    CPUs, the prepared SQLite data.
    """
    runner = get_runner(runner_name)
    settings: dict[str, Any] = {
        "workers": small_workers(runner),
        "cpus": server_cpus(),
        "env": sqlite_env(),
        "startup_timeout": 60.0,
        "grace": 10.0,
    }
    settings.update(overrides)
    directory = log_dir or _log_dir()
    config = ServeConfig(runner=runner, log_path=directory / f"{runner_name}.log", **settings)
    seen: set[int] = set()
    with serve(config) as server:
        seen.update(tree_pids(server.pid))
        try:
            yield server
        finally:
            with contextlib.suppress(ProcessLookupError):
                seen.update(tree_pids(server.pid))
    assert_no_processes(seen, timeout=0.0)


def get(server: RunningServer, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """``GET path`` on ``server`` (path starts with ``/``)."""
    return http_get("127.0.0.1", server.port, path, timeout)


def get_json(server: RunningServer, path: str) -> Any:
    status, body = get(server, path)
    assert status == 200, (path, status, body[:500])
    return json.loads(body)


# --- the bench driver, as a user runs it ------------------------------------------------

#: A small database (seeding takes about a second) for the bench tests.
BENCH_SEED = "users=30,follows=3,posts=200,likes=400,comments=100"
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BenchRun:
    """One ``python -m runners.bench`` invocation: its results folder and process."""

    out: Path
    proc: subprocess.CompletedProcess[str]

    @property
    def results(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "results.json").read_text())
        return data

    def check(self) -> dict[str, Any]:
        """The results of a run that exited 0, matches the schema and has no failed run."""
        assert self.proc.returncode == 0, self.proc.stdout[-3000:] + self.proc.stderr[-3000:]
        results = self.results
        schema = json.loads(SCHEMA_PATH.read_text())
        jsonschema.validate(results, schema, cls=jsonschema.Draft202012Validator)
        assert "schema_errors" not in results
        assert all(r["status"] == "ok" for r in results["runs"]), [
            (r["id"], r["error"]) for r in results["runs"]
        ]
        return results


def run_bench(out: Path, data_dir: Path, *args: str, timeout: float = 300) -> BenchRun:
    """Run the bench CLI with ``args`` on SQLite in ``data_dir``, small seed, into ``out``."""
    env = {**os.environ, "PYTHONPATH": str(_REPO_ROOT), "BENCH_DATA_DIR": str(data_dir)}
    for name in ("DATABASE_URL", "REDIS_URL", "BENCH_MIDDLEWARE", "CI"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "runners.bench", *args, "--seed", BENCH_SEED, "--output", str(out)],
        cwd=_REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return BenchRun(out, proc)
