"""The planner's pods (runners/plan/pods.py): the arithmetic on made-up results with known
lines, the working set preferred over PSS where recorded, cost per million requests, the
command's options, and the report's Pods section."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from runners.plan.cli import main
from runners.plan.model import Host, build_models
from runners.plan.observe import observations
from runners.plan.pods import (
    PodShape,
    Prices,
    cost_per_million,
    host_rule_workers,
    plan_pod,
    pod_hour_cost,
    pods_per_node,
)
from runners.report import render_run
from runners.results.document import read_results
from runners.results.figures import GIB, MIB
from tests.test_plan import BASE, PER_CORE, PER_WORKER, RATE, known_runs, write_results

JSON = dict[str, Any]
KERNEL = 10 * MIB
"""The made-up cgroup's working set: summed PSS + 10 MiB + 5 MiB per worker."""
WS_PER_WORKER = 5 * MIB


def with_working_set(runs: list[JSON]) -> list[JSON]:
    """The runs with a cgroup whose working set is PSS + 10 MiB + 5 MiB per worker."""
    out = []
    for run in runs:
        run = copy.deepcopy(run)
        pss = run["memory"]["pss_peak_bytes"]
        ws = pss + KERNEL + run["workers"] * WS_PER_WORKER
        run["memory"]["cgroup"] = {
            "version": 1,
            "limit_bytes": None,
            "usage_peak_bytes": ws,
            "usage_mean_bytes": ws,
            "working_set_peak_bytes": ws,
            "working_set_mean_bytes": ws,
            "anon_bytes": ws - KERNEL,
            "file_bytes": 0,
            "active_file_bytes": 0,
            "inactive_file_bytes": 0,
            "shmem_bytes": 0,
            "kernel_bytes": KERNEL,
            "pss_bytes": pss,
            "pss_anon_bytes": pss,
            "pss_file_bytes": 0,
            "pss_shmem_bytes": 0,
            "oom_kills": 0,
        }
        out.append(run)
    return out


NODE = Host(cores=16, memory_bytes=64 * GIB, headroom=0.1)


def _model(runs: list[JSON], tmp_path: Path) -> Any:
    folder = write_results(tmp_path / "sweep", runs)
    (model,) = build_models(observations([read_results(folder)], None))
    return model


def test_pod_arithmetic_from_known_lines(tmp_path: Path) -> None:
    model = _model(known_runs(), tmp_path)  # PSS only: 50 MiB + n x 30 MiB
    pod = PodShape(512 * MIB, 1.0)
    row = plan_pod(model, pod, NODE, None)
    assert isinstance(row, dict)
    # Memory: (512 x 0.9 - 50) / 30 = 13.6 -> 13 workers; CPU: 400 req/s per core / 120 per
    # worker -> 4 workers keep the one core busy: the CPU is the limit.
    assert row["workers"] == 4 and row["limit"] == "cpu"
    assert row["capacity_rps"] == pytest.approx(min(4 * RATE, PER_CORE))
    assert row["memory_bytes"] == pytest.approx(BASE + 4 * PER_WORKER)
    assert row["memory_basis"] == "summed PSS"
    assert row["pods_per_node"] == 16  # 16 cores / 1 CPU; 64 GiB / 512 MiB = 128
    assert row["node_capacity_rps"] == pytest.approx(16 * PER_CORE)
    # The host rule reads the node's 16 cores: 33 workers, 50 + 33 x 30 = 1040 MiB: OOM.
    assert row["host_rule"] == {
        "workers": 33,
        "memory_bytes": pytest.approx(BASE + 33 * PER_WORKER),
        "oom": True,
    }
    assert row["cost_per_million"] is None


def test_a_small_pod_is_limited_by_memory(tmp_path: Path) -> None:
    model = _model(known_runs(), tmp_path)
    row = plan_pod(model, PodShape(160 * MIB, 2.0), NODE, None)
    assert isinstance(row, dict)
    assert row["workers"] == 3 and row["limit"] == "memory"  # (144 - 50) / 30 = 3.1
    assert row["capacity_rps"] == pytest.approx(3 * RATE)
    assert plan_pod(model, PodShape(64 * MIB, 1.0), NODE, None) == (
        "one worker does not fit the pod's memory (summed PSS)"
    )


def test_the_working_set_is_the_pods_memory_where_it_was_recorded(tmp_path: Path) -> None:
    model = _model(with_working_set(known_runs()), tmp_path)
    row = plan_pod(model, PodShape(160 * MIB, 2.0), NODE, None)
    assert isinstance(row, dict)
    assert row["memory_basis"] == "working set"
    # (144 - 60) / 35 = 2.4: two workers, not the three PSS allows.
    assert row["workers"] == 2
    assert row["memory_bytes"] == pytest.approx(BASE + KERNEL + 2 * (PER_WORKER + WS_PER_WORKER))


def test_cost_per_million_requests() -> None:
    pod = PodShape(512 * MIB, 0.5)
    prices = Prices(vcpu_hour=0.04, gib_hour=0.004)
    assert pod_hour_cost(pod, prices) == pytest.approx(0.5 * 0.04 + 0.5 * 0.004)
    # 0.022 per hour at 100 req/s (360,000 requests an hour): 0.0611 per million.
    assert cost_per_million(100.0, 0.022) == pytest.approx(0.022 / 360_000 * 1_000_000)
    assert cost_per_million(0.0, 0.022) is None
    assert pods_per_node(pod, Host(4, 8 * GIB, 0.1)) == 8  # CPU: 8, memory: 16
    assert pods_per_node(PodShape(3 * GIB, 0.5), Host(4, 8 * GIB, 0.1)) == 2
    assert host_rule_workers("prefork", 64) == 129 and host_rule_workers("async", 64) == 64


def test_the_command_plans_pods_with_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_results(tmp_path / "sweep", with_working_set(known_runs()))
    argv = [str(folder), "--cores", "16", "--memory", "64GiB", "--no-report"]
    pods = ["--pod-memory", "512MiB", "--pod-cpu", "1"]
    prices = ["--price-vcpu-hour", "0.04", "--price-gib-hour", "0.005"]
    assert main([*argv, *pods, *prices]) == 0
    out = capsys.readouterr().out
    assert "json: pods of 512 MiB and 1 CPU, 10% headroom; 16 per node" in out
    assert "a pod-hour 0.0425" in out
    doc = json.loads((folder / "plan.json").read_text())
    (row,) = doc["pods"]["workloads"][0]["rows"]
    assert row["workers"] == 4 and row["memory_basis"] == "working set"
    assert row["cost_per_million"] == pytest.approx(0.0425 / (PER_CORE * 3600) * 1e6)
    page = render_run(folder).read_text()
    assert "Pods of 512.0 MiB and 1.0 CPU" in page and "cost per 1M requests" in page


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pod-memory", "512MiB"], "--pod-memory and --pod-cpu: a pod needs both"),
        (["--pod-memory", "512", "--pod-cpu", "1"], "--pod-memory: '512' is not a size"),
        (["--pod-memory", "1GiB", "--pod-cpu", "0"], "--pod-cpu: '0' is not a positive number"),
        (["--price-vcpu-hour", "1", "--price-gib-hour", "1"], "give both, with --pod-memory"),
    ],
)
def test_bad_pod_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    folder = write_results(tmp_path / "sweep", known_runs())
    assert main([str(folder), "--cores", "16", "--memory", "64GiB", *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err
