"""Other processes on the run's CPUs, and a PostgreSQL server on the same host.

- the arithmetic: busy time minus the run's own processes, the unpinned ones
  taken off both sides, shared CPUs as one side;
- a CPU-burning process pinned to the server's CPU during a short real run gets
  the run flagged ``interference``; the same run without it is not flagged;
- with ``--database`` on this host, the run records the PostgreSQL server's CPU
  seconds and PSS, and says that it shared the server's CPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from loadtests.window import ProbeResult
from runners.bench.capacity import Target
from runners.bench.host_usage import interference_record
from runners.bench.measure import window_flags
from runners.bench.probing import ProbeWindow
from runners.report import render_run
from runners.results.criteria import INTERFERENCE_SHARE
from runners.results.flags import FLAGS, notes_for
from runners.sampling import cpustat
from runners.sampling.interference import TICKS_PER_S, Mark, is_local, others
from runners.serving.cpus import Placement, default_placement
from runners.serving.servers.launch import launch_command
from tests.servers import run_bench
from tests.test_report import SAMPLE, parse, place

pytestmark = pytest.mark.measures  # other programs' share of the run's CPUs: runs alone

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
WINDOW = ("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "2", "--no-report")


def _cpus(busy: dict[int, float], elapsed: float) -> cpustat.CpuTimes:
    """Counters after ``busy`` seconds per CPU out of ``elapsed`` (from zero)."""
    ticks = round(elapsed * TICKS_PER_S)
    return cpustat.CpuTimes(
        busy={cpu: round(s * TICKS_PER_S) for cpu, s in busy.items()},
        total=dict.fromkeys(busy, ticks),
    )


ZERO = Mark(_cpus({0: 0, 1: 0}, 0), server=0.0, loadgen=0.0, unpinned=0.0, database=0.0)


def test_others_are_the_busy_time_the_run_does_not_explain() -> None:
    after = Mark(_cpus({0: 3.6, 1: 2.0}, 4.0), server=2.9, loadgen=1.8, unpinned=0.1, database=0.2)
    found = others(ZERO, after, (0,), (1,))
    assert found is not None
    # server CPU: 3.6 busy - 2.9 server - (0.1 driver + 0.2 database, either side)
    assert found.server_cpu_seconds == pytest.approx(0.4)
    assert found.loadgen_cpu_seconds == pytest.approx(0.0)  # never negative
    assert found.server_share == pytest.approx(0.1)
    assert found.share == found.server_share
    assert found.unpinned_cpu_seconds == pytest.approx(0.3)
    assert found.window_s == pytest.approx(4.0)


def test_shared_cpus_are_one_side() -> None:
    after = Mark(_cpus({0: 3.0}, 4.0), server=1.5, loadgen=1.0, unpinned=0.0)
    found = others(ZERO, after, (0,), (0,))
    assert found is not None
    assert found.server_cpu_seconds == found.loadgen_cpu_seconds == pytest.approx(0.5)
    assert others(ZERO, ZERO, (0,), (1,)) is None  # no time passed


def test_local_database_urls() -> None:
    assert is_local("postgres://postgres@127.0.0.1:5432/test")
    assert is_local("postgres://u@localhost/db")
    assert is_local("postgresql:///db")  # a Unix socket
    assert not is_local("postgres://u@db.example.com/db")


def test_the_flags_are_documented() -> None:
    # Other programs only took from the server: what it did is a lower bound, ranked as ≥.
    interference = FLAGS["interference"]
    assert interference.lower_bound and not interference.unranked
    assert interference.threshold == INTERFERENCE_SHARE
    assert not FLAGS["database-shared-cpus"].unranked
    assert len(notes_for(["interference", "database-shared-cpus"])) == 2


def test_the_report_shows_the_database_and_the_others(tmp_path: Path) -> None:
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    first, second = [r for r in data["runs"] if r["status"] == "ok"][:2]
    first["database"] = {
        "cpu_seconds": 0.27,
        "pss_bytes": 56 << 20,
        "processes": 9,
        "cpus": [0, 1],
        "shares_server_cpus": True,
    }
    first["interference"] = {"server_cpu_seconds": 0.0, "loadgen_cpu_seconds": 0.1, "share": 0.03}
    second["interference"] = {"server_cpu_seconds": 1.5, "loadgen_cpu_seconds": 0.0, "share": 0.4}
    second["flags"].append("interference")
    doc = parse(render_run(place(data, tmp_path / "host")).read_text(encoding="utf-8"))
    table = doc.find("table", **{"class": "compact host"})
    row = table.find("tr", data_run_id=first["id"])
    assert "0.27" in row.find("td", **{"class": "n database-cpu"}).text()
    assert row.find("td", **{"class": "n database-pss"}).text() == "56.0"
    assert "shares the server's CPUs" in row.text()
    assert "40.0 %" in table.find("tr", data_run_id=second["id"]).text()
    assert doc.find("p", **{"class": "warning database-shared"})


# --- real runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interference-data")


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    """A busy loop pinned to the server's CPU: another program, outside the run."""
    server_cpus = default_placement().server
    proc = subprocess.Popen(
        launch_command([sys.executable, "-c", "while True: pass"], cpus=server_cpus)
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def one_run(out: Path, data_dir: Path, *args: str) -> dict[str, Any]:
    bench = run_bench(out, data_dir, "--runners", "gunicorn-gthread", *WINDOW, *args)
    (run,) = bench.check()["runs"]
    found: dict[str, Any] = {**run, "stdout": bench.proc.stdout}
    return found


@pytest.mark.servers
def test_a_program_burning_the_servers_cpu_flags_the_run(
    burner: subprocess.Popen[bytes], tmp_path: Path, data_dir: Path
) -> None:
    burned = one_run(tmp_path / "burned", data_dir, "--workloads", "json")
    burner.kill()
    burner.wait()
    # The scheduler shares the CPU between the server and the loop: about half each.
    assert burned["interference"]["server_share"] > 0.25, burned["interference"]
    assert "interference" in burned["flags"], burned["interference"]
    assert "interference:" in burned["stdout"]
    # This machine is shared: a job of someone else's on either CPU is interference
    # too, so the quiet run is taken again (at most twice) when one came.
    for attempt in range(3):
        quiet = one_run(tmp_path / f"quiet{attempt}", data_dir, "--workloads", "json")
        if quiet["interference"]["share"] <= INTERFERENCE_SHARE:
            break
    assert quiet["interference"]["share"] <= INTERFERENCE_SHARE, quiet["interference"]
    assert "interference" not in quiet["flags"]
    # The run's own processes explain the server CPU's busy time.
    assert quiet["interference"]["server_cpu_seconds"] < 0.1 * quiet["duration_s"]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped after) on TEST_DATABASE_URL's server."""
    if not TEST_DATABASE_URL:
        pytest.skip("set TEST_DATABASE_URL (postgres://...) to measure a local PostgreSQL")
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
def test_a_local_postgres_is_measured_beside_the_server(
    postgres_url: str, tmp_path: Path, data_dir: Path
) -> None:
    if not is_local(postgres_url):
        pytest.skip("TEST_DATABASE_URL is not on this host")
    run = one_run(tmp_path / "pg", data_dir, "--workloads", "fortunes", "--database", postgres_url)
    database = run["database"]
    # Every fortunes request runs a query: the database worked during the window.
    assert database["cpu_seconds"] > 0.05, database
    assert database["processes"] >= 2  # the postmaster and at least one backend
    assert 1 << 20 < database["pss_bytes"] < 4 << 30, database
    # PostgreSQL is not pinned: it may run on the server's CPU, and the run says so.
    assert set(database["cpus"]) & set(run["server_cpus"])
    assert database["shares_server_cpus"] is True
    assert "database-shared-cpus" in run["flags"]
    assert "database-shared-cpus:" in run["stdout"]
    # Its time is not taken for another program's: it is taken off both sides.
    assert run["interference"]["unpinned_cpu_seconds"] >= database["cpu_seconds"]


def _proc_stat(path: Path, ticks: dict[int, tuple[int, int, int]]) -> Path:
    """A /proc/stat with, per CPU, (busy user ticks, idle ticks, steal ticks)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for cpu, (user, idle, steal) in ticks.items():
        lines.append(f"cpu{cpu} {user} 0 0 {idle} 0 0 0 {steal} 0 0")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_steal_is_read_apart_and_is_not_interference(tmp_path: Path) -> None:
    """10% steal on both CPUs and nothing else running but the run's own processes: the
    run is flagged ``steal``, not ``interference``."""
    before = cpustat.read(_proc_stat(tmp_path / "a", {0: (0, 0, 0), 1: (0, 0, 0)}))
    # 4 s per CPU (400 ticks): the run's processes used 3.6 s / 2.0 s, steal 0.4 s each.
    after = cpustat.read(_proc_stat(tmp_path / "b", {0: (320, 40, 40), 1: (180, 180, 40)}))
    assert cpustat.steal_share(before, after, (0,)) == pytest.approx(0.1)
    # Busy share of the time the CPU had: 320 of 360 ticks.
    assert cpustat.busy_percent(before, after, (0,)) == pytest.approx(100 * 320 / 360)
    own = Mark(after, server=3.2, loadgen=1.8, unpinned=0.0)
    found = others(Mark(before, 0.0, 0.0, 0.0), own, (0,), (1,))
    assert found is not None
    assert found.share == pytest.approx(0.0, abs=1e-9)
    assert found.server_steal_share == pytest.approx(0.1)
    record = interference_record(Mark(before, 0.0, 0.0, 0.0), own, Placement((0,), (1,)))
    assert record is not None and record.steal_share == pytest.approx(0.1)
    window = ProbeWindow(_result(), 80.0, 50.0, interference=record)
    flags = window_flags(window, Target())
    assert "steal" in flags and "interference" not in flags


def test_late_tickets_at_low_generator_cpu_flag_stalls_not_the_generator() -> None:
    window = ProbeWindow(_result(late=0.05), 80.0, 40.0)
    flags = window_flags(window, Target())
    assert "loadgen-stalls" in flags and "loadgen-bound" not in flags
    busy = ProbeWindow(_result(late=0.05), 80.0, 95.0)
    assert "loadgen-bound" in window_flags(busy, Target())


def _result(late: float = 0.0) -> ProbeResult:
    return ProbeResult(
        seq=2,
        mode="open",
        rate=100.0,
        users=16,
        start=0.0,
        end=2.0,
        duration_s=2.0,
        scheduled=200,
        dispatched=200,
        free_dispatches=200,
        late=round(200 * late),
        pool_waits=0,
        successes=200,
        failures=0,
        timeouts=0,
        unsent=0,
        in_flight=0,
        served=200,
        late_fraction=late,
        latency_hdr="",
        loadgen_cpu_seconds=0.1,
        processes_expected=1,
    )
