"""--memory-profile: the servers trace their workers and write snapshots on request."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from runners.sampling import memprofile
from runners.sampling.memory import sample_tree
from runners.serving.servers import memprofile as shim
from tests.servers import get, running, sqlite_env

MIB = 2**20
PROBE = "tests/alloc_probe.py"


def _probe_bytes(snapshot: dict[str, Any]) -> int:
    return sum(row["bytes"] for row in snapshot["top_lines"] if row["file"] == PROBE)


def _profiled(
    runner: str, folder: Path, workers: int, **overrides: Any
) -> tuple[dict[int, Any], dict[Any, Any]]:
    """Serve the probe profiled, allocate 10 MiB in one worker, snapshot every worker.
    Returns (snapshots by pid, roles by pid)."""
    app = "tests.alloc_probe:asgi_application" if runner == "uvicorn" else None
    env = {**sqlite_env(), **memprofile.server_env(folder)}
    with running(
        runner, workers=workers, env=env, app=app or "tests.alloc_probe:application", **overrides
    ) as server:
        status, body = get(server, "/alloc")
        assert status == 200, body
        allocated_in = json.loads(body)["pid"]
        tree = sample_tree(server.pid)
        workers_pids = [p.pid for p in tree.workers]
        assert allocated_in in workers_pids
        found = memprofile.snapshots(folder, "end", workers_pids, timeout=60)
    assert set(workers_pids) <= set(found), (workers_pids, sorted(found))
    return found, {p.pid: p.role for p in tree.processes} | {"allocated_in": allocated_in}


@pytest.mark.servers
@pytest.mark.parametrize(
    ("runner", "workers"),
    [
        ("gunicorn-sync-preload", 2),
        ("uwsgi", 1),
        ("granian-wsgi", 1),
        ("waitress", 1),
        ("uvicorn", 2),
    ],
)
def test_ten_mib_of_bytes_are_attributed_to_their_module(
    tmp_path: Path, runner: str, workers: int
) -> None:
    found, roles = _profiled(runner, tmp_path / "mp", workers)
    worker = found[roles["allocated_in"]]
    assert _probe_bytes(worker) >= 9 * MIB, worker["top_lines"][:5]
    assert worker["traced_bytes"] >= 10 * MIB
    # The package grouping sees the same bytes (tests/ is none of django, app, server, stdlib).
    rest = {row["package"]: row["bytes"] for row in worker["by_package"]}["rest"]
    assert rest >= 9 * MIB
    assert worker["objects"]["total"] > 1000
    others = [snap for pid, snap in found.items() if pid != roles["allocated_in"]]
    assert all(_probe_bytes(snap) < MIB for snap in others)  # one worker allocated


@pytest.mark.servers
def test_a_preforking_master_records_the_fork_and_workers_trace_from_it(tmp_path: Path) -> None:
    folder = tmp_path / "mp"
    found, roles = _profiled("gunicorn-sync-preload", folder, 2, gc="freeze")
    forks = memprofile.fork_records(folder)
    assert len(forks) == 1
    fork = forks[0]
    assert roles[fork["pid"]] == "master"
    # Counted before gc.freeze() (which would hide the objects from gc.get_objects()).
    assert fork["gc"]["freeze_count"] == 0
    assert fork["objects"]["total"] > 1000
    for pid, snap in found.items():
        assert roles[pid] == "worker"  # the master neither traces nor answers
        assert snap["traced_from"] == "fork"
        assert snap["ppid"] == fork["pid"]
        assert snap["freeze_count_at_fork"] >= fork["objects"]["total"] // 2
    summary = json.loads(json.dumps(memprofile.summarize(found, roles, forks)))
    assert {p["role"] for p in summary["processes"]} == {"worker"}
    assert all(p["objects_since_fork"] for p in summary["processes"])
    assert summary["fork"][0]["objects_total"] == fork["objects"]["total"]
    text = "\n".join(memprofile.format_process(p) for p in summary["processes"])
    assert PROBE in text


def test_packages_of_frames() -> None:
    import django

    assert shim.package_of(django.__file__) == "django"
    assert shim.package_of(json.__file__) == "stdlib"
    assert shim.package_of("<frozen importlib._bootstrap>") == "imports"
    assert shim.package_of("<frozen posixpath>") == "stdlib"
    assert shim.package_of("<unknown>") == "native"
    assert shim.package_of(str(shim.REPO_ROOT / "apps" / "bench" / "views.py")) == "app"
    assert shim.package_of(pytest.__file__) == "rest"
    import gunicorn  # type: ignore[import-untyped]

    assert shim.package_of(gunicorn.__file__) == "server"
    assert shim.short_path(django.__file__) == "django/__init__.py"


def test_traced_summary_groups_by_line_and_package() -> None:
    tracemalloc.start(4)
    try:
        kept = [bytes(4096) for _ in range(256)]  # 1 MiB here, in tests/
        summary = shim.traced_summary(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    here = [row for row in summary["top_lines"] if row["file"] == "tests/test_memprofile.py"]
    assert here and here[0]["bytes"] >= len(kept) * 4096
    assert summary["by_package"][0]["package"] == "rest"


def test_labels_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        memprofile.request_snapshots(tmp_path, "../x")
    memprofile.request_snapshots(tmp_path, "end-1")
    assert (tmp_path / shim.TRIGGER).read_text() == "end-1"
