"""Memory and CPU accounting: /proc reading, tree sampling, the sampler, summaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

from runners.cli.memcheck import deviation, exercise, read_proc
from runners.results.figures import GIB, per_gib
from runners.results.record import Memory, MemorySample
from runners.sampling.memory import (
    ProcessMemory,
    Sampler,
    TreeSample,
    read_smaps_rollup,
    sample_tree,
)
from runners.serving.proctree import tree_cpu_seconds, tree_pids
from tests.servers import running

pytestmark = pytest.mark.measures  # the sampler's own CPU cost and timing: runs alone

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "runners" / "results" / "schema.json"


def _schema_validator(definition: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator(
        {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    )


# -- one process ------------------------------------------------------------------


def test_single_process_sample_matches_psutil() -> None:
    # A quiet child of its own (the test process itself may have children).
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        sample = sample_tree(child.pid)
        me = sample.processes[0]
        assert len(sample.processes) == 1
        assert me.pid == child.pid
        assert me.role == "worker"  # no serving children
        assert 0 < me.uss <= me.pss <= me.rss
        proc = psutil.Process(child.pid)
        full = proc.memory_full_info()
        # Same source (smaps_rollup), read moments apart.
        assert abs(me.pss - full.pss) / full.pss < 0.05
        assert abs(me.uss - full.uss) / full.uss < 0.05
        assert abs(me.rss - full.rss) / full.rss < 0.05
        times = proc.cpu_times()
        assert abs(me.cpu_seconds - (times.user + times.system)) < 0.5
    finally:
        child.kill()
        child.wait()


def test_read_smaps_rollup_fields() -> None:
    fields = read_smaps_rollup(os.getpid())
    assert {"Rss", "Pss", "Private_Clean", "Private_Dirty"} <= set(fields)
    assert fields["Pss"] <= fields["Rss"]


def test_missing_root_raises() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        sample_tree(proc.pid)
    with pytest.raises(ProcessLookupError):
        tree_cpu_seconds(proc.pid)


def test_forked_children_share_pages_and_are_workers() -> None:
    code = (
        "import os, sys, time\n"
        "data = [str(i) * 10 for i in range(200_000)]\n"  # ~15 MB shared after fork
        "for _ in range(2):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60); os._exit(0)\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        sample = sample_tree(proc.pid)
        roles = [p.role for p in sample.processes]
        assert roles == ["master", "worker", "worker"]
        assert len(sample.workers) == 2
        # Forked workers share most of their pages: summed RSS double-counts them.
        for child in sample.workers:
            assert child.shared > child.uss
        assert sample.rss > 1.5 * sample.pss
        assert sample.uss <= sample.pss <= sample.rss
    finally:
        for pid in tree_pids(proc.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        proc.wait()


# -- summaries ------------------------------------------------------------------------


def _sample(t: float, *mems: tuple[int, int, int, float], reaped: float = 0.0) -> TreeSample:
    procs = tuple(
        ProcessMemory(
            pid=i + 1, role="master" if i == 0 else "worker", rss=r, pss=p, uss=u, cpu_seconds=c
        )
        for i, (r, p, u, c) in enumerate(mems)
    )
    return TreeSample(t=t, processes=procs, reaped_cpu_seconds=reaped)


def test_tree_sample_sums_and_dict() -> None:
    s = _sample(1.5, (100, 60, 40, 1.0), (200, 120, 80, 2.0), reaped=0.5)
    assert (s.rss, s.pss, s.uss, s.shared) == (300, 180, 120, 180)
    assert s.cpu_seconds == pytest.approx(3.5)
    d: dict[str, Any] = MemorySample.from_tree(s).to_dict()
    assert d["rss"] == 300 and d["t"] == 1.5
    assert [p["role"] for p in d["processes"]] == ["master", "worker"]
    assert d["processes"][1] == {
        "pid": 2,
        "role": "worker",
        "rss": 200,
        "pss": 120,
        "uss": 80,
        "shared": 120,
        "cpu_seconds": 2.0,
        "helper": False,
    }
    _schema_validator("process_sample").validate(d["processes"][0])


def test_window_memory_peaks_means_cpu_and_schema() -> None:
    samples = [
        _sample(0.0, (100, 60, 40, 1.0)),
        _sample(1.0, (300, 100, 80, 2.0)),
        _sample(2.0, (200, 80, 60, 4.0), reaped=1.0),
    ]
    block: dict[str, Any] = Memory.from_samples(samples, sampler_cpu_percent=0.25).to_dict()
    assert block["rss_peak_bytes"] == 300
    assert block["rss_mean_bytes"] == 200
    assert block["pss_peak_bytes"] == 100
    assert block["pss_mean_bytes"] == 80
    assert block["uss_peak_bytes"] == 80
    assert block["uss_mean_bytes"] == 60
    assert block["processes"] == 1
    assert block["cpu_seconds"] == pytest.approx(4.0)  # 5.0 - 1.0
    assert block["sampler_cpu_percent"] == 0.25
    assert len(block["samples"]) == 3
    assert Memory.from_samples(samples, cpu_seconds=9.0).cpu_seconds == 9.0
    _schema_validator("memory").validate(block)
    with pytest.raises(ValueError):
        Memory.from_samples([])


def test_per_gib() -> None:
    assert per_gib(1000.0, GIB // 2) == pytest.approx(2000.0)
    assert per_gib(1000.0, 0) is None


# -- real servers --------------------------------------------------------------------


@pytest.mark.servers
def test_sampler_time_series_and_its_own_cost() -> None:
    with running("gunicorn-sync", workers=4) as server:
        sampler = Sampler(server.pid, interval=1.0)
        sampler.start()
        exercise(server, ["json", "fortunes"], per_worker=10)
        deadline = time.monotonic() + 10
        while len(sampler.samples) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        samples = sampler.stop()
        assert sampler.error is None
        assert len(samples) >= 4
        ts = [s.t for s in samples]
        assert ts == sorted(ts) and ts[0] < 0.5
        for s in samples:
            assert len(s.server_processes) == 5
            assert s.uss <= s.pss <= s.rss
        # Measured, and under 2% of a core at 1 Hz with 5 processes (a short window like
        # this one carries the first full scan of /proc; a long one amortises it).
        cost = sampler.cpu_percent_of_sampler
        assert 0 < cost < 2.0, cost
        memory = Memory.from_samples(samples, sampler_cpu_percent=cost)
        assert (memory.cpu_seconds or 0) > 0  # the requests cost CPU
        assert memory.pss_peak_bytes >= memory.pss_mean_bytes


@pytest.mark.servers
def test_cpu_seconds_include_workers_that_exited() -> None:
    with running("gunicorn-sync", workers=2) as server:
        exercise(server, ["fortunes", "queries?queries=10"], per_worker=30)
        before = tree_cpu_seconds(server.pid)
        worker = sample_tree(server.pid).workers[0].pid
        os.kill(worker, signal.SIGTERM)  # gunicorn reaps and replaces it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = [p.pid for p in sample_tree(server.pid).workers]
            if worker not in pids and len(pids) == 2:
                break
            time.sleep(0.1)
        after = tree_cpu_seconds(server.pid)
        assert after >= before - 0.02  # the reaped worker's CPU is still counted


@pytest.mark.servers
@pytest.mark.parametrize("name", ["hypercorn", "uvicorn"])
def test_spawn_helpers_count_in_sums_not_as_workers(name: str) -> None:
    with running(name, workers=2) as server:
        sample = sample_tree(server.pid)
        helpers = [p for p in sample.processes if p.helper]
        assert len(helpers) == 1  # multiprocessing's resource tracker
        assert helpers[0].role == "master"
        assert len(sample.workers) == 2
        assert len(sample.server_processes) == 3
        assert sample.pss == sum(p.pss for p in sample.processes)


@pytest.mark.servers
def test_sample_matches_proc_smaps() -> None:
    with running("uwsgi", workers=2) as server:
        exercise(server, ["json", "db"], per_worker=5)
        time.sleep(0.5)
        sample = sample_tree(server.pid)
        check = deviation(sample)
        assert check.ok, check.describe()
        assert check.rss < 0.5 and check.uss < 0.5
        for proc in sample.processes:
            smaps = read_proc(proc.pid)
            assert smaps.uss <= smaps.pss <= smaps.rss
            assert smaps.rss == smaps.vm_rss or abs(smaps.rss - smaps.vm_rss) < smaps.rss / 200


@pytest.mark.servers
def test_preload_uses_less_pss_than_no_preload() -> None:
    """Same 4 workers, same requests: importing the app before fork saves PSS."""
    results: dict[str, TreeSample] = {}
    for name in ("gunicorn-sync", "gunicorn-sync-preload"):
        with running(name, workers=4) as server:
            failures = exercise(server, ["json", "fortunes", "db"], per_worker=8)
            assert not failures
            time.sleep(0.5)
            results[name] = sample_tree(server.pid)
    plain, preload = results["gunicorn-sync"], results["gunicorn-sync-preload"]
    assert len(plain.server_processes) == len(preload.server_processes) == 5
    assert preload.pss < plain.pss, (preload.pss, plain.pss)
    # The saving comes from pages the workers share with the master.
    assert preload.shared > plain.shared


@pytest.mark.servers
def test_sampler_follows_a_replaced_worker() -> None:
    # Between full scans of /proc the sampler reads only the known tree; a
    # worker that dies must trigger a rescan that finds its replacement.
    with running("gunicorn-sync", workers=2) as server:
        sampler = Sampler(server.pid, interval=0.2, rescan_every=1000)
        sampler.start()
        deadline = time.monotonic() + 10
        while (first := sampler.latest()) is None or len(first.workers) < 2:
            assert time.monotonic() < deadline, "no sample with both workers"
            time.sleep(0.05)
        old = first.workers[0].pid
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 15
        latest = first
        while time.monotonic() < deadline:
            time.sleep(0.2)
            latest = sampler.latest() or latest
            pids = {p.pid for p in latest.workers}
            if len(pids) == 2 and old not in pids:
                break
        sampler.stop()
        assert sampler.error is None
        assert old not in {p.pid for p in latest.workers}
        assert len(latest.workers) == 2
