"""runners.bench end to end: a real short matrix through the CLI, checked against
its schema and against itself; options validated up front.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

from loadtests.catalog import WORKLOADS
from runners.bench import defaults as bench_defaults
from runners.bench import main
from runners.bench import matrix as bench_matrix
from runners.bench import options as bench_options
from runners.bench.estimate import estimate_s
from runners.bench.matrix import concurrency
from runners.results.cells import aggregate, summarize
from runners.results.document import Results
from runners.results.figures import GIB
from runners.results.record import Latency, Memory, Run
from runners.results.schema import SCHEMA_PATH
from runners.serving.registry import RUNNERS
from runners.vocabulary import FAMILIES
from tests.servers import BenchRun, run_bench
from tests.test_results import unknown_keys

REPO_ROOT = Path(__file__).resolve().parents[1]
WINDOW = ("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "3")
REL = 1e-9


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-data")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[BenchRun]:
    """Two runners of different families, one workload, a few seconds each."""
    out = tmp_path_factory.mktemp("bench") / "results"
    yield run_bench(
        out, data_dir, "--runners", "gunicorn-sync,uvicorn", "--workloads", "json", *WINDOW
    )


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> BenchRun:
    """Every request fails: the app refuses upstream delays above 5000 ms with a 400."""
    out = tmp_path_factory.mktemp("bench") / "failing"
    return run_bench(
        out,
        data_dir,
        *("--runners", "uvicorn", "--workloads", "upstream", "--upstream-ms", "6000"),
        *("--load", "closed", "--users", "2", "--warmup", "1", "--duration", "2"),
        "--no-report",
    )


def ok_runs(run: BenchRun) -> list[dict[str, Any]]:
    return [r for r in run.results["runs"] if r["status"] == "ok"]


# --- the end-to-end matrix ---------------------------------------------------------------------


@pytest.mark.servers
@pytest.mark.slow
def test_a_fresh_results_json_reads_typed_and_writes_back_exactly(
    matrix: BenchRun, failing: BenchRun
) -> None:
    for bench in (matrix, failing):
        data = bench.results
        results = Results.from_dict(data)
        assert unknown_keys(results) == []
        assert all(isinstance(run.memory, Memory) for run in results.ok_runs)
        assert json.dumps(results.to_dict()) == json.dumps(data)


@pytest.mark.servers
@pytest.mark.slow
def test_matrix_finishes_and_matches_the_schema(matrix: BenchRun) -> None:
    assert matrix.proc.returncode == 0, matrix.proc.stdout + matrix.proc.stderr
    results = matrix.results
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(results, schema, cls=jsonschema.Draft202012Validator)
    assert "schema_errors" not in results
    assert results["finished_at"] is not None
    assert [r["id"] for r in results["runs"]] == ["gunicorn-sync/json/4/1", "uvicorn/json/4/1"]
    assert {r["family"] for r in results["runs"]} == {"prefork", "async"}
    assert results["matrix"]["runners"] == ["gunicorn-sync", "uvicorn"]
    assert "runners.bench" in results["command"]


@pytest.mark.servers
@pytest.mark.slow
def test_runs_served_requests_without_failures(matrix: BenchRun) -> None:
    runs = ok_runs(matrix)
    assert len(runs) == 2
    for run in runs:
        assert run["requests"] > 0
        assert run["failures"] == 0
        assert run["error"] is None
        assert "failures" not in run["flags"]
        latency = run["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert latency["p99"] <= math.ceil(latency["max"]) + 1
        assert run["variant"] == RUNNERS[run["runner"]].variant
        assert run["workers"] >= 1


@pytest.mark.servers
@pytest.mark.slow
def test_figures_are_consistent(matrix: BenchRun) -> None:
    for run in ok_runs(matrix):
        memory = run["memory"]
        # rps over the measured window, which is about the requested duration.
        assert run["rps"] == pytest.approx(run["requests"] / run["duration_s"], rel=REL)
        assert run["duration_s"] == pytest.approx(4, abs=1.0)
        # Capacity is planned for the peak: rps per GiB of peak PSS (and of mean PSS).
        assert run["rps_per_gib"] == pytest.approx(
            run["rps"] / (memory["pss_peak_bytes"] / 2**30), rel=REL
        )
        assert run["rps_per_gib_mean_pss"] == pytest.approx(
            run["rps"] / (memory["pss_mean_bytes"] / GIB), rel=REL
        )
        assert run["rps_per_cpu_second"] == pytest.approx(
            run["requests"] / run["cpu_seconds"], rel=REL
        )
        assert run["loadgen_cpu_percent"] == pytest.approx(
            100 * run["loadgen_cpu_seconds"] / run["duration_s"], rel=REL
        )
        # Locust's own CPU over 90 % flags the run (so do the load-generator CPUs busy with
        # anything, and a late schedule).
        if run["loadgen_cpu_percent"] > 90:
            assert "loadgen-bound" in run["flags"]
        assert run["server_cpu_percent"] == pytest.approx(
            100 * run["cpu_seconds"] / (run["duration_s"] * len(run["server_cpus"])), rel=REL
        )
        assert run["cpu_seconds"] == pytest.approx(
            memory["samples"][-1]["cpu_seconds"] - memory["samples"][0]["cpu_seconds"], abs=0.002
        )


@pytest.mark.servers
@pytest.mark.slow
def test_memory_series_add_up(matrix: BenchRun) -> None:
    for run in ok_runs(matrix):
        memory = run["memory"]
        samples = memory["samples"]
        assert len(samples) >= 3
        for sample in samples:
            procs = sample["processes"]
            assert sample["pss"] == sum(p["pss"] for p in procs)
            assert sample["rss"] == sum(p["rss"] for p in procs)
            for p in procs:
                assert 0 < p["uss"] <= p["pss"] <= p["rss"]
        assert memory["pss_peak_bytes"] == max(s["pss"] for s in samples)
        assert memory["rss_peak_bytes"] == max(s["rss"] for s in samples)
        assert memory["processes"] == len(samples[-1]["processes"])
        assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    gunicorn = next(r for r in ok_runs(matrix) if r["runner"] == "gunicorn-sync")
    # A master and its 2n+1 workers.
    assert gunicorn["memory"]["processes"] == gunicorn["workers"] + 1


@pytest.mark.servers
@pytest.mark.slow
def test_artifacts_exist_and_agree(matrix: BenchRun) -> None:
    for run in ok_runs(matrix):
        artifacts = run["artifacts"]
        for key in ("locust_html", "server_log", "locust_log"):
            assert (matrix.out / artifacts[key]).is_file(), key
        stem = f"{run['runner']}-{run['workload']}-u{run['users']}-r{run['repeat']}"
        assert artifacts["locust_html"] == f"runs/{stem}.html"
        stats = next(p for p in artifacts["locust_csv"] if p.endswith("_stats.csv"))
        with (matrix.out / stats).open(newline="") as fh:
            row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
        # The CSV holds the measured window, as results.json does, and the requests in
        # flight as it opened (at most one per user).
        # (a few more: a request starts as the window opens on one clock and not yet
        # on the other).
        assert 0 <= int(row["Request Count"]) - run["requests"] <= run["users"] + 2
        assert 0 <= int(row["Failure Count"]) - run["failures"] <= run["users"] + 2
    assert (matrix.out / "results.json").is_file()


@pytest.mark.servers
@pytest.mark.slow
def test_environment_is_recorded(matrix: BenchRun) -> None:
    env = matrix.results["environment"]
    assert env["cpu_count"] >= 1 and env["cpu_model"]
    assert env["placement"]["server_cpus"] and env["placement"]["loadgen_cpus"]
    assert env["python"]["implementation"] == "CPython"
    packages = env["packages"]
    for name in ("django", "gunicorn", "uvicorn", "granian", "locust", "psutil", "asgiref"):
        assert packages[name], name
    assert env["database"] == "sqlite"
    assert env["git_commit"] is None or len(env["git_commit"]) == 40
    assert env["seed"]["users"] == 30


@pytest.mark.servers
@pytest.mark.slow
def test_no_process_is_left(matrix: BenchRun) -> None:
    pids = {
        p["pid"]
        for run in ok_runs(matrix)
        for sample in run["memory"]["samples"]
        for p in sample["processes"]
    }
    commands = [run["server_command"] for run in ok_runs(matrix)]
    assert pids
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        assert cmdline not in commands, f"server left running: {proc.info}"
        assert not any(str(matrix.out) in part for part in cmdline), f"left: {proc.info}"
        if proc.info["pid"] in pids:
            # The pid was reused by something else, not by one of our servers.
            assert cmdline not in commands


@pytest.mark.servers
@pytest.mark.slow
def test_failed_requests_are_counted(failing: BenchRun) -> None:
    assert failing.proc.returncode == 0, failing.proc.stdout + failing.proc.stderr
    (run,) = failing.results["runs"]
    assert run["status"] == "ok"
    assert run["requests"] > 0
    assert run["failures"] == run["requests"]
    assert "failures" in run["flags"]
    assert any(note.startswith("failures:") for note in run["notes"])
    failures_csv = next(p for p in run["artifacts"]["locust_csv"] if p.endswith("_failures.csv"))
    assert "HTTP 400" in (failing.out / failures_csv).read_text()
    assert "failed requests" in failing.proc.stdout


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runners", "nope"], "unknown runner 'nope'"),
        (["--workloads", "json,nope"], "unknown workload 'nope'"),
        (["--load", "closed", "--users", "16,,64"], "malformed list"),
        (["--load", "closed", "--users", "0"], "not positive"),
        (["--load", "closed", "--users", "x"], "not a whole number"),
        (["--duration", "0"], "--duration"),
        (["--duration", "abc"], "invalid float value"),
        (["--warmup", "-1"], "--warmup"),
        (["--repeat", "0"], "--repeat"),
        (["--workers", "-2"], "--workers"),
        (["--database", "mysql://x"], "--database"),
        (["--seed", "users=x"], "--seed"),
        (["--seed", "bogus=1"], "--seed"),
        (["--server-cpus", "999"], "not available"),
        (["--loadgen-cpus", "a-b"], "bad CPU list"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("bench: error: ")
    assert message in lines[0]


def test_unknown_runner_lists_what_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["--runners", "gunicorn-sync,nope"]) == 2
    err = capsys.readouterr().err
    for name in RUNNERS:
        assert name in err


def test_bad_option_through_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runners.bench", "--workloads", "nope"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "accepted: plaintext, json" in proc.stderr


def test_output_with_results_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "results.json").write_text("{}")
    assert main.main(["--output", str(tmp_path)]) == 2
    assert "already holds a results.json" in capsys.readouterr().err


def test_list_shows_runners_and_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in [*RUNNERS, *WORKLOADS]:
        assert name in out
    for workload in WORKLOADS.values():
        assert workload.user_class in out


def test_quick_is_one_runner_per_family_under_three_minutes() -> None:
    options, _ = bench_options.parse_options(["--quick"])
    assert options is not None
    assert sorted(RUNNERS[r].family for r in options.runners) == sorted(FAMILIES)
    assert options.workloads == ("json", "upstream")
    assert estimate_s(options) < 180


def test_default_matrix_shows_the_main_contrasts_under_twenty_minutes() -> None:
    options, _ = bench_options.parse_options([])
    assert options is not None
    for name in (
        "gunicorn-sync",
        "gunicorn-sync-freeze",
        "gunicorn-gthread",
        "uvicorn",
        "gunicorn-asgi",
        "granian-asgi",
    ):
        assert name in options.runners
    assert set(options.workloads) >= {"json", "fortunes", "feed", "upstream", "mixed"}
    assert estimate_s(options) < 20 * 60


def test_explicit_options_override_quick() -> None:
    options, _ = bench_options.parse_options(
        ["--quick", "--load", "closed", "--users", "8,32", "--duration", "5"]
    )
    assert options is not None
    assert options.users == (8, 32)
    assert options.duration_s == 5
    assert options.warmup_s == bench_defaults.TIMINGS[("closed", True)].warmup_s


def test_plan_is_repeat_major() -> None:
    options, _ = bench_options.parse_options(
        ["--runners", "uvicorn,waitress", "--workloads", "json", "--repeat", "2"]
    )
    assert options is not None
    ids = [cell.id for cell in bench_matrix.plan(options)]
    assert ids == [
        "uvicorn/json/open/1",
        "waitress/json/open/1",
        "uvicorn/json/open/2",
        "waitress/json/open/2",
    ]


def test_worker_and_thread_overrides_only_apply_where_they_mean_something() -> None:
    options, _ = bench_options.parse_options(["--workers", "2", "--threads", "8"])
    assert options is not None
    assert concurrency(options, RUNNERS["gunicorn-sync"]) == [(2, None)]
    assert concurrency(options, RUNNERS["waitress"]) == [(None, 8)]
    assert concurrency(options, RUNNERS["gunicorn-gthread"]) == [(2, 8)]
    assert concurrency(options, RUNNERS["daphne"]) == [(None, None)]


# --- repeats ------------------------------------------------------------------------------------


def _run(rps: float, repeat: int) -> Run:
    memory = {"pss_peak_bytes": GIB // 10, "pss_mean_bytes": GIB // 10}
    memory |= {"rss_peak_bytes": GIB, "uss_peak_bytes": GIB // 20, "processes": 1}
    return Run(
        id=f"uvicorn/json/16/{repeat}",
        runner="uvicorn",
        family="async",
        workload="json",
        users=16,
        repeat=repeat,
        status="ok",
        rps=rps,
        rps_per_gib=rps * 10,
        rps_per_cpu_second=rps / 2,
        memory=Memory.from_dict(memory),
        latency_ms=Latency(p99=5.0),
        failures=0,
        flags=(),
    )


def summarize_cells(runs: list[Run]) -> list[dict[str, Any]]:
    return [cell.to_dict() for cell in summarize(aggregate(runs))]


def test_repeats_report_mean_and_spread_and_mark_noise() -> None:
    (steady,) = summarize_cells([_run(1000, 1), _run(1040, 2), _run(1020, 3)])
    assert steady["rps_mean"] == pytest.approx(1020)
    assert steady["rps_min"] == 1000 and steady["rps_max"] == 1040
    assert steady["rps_spread"] == pytest.approx(20 / 1020)
    assert steady["flags"] == []
    (noisy,) = summarize_cells([_run(1000, 1), _run(1300, 2)])
    assert noisy["flags"] == ["noisy"]
