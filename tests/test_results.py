"""The typed run record (``runners.results``): results.json read into records and
written back unchanged, the records the driver builds, the cells and the flags."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.results.cells import aggregate, summarize
from runners.results.codec import Record
from runners.results.criteria import NOISY_SPREAD
from runners.results.document import (
    CpuPlacement,
    Environment,
    Matrix,
    Results,
    ResultsFile,
    read_results,
)
from runners.results.flags import FLAGS, LOWER_BOUND, UNRANKED, notes_for, order_flags
from runners.results.record import Latency, Measurement, Memory, PythonInfo, Run
from runners.results.schema import validation_errors
from tests.test_memory import _schema_validator

DATA = Path(__file__).parent / "data"
SAMPLES = ("sample_results.json", "sample_results_b.json", "sample_runtimes.json")


def unknown_keys(value: Any, path: str = "") -> list[str]:
    """Where a record kept keys it does not know (``extra``)."""
    found: list[str] = []
    if isinstance(value, Record):
        found += [f"{path}.{key}" for key in value.extra]
        for spec in dataclasses.fields(value):
            if spec.name not in ("extra", "source_keys"):
                found += unknown_keys(getattr(value, spec.name), f"{path}.{spec.name}")
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            found += unknown_keys(item, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_files_read_typed_and_write_back_exactly(name: str) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    data = json.loads(text)
    results = Results.from_dict(data)
    # Every key is a typed field (nothing carried along untyped)...
    assert unknown_keys(results) == []
    assert isinstance(results.runs[0], Run) and isinstance(results.runs[0].latency_ms, Latency)
    assert results.runs[0].memory is None or isinstance(results.runs[0].memory, Memory)
    # ...and writing it back gives the same document, key order included.
    assert results.to_dict() == data
    assert json.dumps(results.to_dict()) == json.dumps(data)


def test_read_results_validates_and_types(tmp_path: Path) -> None:
    results = read_results(DATA / "sample_runtimes.json")
    soak = [r for r in results.runs if r.soak_series is not None]
    assert soak and all(r.soak for r in soak)
    assert soak[0].soak_series is not None
    assert len(soak[0].soak_series.processes[0].uss) == len(soak[0].soak_series.t)
    assert results.cells and results.cells[0].id.startswith(results.cells[0].runner)
    assert results.runtimes[0].python.version


def test_what_a_record_does_not_know_is_kept(tmp_path: Path) -> None:
    data = json.loads((DATA / "sample_results.json").read_text())
    run = data["runs"][0]
    run["placement_note"] = "pinned by hand"
    run["forecast"] = {"cores": 16, "curve": [{"workers": 4}]}
    run["latency_ms"]["p999"] = 12.5
    results = Results.from_dict(data)
    assert results.runs[0].extra["placement_note"] == "pinned by hand"
    assert results.runs[0].extra["forecast"] == {"cores": 16, "curve": [{"workers": 4}]}
    assert results.runs[0].latency_ms.extra == {"p999": 12.5}
    assert results.to_dict() == data


def test_a_field_changed_after_reading_is_written_even_where_the_file_had_no_key() -> None:
    data = json.loads((DATA / "sample_results.json").read_text())
    results = Results.from_dict(data)
    assert "notes" not in data["runs"][0] and "cells" not in data
    run = dataclasses.replace(results.runs[0], notes=("noisy: ...",))
    changed = dataclasses.replace(results, runs=(run, *results.runs[1:]))
    written = changed.to_dict()
    assert written["runs"][0]["notes"] == ["noisy: ..."]
    assert "notes" not in written["runs"][1]
    assert "cells" not in written  # still its default: still left out


def _run(status: str = "ok", **figures: Any) -> Run:
    return Run(
        id="uvicorn/json/4/1",
        runner="uvicorn",
        family="async",
        server="uvicorn",
        interface="asgi",
        variant="async",
        workers=1,
        gc="default",
        middleware="minimal",
        python=PythonInfo(implementation="CPython", version="3.11.7", path="/usr/bin/python3"),
        django="5.2.8",
        workload="json",
        users=4,
        status="ok" if status == "ok" else "failed",
        started_at="2026-01-01T00:00:00+00:00",
        warmup_s=1.0,
        duration_s=2.0,
        server_cpus=(0,),
        loadgen_cpus=(1,),
        **figures,
    )


def _memory(pss: int) -> Memory:
    return Memory.from_dict(
        {
            "rss_peak_bytes": 2 * pss,
            "pss_peak_bytes": pss,
            "pss_mean_bytes": pss // 2,
            "uss_peak_bytes": pss // 4,
            "processes": 1,
            "cpu_seconds": 1.5,
            "sampler_cpu_percent": 0.5,
            "samples": [
                {"t": 0.0, "pss": pss, "processes": [_proc(pss)]},
            ],
        }
    )


def _proc(pss: int) -> dict[str, Any]:
    return {"pid": 1, "role": "worker", "rss": 2 * pss, "pss": pss, "uss": pss // 4}


def _measurement(requests: int, loadgen_cpu_seconds: float = 0.5) -> Measurement:
    return Measurement(
        window_s=2.0,
        requests=requests,
        failures=0,
        latency=Latency(p50=1.0, p90=2.0, p95=2.5, p99=3.0, max=4.0, mean=1.2),
        locust_rps=None,
        memory=_memory(2**29),
        cpu_seconds=1.5,
        loadgen_cpu_seconds=loadgen_cpu_seconds,
        loadgen_cpus=1,
        server_cpus=1,
    )


def test_an_ok_run_and_a_failed_run_have_the_keys_the_driver_always_wrote() -> None:
    measurement = _measurement(2000, loadgen_cpu_seconds=1.9)
    ok = dataclasses.replace(measurement.fill(_run()), flags=("loadgen-bound",), notes=())
    written = ok.to_dict()
    _schema_validator("run").validate(written)
    assert written["flags"] == ["loadgen-bound"]
    assert written["rps"] == 1000.0 and written["rps_per_gib"] == pytest.approx(2000.0)
    assert written["rps_per_gib_mean_pss"] == pytest.approx(4000.0)
    assert written["server_cpu_percent"] == pytest.approx(75.0)
    assert written["loadgen_cpu_percent"] == pytest.approx(95.0)
    # Measured figures are written even when null (locust_rps here); notes even when empty.
    assert written["locust_rps"] is None and written["notes"] == []
    assert "events" not in written and "soak" not in written and "soak_series" not in written

    failed = ok.failed(error="the server died", log_tail="boom").to_dict()
    _schema_validator("run").validate(failed)
    assert failed["status"] == "failed" and failed["error"] == "the server died"
    assert failed["requests"] == 0 and failed["memory"] is None and failed["flags"] == []
    assert failed["latency_ms"] == dict.fromkeys(("p50", "p90", "p95", "p99", "max", "mean"))
    # A failed run never measured: no Locust rps, no CPU percentages.
    fresh = _run().failed(error="no server", log_tail=None).to_dict()
    for key in ("locust_rps", "server_cpu_percent", "loadgen_cpu_seconds", "notes"):
        assert key not in fresh


def test_results_file_writes_valid_cells_and_marks_noisy_runs(tmp_path: Path) -> None:
    env = Environment(
        cpu_model="test",
        cpu_count=2,
        placement=CpuPlacement(server_cpus=(0,), loadgen_cpus=(1,), shared=False),
        os="Linux",
        python=PythonInfo(implementation="CPython", version="3.11.7", path="/usr/bin/python3"),
        packages={"django": "5.2.8"},
        database="sqlite",
        git_commit=None,
    )
    matrix = Matrix(
        runners=("uvicorn",), workloads=("json",), users=(4,), duration_s=2, warmup_s=1, repeat=2
    )
    path = tmp_path / "results.json"
    file = ResultsFile(path, command="python -m runners.bench", environment=env, matrix=matrix)
    for repeat, requests in ((1, 2000), (2, 2600)):
        run = dataclasses.replace(_measurement(requests).fill(_run()), notes=(), repeat=repeat)
        file.add_run(dataclasses.replace(run, id=f"uvicorn/json/4/{repeat}"))
    file.finish(interrupted=True)
    written = json.loads(path.read_text())
    assert validation_errors(written) == []
    assert written["interrupted"] is True and written["finished_at"] is None
    (cell,) = written["cells"]
    assert cell["id"] == "uvicorn/json/4" and (cell["runs"], cell["ok_runs"]) == (2, 2)
    assert cell["rps_mean"] == pytest.approx(1150.0)
    assert cell["rps_spread"] == pytest.approx(150 / 1150) and cell["rps_spread"] > NOISY_SPREAD
    assert cell["flags"] == ["noisy"]
    for run in written["runs"]:
        assert run["flags"] == ["noisy"]
        assert run["notes"] == notes_for(["noisy"])
    assert read_results(path).to_dict() == written


def test_one_aggregation_for_the_driver_and_the_report() -> None:
    data = json.loads((DATA / "sample_results.json").read_text())
    results = Results.from_dict(data)
    cells = aggregate(results.runs, results.environment.python, results.environment.packages)
    summaries = summarize(cells)
    assert (
        len(cells) == len(summaries) == len({(r.runner, r.workload, r.users) for r in results.runs})
    )
    for cell, summary in zip(cells, summaries, strict=True):
        assert summary.runs == len(cell.runs) and summary.ok_runs == len(cell.ok_runs)
        assert summary.rps_mean == (cell.rps.mean if cell.rps else None)
        assert ("noisy" in summary.flags) == ("noisy" in cell.flags) == cell.noisy
    # A failed repetition: the report's cell says so, the summary counts it.
    broken = copy.deepcopy(data)
    broken["runs"][0] |= {"status": "failed", "memory": None, "rps": 0.0}
    cell = aggregate(Results.from_dict(broken).runs)[0]
    assert "failed" in cell.flags and len(cell.ok_runs) == len(cell.runs) - 1


def test_one_home_for_the_flags() -> None:
    # Every flag the driver sets on a run has a console note; the report's help covers all.
    for name in ("loadgen-bound", "noisy", "failures", "shared-cpus", "timeouts"):
        assert FLAGS[name].note and FLAGS[name].help
    assert FLAGS["failed"].note is None and notes_for(["failed"]) == []
    assert "over 90%" in (FLAGS["loadgen-bound"].note or "")
    assert f"{NOISY_SPREAD:.0%}" in FLAGS["noisy"].help
    assert "shared-cpus" not in UNRANKED
    assert {"failed", "unconfirmed", "failures", "timeouts", "user-bound", "profiled"} <= UNRANKED
    # What the server did at least (ranked as ≥), and footnotes: never decide a rank alone.
    assert {"loadgen-bound", "interference"} == LOWER_BOUND
    assert not {"loadgen-bound", "interference", "noisy", "steal", "loadgen-stalls"} & UNRANKED
    assert order_flags(["zzz", "timeouts", "noisy", "failed", "noisy"]) == (
        "failed",
        "noisy",
        "timeouts",
        "zzz",
    )


# --- version 2: open loop, capacity, histograms ----------------------------------------------


def _hdr(latencies_ms: list[float]) -> str:
    from hdrh.histogram import HdrHistogram

    hist = HdrHistogram(1, 3_600_000_000, 3)
    for ms in latencies_ms:
        hist.record_value(round(ms * 1000))
    encoded: bytes = hist.encode()
    return encoded.decode("ascii")


def _open_run(repeat: int, latencies_ms: list[float], capacity_rps: float, pss: int) -> Run:
    from runners.results import latency as hdr
    from runners.results.record import Capacity, Probe

    encoded = _hdr(latencies_ms)
    probe = Probe(
        mode="open",
        offered_rps=capacity_rps,
        achieved_rps=capacity_rps,
        p50_ms=1.0,
        p99_ms=5.0,
        errors=0,
        requests=100,
        users=16,
        passed=True,
    )
    run = dataclasses.replace(
        _run(),
        id=f"uvicorn/json/0/{repeat}",
        users=0,
        repeat=repeat,
        load="open",
        latency_hdr=encoded,
        latency_ms=hdr.latency(hdr.merged([encoded])),
        requests=len(latencies_ms),
        rps=capacity_rps,
        memory=_memory(pss),
        rps_per_gib=capacity_rps / (pss / 2**30),
        capacity=Capacity(
            slo_p99_ms=100.0,
            rps=capacity_rps,
            rps_per_gib=capacity_rps / (pss / 2**30),
            bound="server-cpu",
            curve=(probe,),
        ),
    )
    return run


def test_an_open_loop_run_round_trips_and_validates() -> None:
    run = _open_run(1, [1.0, 2.0, 3.0], 800.0, 64 * 2**20)
    data = run.to_dict()
    assert data["load"] == "open" and data["capacity"]["curve"][0]["passed"] is True
    assert Run.from_dict(data).to_dict() == data
    doc = json.loads((DATA / "sample_results.json").read_text())
    doc["schema_version"] = 2
    doc["runs"] = [data]
    assert validation_errors(doc) == []


def test_a_cells_percentiles_come_from_merged_histograms_not_averages() -> None:
    # Two repeats: one fast, one with a slow tail. The mean of their p99s is not
    # the p99 of all their requests together.
    fast = _open_run(1, [1.0] * 980 + [2.0] * 20, 800.0, 64 * 2**20)
    slow = _open_run(2, [1.0] * 900 + [50.0] * 100, 800.0, 64 * 2**20)
    (cell,) = aggregate([fast, slow])
    p99 = cell.latency["p99"]
    assert p99 is not None
    assert p99.mean == pytest.approx(50.0, rel=0.01)  # 5% of all requests took 50 ms
    assert (fast.latency_ms.p99 or 0) + (slow.latency_ms.p99 or 0) < 2 * 50.0
    assert p99.min == pytest.approx(2.0, rel=0.01) and p99.max == pytest.approx(50.0, rel=0.01)
    (summary,) = summarize([cell])
    assert summary.p99_ms == pytest.approx(50.0, rel=0.01)


def test_an_open_loop_cell_is_ranked_by_capacity_per_gib_and_noisy_by_its_cv() -> None:
    steady = [_open_run(r, [1.0] * 100, 800.0, 64 * 2**20) for r in (1, 2, 3)]
    (cell,) = aggregate(steady)
    assert cell.open_loop and cell.ranking is cell.capacity_per_gib
    assert cell.ranked and not cell.noisy and cell.bound == "server-cpu"
    # Same rps every time, but the memory differs: capacity per GiB varies by ~20%.
    varying = [
        _open_run(r, [1.0] * 100, 800.0, pss * 2**20) for r, pss in ((1, 50), (2, 64), (3, 80))
    ]
    (cell,) = aggregate(varying)
    assert cell.rps is not None and cell.rps.spread == 0
    # Noisy, and ranked: its band (the repeats' range) holds the spread.
    assert cell.noisy and "noisy" in cell.flags and cell.ranked
    band = cell.ranking_band
    assert band is not None and not band.measured
    assert band.low == pytest.approx(800.0 / 80 * 1024) and band.high == pytest.approx(
        800.0 / 50 * 1024
    )


@given(
    st.lists(st.floats(min_value=1e-6, max_value=120.0), min_size=1, max_size=400),
    st.floats(min_value=0.001, max_value=200_000.0),
)
@settings(max_examples=60, deadline=None)
def test_percentiles_mean_and_share_over_are_hdrhs_own(seconds: list[float], ms: float) -> None:
    """The one-pass reading of a decoded histogram gives what hdrh's own (slow) methods give."""
    from hdrh.histogram import HdrHistogram

    from loadtests.pacing import histogram, record_us
    from runners.results import latency as hdr

    recorded = histogram()
    for s in seconds:
        record_us(recorded, s)
    hist = HdrHistogram.decode(recorded.encode())
    expected = Latency(
        **{name: hist.get_value_at_percentile(p) / 1000.0 for name, p in hdr.PERCENTILES.items()},
        max=hist.get_max_value() / 1000.0,
        mean=hist.get_mean_value() / 1000.0,
    )
    assert hdr.latency(hist) == expected
    below = sum(
        item.count_added_in_this_iter_step
        for item in hist.get_recorded_iterator()
        if item.value_iterated_to <= ms * 1000.0
    )
    assert hdr.share_over(hist, ms) == pytest.approx(1 - below / len(seconds), abs=1e-12)
