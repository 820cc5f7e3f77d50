"""Servers in cgroups, against the real cgroups of this host: an OOM kill counted and
flagged, the working set against summed PSS, a CPU quota halving capacity, no cgroup
left after Ctrl-C or a killed driver, and the pod options' bad input.

Skipped where no cgroup can be made (``runners.serving.cgroups.support``). The bad input
that starts nothing is in tests/test_cgroups.py."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runners.bench.capacity import Plan
from runners.sampling.cgroupmem import CgroupReader, parse_stat
from runners.sampling.memory import sample_tree
from runners.serving import cgroups
from runners.serving.cgroups import Limits
from tests.servers import get, running, sqlite_env
from tests.test_faults import (
    REPO_ROOT,
    Bench,
    _run_watched,
    bench_env,
    launcher,
    serve_until_ready,
)

SUPPORT = cgroups.support()
pytestmark = [
    pytest.mark.servers,
    pytest.mark.measures,  # half a CPU's capacity; and no cgroup of the suite beside it
    pytest.mark.skipif(not SUPPORT.available, reason=f"no cgroups here: {SUPPORT.reason}"),
]
MIB = 2**20
OOM_APP = "tests.oom_app:application"
CLOSED = ("--load", "closed", "--users", "2", "--warmup", "1", "--duration", "3")
SYNC_JSON = ("--runners", "gunicorn-sync", "--workloads", "json")


def leftovers() -> list[Path]:
    """The suite's cgroups under our own (memory and cpu)."""
    hierarchy = SUPPORT.hierarchy
    assert hierarchy is not None
    parents = {hierarchy.memory, *([hierarchy.cpu] if hierarchy.cpu else [])}
    return [p for parent in parents for p in cgroups.leftovers(parent)]


@pytest.fixture(scope="module", name="data_dir")
def data_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cgroup-data")


@pytest.fixture(name="running_dir")
def running_dir_fixture(tmp_path: Path) -> Path:
    return tmp_path / "running"


@pytest.fixture(name="launch")
def launch_fixture(
    tmp_path: Path, data_dir: Path, running_dir: Path
) -> Iterator[Callable[..., Bench]]:
    """Drivers (``python -m tests.faultbench``) killed at the end if still running."""
    yield from launcher(tmp_path, data_dir, running_dir)


@pytest.fixture(autouse=True)
def _no_cgroup_before() -> None:
    # What a killed driver left (of another clone, say) goes as the next command starts it.
    cgroups.sweep_orphans()
    assert not leftovers(), "a cgroup of the suite was left by a running driver"


# --- an OOM kill ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_server_over_its_memory_limit_is_oom_killed_counted_and_flagged(
    launch: Callable[..., Bench],
) -> None:
    bench = launch(
        *SYNC_JSON,
        "--memory-limit",
        "64MiB",
        "--workers",
        "1",
        *CLOSED,
        apps={"gunicorn-sync": OOM_APP},
    )
    code, out, err = bench.wait(timeout=180)
    results = bench.results()
    assert "schema_errors" not in results
    (run,) = results["runs"]
    assert run["pod"]["memory_limit_bytes"] == 64 * MIB
    if run["status"] == "failed":
        # The OOM killer took the master (it may, while a killed worker's memory is being
        # freed and the master forks the next): counted, flagged, the run failed.
        assert code == 1, out + err
        assert run["flags"] == ["oom-killed"]
        assert "OOM kill(s)" in run["error"], run["error"]
        bench.watcher.assert_all_gone(timeout=0)
        assert not leftovers()
        return
    assert code == 0, out + err
    cgroup = run["memory"]["cgroup"]
    assert cgroup["limit_bytes"] == 64 * MIB
    assert cgroup["oom_kills_total"] >= 1 and cgroup["oom_kills"] >= 1
    assert "oom-killed" in run["flags"] and "failures" in run["flags"]
    # The master replaced the killed workers (at the window's end maybe not yet the last).
    assert {"worker-restarted", "worker-lost"} & set(run["flags"]), run["flags"]
    assert any("OOM-killed" in e for e in run["events"]), run["events"]
    assert any(n.startswith("oom-killed:") for n in run["notes"])
    assert any(s.get("oom_kills") for s in run["memory"]["samples"])
    page = (bench.out / "index.html").read_text()
    assert "OOM kill" in page and "working set" in page
    bench.watcher.assert_all_gone(timeout=0)
    assert not leftovers()


# --- accounting -----------------------------------------------------------------------------


def test_the_working_set_is_summed_pss_plus_kernel_memory() -> None:
    """gunicorn-sync-preload, 3 workers, after some load: the cgroup's working set (usage
    minus inactive file cache) within 15 % of the tree's summed PSS plus the cgroup's
    kernel memory."""
    with running("gunicorn-sync-preload", workers=3) as server:
        assert server.cgroup is not None and len(server.cgroup.members()) == 4
        for _ in range(100):
            for path in ("/sync/json", "/sync/fortunes", "/sync/db"):
                assert get(server, path)[0] == 200
        tree = sample_tree(server.pid)
        reading = CgroupReader(server.cgroup).read()
        folder = server.cgroup.memory
    assert reading is not None and reading.kernel is not None
    expected = tree.pss + reading.kernel
    assert abs(reading.working_set - expected) <= 0.15 * expected, (
        f"working set {reading.working_set / MIB:.1f} MiB, summed PSS {tree.pss / MIB:.1f} MiB "
        f"+ kernel {reading.kernel / MIB:.1f} MiB"
    )
    assert not folder.exists()  # removed with the server


def test_every_process_of_the_server_is_in_its_cgroup_and_only_those() -> None:
    with running("uvicorn", workers=2) as server:
        cgroup = server.cgroup
        assert cgroup is not None
        tree = {p.pid for p in sample_tree(server.pid).processes}
        assert tree <= cgroup.members()
        assert os.getpid() not in cgroup.members()
    assert not leftovers()


# --- a CPU limit ------------------------------------------------------------------------------


def test_a_cpu_quota_throttles_the_server_to_half_a_core() -> None:
    """The mechanism, whatever else runs on the machine: under ``Limits(cpu_cores=0.5)``
    the server's tree uses at most half a core while clients keep it busy, and the kernel
    throttled it (``cpu.stat`` ``nr_throttled``)."""
    with running("uvicorn", workers=1, limits=Limits(cpu_cores=0.5)) as server:
        cgroup = server.cgroup
        assert cgroup is not None and cgroup.cpu is not None
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                get(server, "/async/json")

        threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        before, began = sample_tree(server.pid).cpu_seconds, time.monotonic()
        time.sleep(3.0)
        used = (sample_tree(server.pid).cpu_seconds - before) / (time.monotonic() - began)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        throttled = parse_stat((cgroup.cpu / "cpu.stat").read_text())["nr_throttled"]
    assert used <= 0.55, f"the server used {used:.2f} cores under a 0.5 CPU quota"
    assert throttled > 0


def _ratio(out: Path, data_dir: Path, running_dir: Path) -> tuple[float | None, str]:
    """uvicorn on json without and with --cpu-limit 0.5, side by side in one invocation:
    the ratio of the middles of their capacity bands (each the geometric mean of the
    highest passing and the lowest failing rate), and what was measured. None when a run
    was disturbed (other processes on its CPUs, a starved load generator, an unconfirmed
    capacity) or a band left wider than one step down and one step up of the search."""
    code, stdout, stderr, _ = _run_watched(
        [
            sys.executable,
            "-m",
            "runners.bench",
            *("--runners", "uvicorn", "--workloads", "json", "--quick"),
            *("--server-cpus", "0", "--loadgen-cpus", "1", "--cpu-limit", "none,0.5"),
            *("--seed", "users=30,follows=3,posts=200,likes=400,comments=100"),
            *("--output", str(out)),
        ],
        bench_env(data_dir, running_dir),
        timeout=300,
    )
    assert code == 0, stdout[-2000:] + stderr[-2000:]
    runs = {
        r["pod"]["cpu_limit_cores"]: r
        for r in json.loads((out / "results.json").read_text())["runs"]
    }
    limited, unlimited = runs[0.5], runs[None]
    assert limited["pod"]["rule_cpus"] == 1  # ceil(0.5): one worker
    disturbed = {"interference", "steal", "loadgen-bound", "loadgen-stalls", "unconfirmed"} & {
        *limited["flags"],
        *unlimited["flags"],
    }
    bands = _band(limited), _band(unlimited)
    summary = " / ".join(f"[{low:.0f}, {high:.0f}]" for low, high in bands) + " req/s"
    plan = Plan()
    widest = plan.step_up / plan.step_down
    if disturbed or any(not low or high > widest * low for low, high in bands):
        why = sorted(disturbed) or f"a band over x{widest:.2f} wide"
        return None, f"{summary}, {why}"
    (l_low, l_high), (u_low, u_high) = bands
    ratio = math.sqrt(l_low * l_high) / math.sqrt(u_low * u_high)
    return ratio, f"{ratio:.2f}: {summary}"


def _band(run: dict[str, Any]) -> tuple[float, float]:
    """A run's capacity band: the highest passing and the lowest failing rate (0 and
    ``inf`` where the search found none)."""
    capacity = run["capacity"]
    return capacity["low_rps"] or 0.0, capacity["high_rps"] or math.inf


@pytest.mark.slow
def test_half_a_cpu_halves_uvicorns_capacity_on_json(
    tmp_path: Path, data_dir: Path, running_dir: Path
) -> None:
    """--cpu-limit 0.5 against the unlimited run on one core, side by side in one bench
    invocation: the median of three pairs' ratios is half within 20 %. A pair is taken
    again when it was disturbed or a band unresolved (up to five pairs in all); two pairs
    on the same side of the range settle the median without a third.

    One quick search places a capacity within a x1.15 step, and a server at its CPU quota
    answers erratically near it (its throttled pauses), so one pair's ratio scatters: seen
    0.63 ([783, 911] / [1222, 1450] req/s), 0.47, 0.49 and 0.35 ([585, 705] / [1766,
    1930]) on one machine. Per CPU-second both servers serve about alike."""
    ratios: list[float] = []
    seen = []
    for attempt in range(5):
        ratio, summary = _ratio(tmp_path / f"out{attempt}", data_dir, running_dir)
        seen.append(summary)
        if ratio is not None:
            ratios.append(ratio)
        sides = {(r > 0.6) - (r < 0.4) for r in ratios}  # -1 below, 0 inside, 1 above
        if len(ratios) == 3 or (len(ratios) == 2 and len(sides) == 1):
            break
    else:
        pytest.skip(f"too few undisturbed pairs with resolved bands on this machine: {seen}")
    assert 0.4 <= statistics.median(ratios) <= 0.6, f"capacity under 0.5 CPU / one core: {seen}"
    assert not leftovers()


# --- cleanup ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_leaves_no_cgroup(launch: Callable[..., Bench]) -> None:
    bench = launch(
        *SYNC_JSON,
        "--memory-limit",
        "256MiB",
        "--workers",
        "2",
        *CLOSED[:-1],
        "10",
    )
    bench.wait_for_window("gunicorn-sync-json-u2-r1")
    assert leftovers()  # the server's, while it runs
    bench.proc.send_signal(signal.SIGINT)
    code, out, err = bench.wait(timeout=30)
    assert code == 130, out + err
    bench.watcher.assert_all_gone(timeout=0)
    assert not leftovers()


@pytest.mark.slow
def test_a_killed_drivers_cgroup_is_removed_when_the_next_command_starts(
    launch: Callable[..., Bench], running_dir: Path, tmp_path: Path
) -> None:
    bench = launch(
        *SYNC_JSON,
        "--cpu-limit",
        "1",
        "--workers",
        "2",
        *CLOSED[:-1],
        "10",
    )
    bench.wait_for_window("gunicorn-sync-json-u2-r1")
    left = leftovers()
    assert len(left) == 2  # the memory cgroup and (v1) the cpu cgroup with the quota
    (book,) = running_dir.glob("*.json")
    listed = {r["ident"] for r in json.loads(book.read_text())["resources"]}
    assert listed == {str(p) for p in left}
    bench.proc.kill()  # kill -9: no clean-up code runs in the driver
    bench.proc.communicate(timeout=10)
    bench.watcher.close()
    bench.watcher.assert_all_gone(timeout=10)  # the parent-death signal
    assert leftovers() == left  # nothing removed them yet
    # The next command: `tox -e serve -- uvicorn --port 0`, stopped with Ctrl-C.
    env = {**os.environ, **sqlite_env(), "PYTHONPATH": str(REPO_ROOT)}
    env["BENCH_RUNNING_DIR"] = str(running_dir)
    nxt, lines = serve_until_ready(
        [
            *("uvicorn", "--port", "0", "--no-prepare", "--quiet", "--workers", "1"),
            *("--log", str(tmp_path / "serve.log")),
        ],
        env,
    )
    first = lines[0]
    assert not set(left) & set(leftovers())  # removed once the next command started
    nxt.send_signal(signal.SIGINT)
    rest, err = nxt.communicate(timeout=60)
    assert nxt.returncode == 0, "".join(lines) + rest + err
    assert first.startswith("stopped 2 stray process(es) or resource(s)"), first
    assert all(f"cgroup: removed {p}" in first for p in left), first
    assert "  cgroup:  " in "".join(lines)  # the next server had one of its own
    assert not leftovers() and not list(running_dir.glob("*.json"))


# --- bad input ------------------------------------------------------------------------------


def _bench_error(tmp_path: Path, data_dir: Path, running_dir: Path, *args: str) -> str:
    out = tmp_path / "out"
    code, stdout, stderr, _ = _run_watched(
        [sys.executable, "-m", "runners.bench", *args, "--output", str(out)],
        bench_env(data_dir, running_dir),
    )
    assert code == 2, stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), stderr
    assert not out.exists()
    return lines[0]


def test_a_limit_below_the_idle_footprint_names_the_footprint(
    tmp_path: Path, data_dir: Path, running_dir: Path
) -> None:
    line = _bench_error(
        tmp_path, data_dir, running_dir, "--runners", "uvicorn", "--memory-limit", "none,8MiB"
    )
    assert line.startswith(
        "bench: error: --memory-limit 8 MiB: below the idle footprint of uvicorn ("
    )
    footprint = float(line.split("(")[1].split(" MiB working set")[0])
    assert 20 < footprint < 200, line
    assert "with one worker, measured idle just now" in line
    assert not leftovers()
