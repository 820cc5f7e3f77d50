"""loadtests/: the Locust workloads and the probes plugin (measured windows on command).

Locust is only ever run in subprocesses (importing it gevent-patches the
interpreter, which must not happen inside pytest).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.catalog import MIXED_WEIGHTS, WORKLOADS
from loadtests.window import ProbeCommand
from runners.load.locust import (
    LOCUSTFILE,
    LocustError,
    LocustPlan,
    LocustProcess,
    command,
    parse_stats_csv,
    worker_command,
)
from runners.serving.registry import RUNNERS
from runners.serving.server import ServeConfig, prepare_database, serve, upstream
from tests.stub import Stub, serving

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = {"users": 30, "follows": 3, "posts": 200, "likes": 400, "comments": 100}


def locust(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def listed_users(output: str) -> set[str]:
    lines = output.split("Available Users:", 1)[1].splitlines()
    return {line.strip() for line in lines if line.strip()}


@pytest.mark.servers
def test_one_user_class_per_workload() -> None:
    done = locust("-f", str(LOCUSTFILE), "--list")
    assert done.returncode == 0, done.stderr
    assert listed_users(done.stdout) == {w.user_class for w in WORKLOADS.values()}
    assert set(MIXED_WEIGHTS) <= set(WORKLOADS)
    assert sum(MIXED_WEIGHTS.values()) == 100


@pytest.mark.servers
def test_the_folder_loads_as_a_locustfile_too() -> None:
    """Every file of the folder at once: the workloads and a traffic file's user, their
    options added once (``--request-timeout`` is everyone's)."""
    done = locust("-f", str(REPO_ROOT / "loadtests"), "--list")
    assert done.returncode == 0, done.stderr
    assert listed_users(done.stdout) == {w.user_class for w in WORKLOADS.values()} | {"TrafficUser"}


def test_command_picks_the_workload_by_user_class(tmp_path: Path) -> None:
    plan = LocustPlan(
        host="http://127.0.0.1:1",
        workload="cached-queries",
        variant="sync",
        out_prefix=tmp_path / "x",
        run_time_limit_s=90,
    )
    argv = command(plan)
    assert argv[-1] == "CachedQueriesUser"
    assert argv[argv.index("--variant") + 1] == "sync"
    assert argv[argv.index("--probe-control") + 1] == str(plan.control)
    assert argv[argv.index("--probe-out") + 1] == str(plan.probes_dir)
    assert "--headless" in argv
    assert argv[argv.index("--run-time") + 1] == "90s"


def test_distributed_mode_runs_a_master_and_its_workers(tmp_path: Path) -> None:
    plan = LocustPlan(
        host="http://127.0.0.1:1",
        workload="json",
        variant="async",
        out_prefix=tmp_path / "x",
        run_time_limit_s=60,
        processes=2,
        expect_workers=1,
    )
    assert plan.distributed and plan.generators == 3
    master = command(plan, 5557)
    assert master[master.index("--expect-workers") + 1] == "3"
    assert master[master.index("--master-bind-port") + 1] == "5557"
    worker = worker_command(plan, "10.0.0.5", 5557)
    assert "--worker" in worker and "--headless" not in worker
    assert worker[worker.index("--master-host") + 1] == "10.0.0.5"
    assert worker[worker.index("--variant") + 1] == "async"
    assert worker[-1] == "JsonUser"
    single = LocustPlan(
        host="http://127.0.0.1:1",
        workload="json",
        variant="sync",
        out_prefix=tmp_path / "y",
        run_time_limit_s=60,
    )
    assert not single.distributed and "--master" not in command(single)


def test_parse_stats_csv(tmp_path: Path) -> None:
    path = tmp_path / "x_stats.csv"
    path.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
        "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
        "GET,/async/json,10,2,4,4.5,1.0,12.25,28.0,5.0,1.0,4,5,5,6,7,8,9,12,12,12,12\n"
        ",Aggregated,10,2,4,4.5,1.0,12.25,28.0,5.0,1.0,4,5,5,6,7,8,9,12,12,12,12\n"
    )
    stats = parse_stats_csv(path)
    assert (stats.requests, stats.failures) == (10, 2)
    assert stats.latency.p50 == 4 and stats.latency.p90 == 7 and stats.latency.p99 == 12
    assert stats.latency.max == 12.25 and stats.latency.mean == 4.5
    assert stats.locust_rps == 5.0


# --- the measured window, against a stub that answers every other request wrongly --------------


@pytest.fixture
def stub() -> Iterator[Stub]:
    with serving("half-wrong") as server:
        yield server


@pytest.mark.slow
@pytest.mark.servers
def test_window_excludes_warmup_and_counts_failures(stub: Stub, tmp_path: Path) -> None:
    plan = LocustPlan(
        host=stub.url,
        workload="json",
        variant="sync",
        out_prefix=tmp_path / "stub-json",
        run_time_limit_s=60,
    )
    served: dict[str, int] = {}
    probe = ProbeCommand(
        seq=1, mode="closed", users=2, warmup_s=1.5, duration_s=2, reset_stats=True
    )
    with LocustProcess(plan) as process:
        assert stub.served == 0  # held until the first probe
        window = process.probe(
            probe,
            on_start=lambda: served.setdefault("start", stub.served),
            on_end=lambda: served.setdefault("end", stub.served),
        )
        outcome = process.finish()
    stats = outcome.stats

    assert stub.paths == {"/sync/json"}  # the --variant prefix
    assert served["start"] > 0  # the warm-up was served...
    # ...and not counted (a request sent just before the window's start may end in it).
    assert window.requests <= served["end"] - served["start"] + 3
    assert window.duration_s == pytest.approx(2, abs=0.5)
    # Wrong bodies are failures: about half of the requests.
    assert window.requests > 10
    assert 0.3 < window.failures / window.requests < 0.7
    assert window.timeouts == 0 and window.unsent == 0
    # The CSV Locust wrote holds the window (stats reset at its start, the load paused at
    # its end) and the requests in flight as it opened (one per user, and a few starting
    # as it opened: the two clocks are read a moment apart).
    assert 0 <= stats.requests - window.requests <= 2 + 2
    with plan.csv("failures").open(newline="") as fh:
        errors = [row["Error"] for row in csv.DictReader(fh)]
    assert any("unexpected JSON body" in error for error in errors)
    assert plan.html.is_file()
    assert json.loads((plan.probes_dir / "probe-1.json").read_text())["users"] == 2
    assert window.loadgen_cpu_seconds > 0
    assert window.latency_hdr


@pytest.mark.servers
def test_locust_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    plan = LocustPlan(
        host="http://127.0.0.1:1",
        workload="json",
        variant="sync",
        out_prefix=tmp_path / "bad",
        run_time_limit_s=30,
        options=("--no-such-option",),
    )
    probe = ProbeCommand(seq=1, mode="closed", users=1, duration_s=1)
    with LocustProcess(plan) as process, pytest.raises(LocustError, match="exited"):
        process.probe(probe)


# --- every workload against the real app --------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("loadtests-data")
    env = {"BENCH_DATA_DIR": str(data_dir), "DATABASE_URL": ""}
    prepare_database(env, sys.executable, 600.0, **SEED)
    return env


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.parametrize("runner", ["gunicorn-gthread", "uvicorn", "uvicorn-pooled"])
def test_every_workload_passes_its_checks_against_the_app(
    runner: str, app_env: dict[str, str], tmp_path: Path
) -> None:
    """All user classes at once, one user each, on the runner's view variant: no failure."""
    classes = [w.user_class for w in WORKLOADS.values()]
    with upstream(log_path=tmp_path / "upstream.log") as upstream_url:
        config = ServeConfig(
            runner=RUNNERS[runner],
            log_path=tmp_path / "server.log",
            env={**app_env, "BENCH_UPSTREAM_URL": upstream_url},
        )
        with serve(config) as server:
            done = locust(
                *("-f", str(LOCUSTFILE), "--headless", "--host", server.url),
                *("-u", str(len(classes)), "-r", str(len(classes)), "-t", "3s"),
                *("--only-summary", "--csv", str(tmp_path / "all"), "--variant", server.variant),
                *("--max-user-id", str(SEED["users"]), "--max-post-id", str(SEED["posts"])),
                *classes,
            )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with (tmp_path / "all_stats.csv").open(newline="") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    assert rows["Aggregated"]["Failure Count"] == "0"
    prefix = f"/{server.variant}"
    expected = {
        f"{prefix}/{name}" for name in ("plaintext", "json", "db", "queries", "fortunes", "updates")
    } | {
        f"{prefix}/cached-queries",
        f"{prefix}/feed/[user]",
        f"{prefix}/profile/[user]",
        f"{prefix}/like",
        f"{prefix}/upstream",
    }
    assert expected <= set(rows)
    for name in expected:
        assert int(rows[name]["Request Count"]) > 0, name


def test_the_probe_records_are_shared_without_locust() -> None:
    """The driver reads the plugin's probes with the plugin's own records, and
    importing them, the driver's Locust module or the traffic parsers never imports
    Locust or gevent."""
    code = (
        "import sys, runners.load.locust as driver, loadtests.window as shared\n"
        "import loadtests.traffic\n"
        "assert driver.ProbeResult is shared.ProbeResult\n"
        "bad = [m for m in ('locust', 'gevent') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    plugin = ast.parse((REPO_ROOT / "loadtests" / "probes.py").read_text())
    shared = {
        alias.name
        for node in ast.walk(plugin)
        if isinstance(node, ast.ImportFrom) and node.module == "loadtests.window"
        for alias in node.names
    }
    assert {"ProbeCommand", "ProbeResult", "ScheduledProbe"} <= shared
