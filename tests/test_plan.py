"""The capacity planner (runners/plan): the fits on made-up results, the plan's
memory limit, the command's bad inputs, and the report's "Capacity plan" section.

The real sweep (servers) is in tests/test_plan_sweep.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.plan.cli import main, parse_size
from runners.plan.fit import CapacityPoint, MemoryPoint, fit_capacity, fit_growth, fit_memory
from runners.plan.model import Host, Model, build_models, choose, plan
from runners.plan.observe import NOT_THE_SERVER, ConfigObservation, growth, observations
from runners.report import render_run
from runners.results.document import read_results
from runners.results.figures import GIB, MIB
from runners.results.flags import UNRANKED

DATA = Path(__file__).parent / "data"
SAMPLE = json.loads((DATA / "sample_results.json").read_text())
REPO = Path(__file__).resolve().parent.parent

JSON = dict[str, Any]


def make_run(
    runner: str,
    workload: str,
    workers: int,
    pss: float,
    rps: float,
    *,
    threads: int | None = None,
    cpu_percent: float = 50.0,
    cores: int = 2,
    flags: tuple[str, ...] = (),
) -> JSON:
    """A run of the sample file with the given figures."""
    run: JSON = copy.deepcopy(SAMPLE["runs"][0])
    run.update(
        id=f"{runner}/{workload}/16/{workers}",
        runner=runner,
        workload=workload,
        workers=workers,
        threads=threads,
        rps=rps,
        server_cpu_percent=cpu_percent,
        server_cpus=list(range(cores)),
        rps_per_cpu_second=rps / (cores * cpu_percent / 100),
        flags=list(flags),
    )
    run["memory"]["pss_peak_bytes"] = round(pss)
    return run


def write_results(folder: Path, runs: list[JSON]) -> Path:
    doc = copy.deepcopy(SAMPLE)
    doc["runs"] = runs
    doc.pop("micro", None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(doc))
    return folder


# The known lines: memory 50 MiB + n x 30 MiB; 120 req/s per worker below
# saturation, 400 req/s per core at it (2 cores: 800 req/s from 7 workers on).
BASE, PER_WORKER, PER_THREAD = 50 * MIB, 30 * MIB, 2 * MIB
RATE, PER_CORE = 120.0, 400.0


def known_runs(runner: str = "gunicorn-sync", workload: str = "json") -> list[JSON]:
    runs = []
    for n in (1, 2, 3, 8, 10):
        saturated = n * RATE >= 2 * PER_CORE
        runs.append(
            make_run(
                runner,
                workload,
                n,
                BASE + n * PER_WORKER,
                min(n * RATE, 2 * PER_CORE),
                cpu_percent=100.0 if saturated else 40.0,
            )
        )
    return runs


# --- known lines ------------------------------------------------------------------------------


def test_memory_line_recovered_exactly() -> None:
    fit = fit_memory([MemoryPoint(n, 1, BASE + n * PER_WORKER) for n in (1, 2, 4, 7)])
    assert fit is not None
    assert fit.base == pytest.approx(BASE, rel=1e-9)
    assert fit.per_worker == pytest.approx(PER_WORKER, rel=1e-9)
    assert fit.per_thread == 0
    assert fit.max_residual < 1e-9


def test_memory_plane_with_threads_recovered_exactly() -> None:
    points = [
        MemoryPoint(n, t, BASE + n * (PER_WORKER + t * PER_THREAD))
        for n, t in ((1, 2), (2, 2), (1, 8), (3, 4), (4, 8))
    ]
    fit = fit_memory(points)
    assert fit is not None
    assert fit.base == pytest.approx(BASE, rel=1e-9)
    assert fit.per_worker == pytest.approx(PER_WORKER, rel=1e-9)
    assert fit.per_thread == pytest.approx(PER_THREAD, rel=1e-9)
    assert fit.predict(16, 4) == pytest.approx(BASE + 16 * (PER_WORKER + 4 * PER_THREAD))


def test_one_configuration_is_no_fit() -> None:
    assert fit_memory([MemoryPoint(2, 1, BASE), MemoryPoint(2, 1, BASE + 1)]) is None


def test_capacity_law_recovered_exactly() -> None:
    points = [
        CapacityPoint(n, 2, min(n * RATE, 2 * PER_CORE), n * RATE >= 2 * PER_CORE)
        for n in (1, 2, 3, 8, 10)
    ]
    fit = fit_capacity(points)
    assert fit is not None
    assert fit.per_worker == pytest.approx(RATE, rel=1e-12)
    assert fit.per_core == pytest.approx(PER_CORE, rel=1e-12)
    assert fit.per_worker_from == "runs below saturation"
    assert fit.per_core_from == "runs at saturation"
    assert fit.saturating_workers(16) == 54  # 16 x 400 / 120 = 53.3
    assert fit.predict(54, 16) == 16 * PER_CORE
    assert fit.predict(10, 16) == pytest.approx(10 * RATE)


def test_capacity_without_a_run_below_saturation_assumes_a_core_per_worker() -> None:
    fit = fit_capacity([CapacityPoint(n, 1, 900.0, True) for n in (1, 2)])
    assert fit is not None
    assert fit.per_core == 900.0 and fit.per_worker == 900.0
    assert "one core per worker" in fit.per_worker_from


def test_growth_per_1000_requests() -> None:
    # 2 KiB a second per worker at 50 req/s per worker = 40 KiB per 1,000 requests.
    ts = [float(t) for t in range(10, 21)]
    series = [(ts, [10 * MIB + 2048 * t for t in ts]), (ts, [12 * MIB + 2048 * t for t in ts])]
    fit = fit_growth(series, 50.0, 10.0)
    assert fit is not None
    assert fit.bytes_per_1000_requests == pytest.approx(40 * 1024, rel=1e-9)


def test_the_whole_pipeline_recovers_the_known_lines(tmp_path: Path) -> None:
    folder = write_results(tmp_path / "sweep", known_runs())
    obs = observations([read_results(folder)], None)
    (model,) = build_models(obs)
    assert model.memory is not None and model.capacity is not None
    assert model.memory.base == pytest.approx(BASE, rel=1e-9)
    assert model.memory.per_worker == pytest.approx(PER_WORKER, rel=1e-9)
    assert model.capacity.per_worker == pytest.approx(RATE, rel=1e-9)
    assert model.capacity.per_core == pytest.approx(PER_CORE, rel=1e-9)

    assert main([str(folder), "--cores", "16", "--memory", "32GiB", "--no-report"]) == 0
    doc = json.loads((folder / "plan.json").read_text())
    (row,) = doc["workloads"][0]["rows"]
    # 54 workers keep 16 cores busy; they need 50 + 54 x 30 MiB, far under the budget.
    assert (row["workers"], row["limit"]) == (54, "cores")
    assert row["capacity_rps"] == pytest.approx(16 * PER_CORE)
    assert row["memory_bytes"] == pytest.approx(BASE + 54 * PER_WORKER)
    assert row["rules"]["gunicorn"]["workers"] == 33
    assert row["rules"]["gunicorn"]["capacity_rps"] == pytest.approx(33 * RATE)
    # WEB_CONCURRENCY = min(33, 32768 / 256) = 33 too.
    assert doc["rules"]["web_concurrency"]["workers"] == 33
    # Exact lines: the held-out prediction is exact.
    (check,) = doc["validation"]
    assert check["held_out"]["workers"] == 10
    assert check["memory"]["error"] == pytest.approx(0, abs=1e-9)
    assert check["capacity"]["error"] == pytest.approx(0, abs=1e-9)
    assert doc["misses"] == []
    assert row["within_target"] is True
    assert doc["workloads"][0]["summary"][1] == (
        "2 x cores + 1 = 33 workers: at best gunicorn-sync, 3,960 req/s in 1.0 GiB "
        "(-38% against the plan)."
    )


def test_a_small_host_is_memory_bound_and_the_rules_are_flagged(tmp_path: Path) -> None:
    folder = write_results(tmp_path / "sweep", known_runs())
    assert main([str(folder), "--cores", "16", "--memory", "1GiB", "--no-report"]) == 0
    doc = json.loads((folder / "plan.json").read_text())
    (row,) = doc["workloads"][0]["rows"]
    budget = 0.9 * GIB
    assert row["limit"] == "memory"
    assert row["workers"] == int((budget - BASE) // PER_WORKER)  # 29
    assert row["memory_bytes"] <= budget
    gunicorn = row["rules"]["gunicorn"]  # 33 workers: 1040 MiB > 1024
    assert not gunicorn["fits_memory"] and not gunicorn["fits_budget"]
    assert doc["rules"]["web_concurrency"]["workers"] == 4  # 1024 MiB / 256


def test_a_miss_is_said_plainly(tmp_path: Path) -> None:
    runs = known_runs()
    runs[-1]["memory"]["pss_peak_bytes"] = round((BASE + 10 * PER_WORKER) * 1.5)
    folder = write_results(tmp_path / "sweep", runs)
    assert main([str(folder), "--cores", "4", "--memory", "8GiB", "--no-report"]) == 0
    doc = json.loads((folder / "plan.json").read_text())
    (check,) = doc["validation"]
    assert check["memory"]["error"] < -0.15 and check["within_target"] is False
    assert len(doc["misses"]) == 1 and "memory model misses" in doc["misses"][0]
    (row,) = doc["workloads"][0]["rows"]
    assert row["within_target"] is False


def test_a_single_process_configuration_is_left_out_of_the_memory_line(tmp_path: Path) -> None:
    """uvicorn --workers 1 runs without a master: not on the line of 2 workers and more."""
    runs = known_runs("uvicorn")
    one = runs[0]
    one["memory"]["pss_peak_bytes"] = round(0.7 * (BASE + PER_WORKER))
    for sample in one["memory"]["samples"]:
        sample["processes"] = [p for p in sample["processes"] if p["role"] == "worker"][:1]
    obs = observations([read_results(write_results(tmp_path / "s", runs))], None)
    assert [o.masters for o in obs] == [0, 1, 1, 1, 1]
    (model,) = build_models(obs)
    assert model.memory_left_out == (1,)
    assert model.memory is not None
    assert model.memory.base == pytest.approx(BASE, rel=1e-9)
    assert model.memory.per_worker == pytest.approx(PER_WORKER, rel=1e-9)


def test_runs_that_measured_something_else_do_not_count_toward_capacity(tmp_path: Path) -> None:
    # Ranked by the report as a lower bound, but not the server's own rate for a fit.
    assert "loadgen-bound" in NOT_THE_SERVER and "loadgen-bound" not in UNRANKED
    runs = known_runs()
    runs[0]["flags"] = ["loadgen-bound"]
    runs[0]["rps"] = 1.0
    obs = observations([read_results(write_results(tmp_path / "s", runs))], None)
    first = next(o for o in obs if o.workers == 1)
    assert first.capacity_rps is None and "loadgen-bound" in (first.excluded or "")
    assert first.pss_peak == BASE + PER_WORKER  # memory still counts
    (model,) = build_models(obs)
    assert model.capacity is not None and model.capacity.per_worker == pytest.approx(RATE)


def test_slo_leaves_out_closed_loop_runs_over_the_target(tmp_path: Path) -> None:
    runs = known_runs()
    for run in runs:
        run["latency_ms"]["p99"] = 10.0 * run["workers"]
    obs = observations([read_results(write_results(tmp_path / "s", runs))], 35.0)
    assert [o.workers for o in obs if o.capacity_rps is not None] == [1, 2, 3]
    assert "over the 35 ms target" in (next(o for o in obs if o.workers == 8).excluded or "")


def test_open_loop_capacity_is_used_at_its_target(tmp_path: Path) -> None:
    runs = known_runs()
    for run in runs:
        run["capacity"] = {
            "slo_p99_ms": 50.0,
            "rps": run["rps"] / 2,
            "rps_per_gib": None,
            "bound": "server-slots",
            "curve": [],
        }
    docs = [read_results(write_results(tmp_path / "s", runs))]
    assert [o.capacity_rps for o in observations(docs, None)][:2] == [RATE / 2, RATE]
    strict = observations(docs, 20.0)
    assert all(o.capacity_rps is None for o in strict)
    assert "searched at p99 50 ms, over the 20 ms target" in (strict[0].excluded or "")


def test_soak_growth_gives_a_max_requests(tmp_path: Path) -> None:
    soak = make_run("gunicorn-sync", "mixed", 2, BASE + 2 * PER_WORKER, 100.0)
    ts = [float(t) for t in range(0, 61)]
    soak.update(
        id="gunicorn-sync/mixed/32/1/soak",
        soak=True,
        soak_series={
            "window_start_s": 0.0,
            "window_end_s": 60.0,
            "t": ts,
            "processes": [
                {"pid": 1, "role": "master", "name": "master", "shared": [0] * 61,
                 "uss": [MIB] * 61, "pss": [MIB] * 61},
                *(
                    {"pid": 2 + w, "role": "worker", "name": f"worker {w + 1}",
                     "shared": [0] * 61, "uss": [round(20 * MIB + 5000 * t) for t in ts],
                     "pss": [round(20 * MIB + 5000 * t) for t in ts]}
                    for w in range(2)
                ),
            ],
        },
    )  # fmt: skip
    folder = write_results(tmp_path / "sweep", [*known_runs(), soak])
    docs = [read_results(folder)]
    (found,) = growth(docs, [folder])
    # 5000 B/s per worker at 50 req/s per worker: 100,000 bytes per 1,000 requests.
    assert found.fit.bytes_per_1000_requests == pytest.approx(100_000, rel=1e-6)
    doc = plan(observations(docs, None), [found], Host(16, 32 * GIB, 0.1), [str(folder)])
    row = doc["workloads"][0]["rows"][0]
    slack = (32 * GIB - row["memory_bytes"]) / row["workers"]
    expected = slack / 100_000 * 1000
    assert expected * 0.99 <= row["max_requests"]["max_requests"] <= expected
    assert main([str(folder), "--cores", "16", "--memory", "32GiB"]) == 0
    html = (folder / "index.html").read_text()
    assert "private memory grew 97.7 KiB per 1,000 requests" in html


# --- the memory limit -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    base=st.floats(10 * MIB, 2 * GIB),
    per_worker=st.floats(1 * MIB, 1 * GIB),
    rate=st.floats(1.0, 5000.0),
    per_core=st.floats(10.0, 20000.0),
    cores=st.integers(1, 256),
    memory_gib=st.floats(0.25, 1024.0),
    headroom=st.floats(0.0, 0.9),
)
def test_never_proposes_more_memory_than_the_budget(
    base: float,
    per_worker: float,
    rate: float,
    per_core: float,
    cores: int,
    memory_gib: float,
    headroom: float,
) -> None:
    memory = fit_memory([MemoryPoint(n, 1, base + n * per_worker) for n in (1, 2, 3)])
    capacity = fit_capacity(
        [CapacityPoint(1, 1, rate, False), CapacityPoint(64, 1, per_core, True)]
    )
    measured = tuple(
        ConfigObservation(
            "r", "r", "prefork", "w", n, None, 1, 1, 0.0, 1.0, None, False, None, None
        )
        for n in (1, 2, 3)
    )
    model = Model("r", "r", "prefork", "w", None, memory, capacity, measured)
    host = Host(cores, int(memory_gib * GIB), headroom)
    choice = choose(model, host)
    if isinstance(choice, str):
        assert base + per_worker > host.budget * (1 - 1e-9)
    else:
        assert choice.memory_bytes <= host.budget
        assert choice.workers >= 1


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cores", "16", "--memory", "32 parsecs"], "--memory: '32 parsecs'"),
        (["--cores", "16", "--memory", "32"], "not a size with a unit"),
        (["--cores", "0", "--memory", "32GiB"], "--cores: '0'"),
        (["--cores", "many", "--memory", "32GiB"], "--cores: 'many'"),
        (["--cores", "4", "--memory", "32GiB", "--headroom", "100"], "--headroom"),
    ],
)
def test_bad_options_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    folder = write_results(tmp_path / "sweep", known_runs())
    assert main([str(folder), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (folder / "plan.json").exists()


def test_a_folder_without_a_sweep_one_line_exit_2(tmp_path: Path) -> None:
    """The sample file measured every runner at one worker count: no sweep."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "results.json").write_text((DATA / "sample_results.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "runners.plan", str(folder), "--cores", "16", "--memory", "32G"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "no sweep" in proc.stderr
    assert not (folder / "plan.json").exists()


def test_a_missing_folder_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere"), "--cores", "2", "--memory", "4GiB"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sizes() -> None:
    assert parse_size("32GiB") == parse_size("32G") == parse_size("32gi") == 32 * GIB
    assert parse_size("512MiB") == 512 * MIB
    assert parse_size("32GB") == 32 * 10**9
    assert parse_size("1.5T") == int(1.5 * 2**40)


# --- the report -------------------------------------------------------------------------------


def test_report_shows_the_plan_when_plan_json_is_there(tmp_path: Path) -> None:
    folder = write_results(tmp_path / "sweep", known_runs())
    html = render_run(folder).read_text()
    assert 'id="capacity-plan"' not in html
    assert main([str(folder), "--cores", "16", "--memory", "1GiB"]) == 0
    html = (folder / "index.html").read_text()
    assert 'id="capacity-plan"' in html and 'href="#capacity-plan"' in html
    assert 'data-plan-chart="plan-0"' in html
    assert '<tr data-runner="gunicorn-sync" data-workers="29"' in html
    assert "over the memory" in html  # gunicorn's 33 workers on 1 GiB
    data = html.split('<script type="application/json" id="plan-data">')[1].split("</script>")[0]
    chart = json.loads(data)["charts"]["plan-0"]
    budget = next(d for d in chart["datasets"] if d.get("budget"))
    assert budget["data"][0]["y"] == pytest.approx(0.9, abs=1e-3)


def test_report_says_when_plan_json_is_unreadable(tmp_path: Path) -> None:
    folder = write_results(tmp_path / "sweep", known_runs())
    (folder / "plan.json").write_text("{not json")
    html = render_run(folder).read_text()
    assert "plan.json could not be read" in html
