"""Profiles in the bench driver (``runners.bench.profiles``): every run's smaps
breakdown, ``--memory-profile``, ``--profile`` and a soak's shared-to-private
movement per mapping category, through the bench CLI on real servers, and what
the report shows of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runners.bench.profiles import soak_shift
from runners.results.profiles import Breakdown, MapUsage, ProcessBreakdown
from runners.sampling.smaps import CATEGORIES
from tests.servers import BenchRun, run_bench
from tests.test_report import parse

RUNNER = "gunicorn-sync-preload"
WINDOW = (
    *("--workloads", "json", "--quick", "--load", "closed", "--users", "4"),
    *("--warmup", "1", "--duration", "3"),
)
KIB = 1024
MIB = 1024 * KIB
SOAK_REQUESTS = 800


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("profiles-data")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[BenchRun]:
    out = tmp_path_factory.mktemp("plain") / "results"
    yield run_bench(out, data_dir, "--runners", RUNNER, *WINDOW, "--no-report")


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[BenchRun]:
    out = tmp_path_factory.mktemp("profiled") / "results"
    yield run_bench(
        out, data_dir, "--runners", f"{RUNNER},uvicorn", *WINDOW, "--profile", "--memory-profile"
    )


def only_run(bench: BenchRun, runner: str = RUNNER) -> dict[str, Any]:
    runs = [r for r in bench.check()["runs"] if r["runner"] == runner]
    assert len(runs) == 1
    run: dict[str, Any] = runs[0]
    return run


@pytest.mark.servers
def test_every_run_records_a_breakdown_that_adds_up_to_the_worker(plain: BenchRun) -> None:
    run = only_run(plain)
    assert "profiled" not in run["flags"]
    assert "memory_profile" not in run and "cpu_profile" not in run
    breakdown = run["breakdown"]
    assert breakdown["at"] == "window-end"
    assert 0 < breakdown["seconds"] < 1.0
    roles = [p["role"] for p in breakdown["processes"]]
    assert roles == ["master", "worker"]
    last = run["memory"]["samples"][-1]["processes"]
    for proc in breakdown["processes"]:
        assert set(proc["categories"]) == set(CATEGORIES)
        for figure in ("rss", "pss", "private", "shared"):
            summed = sum(c[figure] for c in proc["categories"].values())
            assert summed == proc["total"][figure], (proc["role"], figure)
        total = proc["total"]
        assert total["private"] + total["shared"] == total["rss"]
        # The same process in the sampler's last smaps_rollup read, a moment before: smaps
        # rounds each mapping's PSS down to a kB, so PSS may be lower by up to a kB each.
        sample = next(p for p in last if p["pid"] == proc["pid"])
        assert abs(total["rss"] - sample["rss"]) <= 0.02 * sample["rss"] + 256 * KIB
        slack = KIB * sum(c["mappings"] for c in proc["categories"].values())
        assert -slack - 0.02 * sample["pss"] <= total["pss"] - sample["pss"] <= 0.02 * sample["pss"]
    worker = breakdown["processes"][1]
    heap = worker["categories"]["heap"]
    assert heap["private"] > 0.5 * worker["total"]["private"]  # mostly the Python heap
    assert worker["categories"]["libraries"]["rss"] > 0


@pytest.mark.servers
def test_profile_writes_a_django_flame_graph_linked_from_the_report(profiled: BenchRun) -> None:
    for runner in (RUNNER, "uvicorn"):
        run = only_run(profiled, runner)
        assert "profiled" in run["flags"]
        profile = run["cpu_profile"]
        assert profile["samples"] and profile["samples"] > 0, profile
        svg = profiled.out / profile["flamegraph"]
        text = svg.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "get_response" in text and "django/core/handlers" in text, runner
    page = parse((profiled.out / "index.html").read_text(encoding="utf-8"))
    links = [a.attrs["href"] for a in page.find("section", id="runs").find_all("a")]
    for runner in (RUNNER, "uvicorn"):
        assert only_run(profiled, runner)["cpu_profile"]["flamegraph"] in links
    # The flame graphs side by side: one row per workload, a column per runner.
    (grid,) = [t for t in page.find_all("table") if t.has_class("flamegraph-grid")]
    (row,) = [r for r in grid.find_all("tr") if r.attrs.get("data-workload") == "json"]
    cells = {c.attrs["data-run-id"]: c for c in row.find_all("td") if c.attrs.get("data-run-id")}
    assert set(cells) == {r["id"] for r in profiled.results["runs"]}
    for run_id, cell in cells.items():
        run = next(r for r in profiled.results["runs"] if r["id"] == run_id)
        assert [a.attrs["href"] for a in cell.find_all("a")] == [run["cpu_profile"]["flamegraph"]]
    # Profiled runs are not ranked.
    ranked = [r for r in page.find_all("tr") if r.attrs.get("data-rank")]
    assert ranked == []
    # Each runner's worker, private memory by category, side by side: mostly heap.
    (table,) = [t for t in page.find_all("table") if t.has_class("profile-breakdown-table")]
    rows = {r.attrs["data-runner"]: r for r in table.find_all("tr") if r.attrs.get("data-runner")}
    assert set(rows) == {RUNNER, "uvicorn"}
    assert {r.attrs["data-top"] for r in rows.values()} == {"heap"}


@pytest.mark.servers
def test_memory_profile_records_top_sites_with_django_and_the_fork(profiled: BenchRun) -> None:
    for runner in (RUNNER, "uvicorn"):
        profile = only_run(profiled, runner)["memory_profile"]
        assert profile["missing"] == []
        workers = [p for p in profile["processes"] if p["role"] == "worker"]
        assert workers
        for worker in workers:
            packages = {row["package"] for row in worker["by_package"]}
            assert "django" in packages, worker["by_package"]
            assert worker["top_lines"] and worker["objects_total"] > 0
            assert worker["traced_bytes"] > 0
    preload = only_run(profiled)["memory_profile"]
    (fork,) = preload["fork"]
    assert fork["app_imported"] is True and fork["objects_total"] > 10_000
    worker = next(p for p in preload["processes"] if p["role"] == "worker")
    assert worker["traced_from"] == "fork"
    assert worker["freeze_count_at_fork"] == 0  # gc default: nothing frozen
    assert worker["objects_since_fork"]
    uvicorn = only_run(profiled, "uvicorn")["memory_profile"]
    assert uvicorn["fork"] == []  # spawned workers inherit nothing
    page = parse((profiled.out / "index.html").read_text(encoding="utf-8"))
    cards = page.find("section", id="profiles").find_all("div")
    shown = {d.attrs.get("data-run-id") for d in cards if d.has_class("memory-profile")}
    assert shown == {r["id"] for r in profiled.results["runs"]}


@pytest.fixture(scope="module")
def soaks(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[BenchRun]:
    """One soak per gc mode. ``feed`` builds model instances on every request: within a
    few hundred requests a worker under ``default`` runs a full collection, which writes
    the header of every tracked object it inherited (Instagram's finding), while its
    first touch (reference counts, the specializing interpreter's caches) costs both
    modes alike. 800 requests is about twice what the first full collection needs."""
    out = tmp_path_factory.mktemp("soak") / "results"
    yield run_bench(
        *(out, data_dir, "--soak", str(SOAK_REQUESTS), "--workloads", "feed"),
        *("--users", "4", "--gc", "default,freeze"),
    )


def soak_run(bench: BenchRun, gc: str) -> dict[str, Any]:
    runs: list[dict[str, Any]] = [r for r in bench.check()["runs"] if r["gc"] == gc]
    assert len(runs) == 1
    run = runs[0]
    assert run["runner"] == RUNNER and run["soak"] is True
    return run


def heap_lost_per_1k(run: dict[str, Any]) -> float:
    """The heap's shared bytes a worker lost per 1,000 requests of the soak (mean worker)."""
    workers = run["soak_breakdown"]["workers"]
    lost: float = sum(w["categories"]["heap"]["unshared"] for w in workers) / len(workers)
    return lost / (int(run["requests"]) / 1000)


@pytest.mark.servers
def test_a_soak_records_which_category_moved_from_shared_to_private(soaks: BenchRun) -> None:
    run = soak_run(soaks, "default")
    soak = run["soak_breakdown"]
    assert soak["start"]["at"] == "soak-start" and soak["end"]["at"] == "soak-end"
    assert soak["start"]["t"] < run["soak_series"]["window_start_s"] + 0.5
    names = {p["name"] for p in run["soak_series"]["processes"] if p["role"] == "worker"}
    assert {w["name"] for w in soak["workers"]} <= names
    assert len(soak["workers"]) == run["workers"]
    assert sum(w["categories"]["heap"]["unshared"] for w in soak["workers"]) > 0
    assert soak["driver"] in CATEGORIES
    page = parse((soaks.out / "index.html").read_text(encoding="utf-8"))
    driver = page.find("section", id="profiles").find("li", data_run_id=run["id"])
    assert driver.attrs["data-driver"] == soak["driver"]
    assert "drove the decay" in driver.text()


@pytest.mark.servers
def test_gc_freeze_erodes_the_heaps_shared_part_more_slowly_than_default(
    soaks: BenchRun,
) -> None:
    runs = {gc: soak_run(soaks, gc) for gc in ("default", "freeze")}
    for run in runs.values():
        assert run["requests"] >= SOAK_REQUESTS
        for worker in run["soak_breakdown"]["workers"]:
            heap = worker["categories"]["heap"]
            assert heap["private_end"] > heap["private_start"], worker  # every worker grows
            assert heap["private_growth"] == heap["private_end"] - heap["private_start"]
        assert run["soak_breakdown"]["driver"] == "heap"
    # Measured (3.11, 3 workers on 1 CPU, 3 repeats): 24.4-24.5 MiB per worker per 1,000
    # requests under default, 14.4 under freeze: the full collection's ~8 MiB per worker.
    default, freeze = heap_lost_per_1k(runs["default"]), heap_lost_per_1k(runs["freeze"])
    assert default > 1.3 * freeze, (default / MIB, freeze / MIB)
    assert default - freeze > 4 * MIB, (default / MIB, freeze / MIB)
    # The report says so: freeze's heap un-shared per 1,000 requests against default's.
    page = parse((soaks.out / "index.html").read_text(encoding="utf-8"))
    items = page.find("section", id="profiles").find_all("li")
    shown = {li.attrs["data-run-id"]: li for li in items if li.attrs.get("data-run-id")}
    item = shown[runs["freeze"]["id"]]
    assert abs(int(item.attrs["data-heap-per-1k"] or "0") - freeze) <= 16  # a rounded mean
    said = re.search(r"\(([+-]\d+)% vs gc default\)", item.text())
    assert said is not None
    assert abs(int(said.group(1)) - (freeze / default - 1) * 100) <= 1
    assert "vs gc default" not in shown[runs["default"]["id"]].text()


def test_the_shift_names_the_category_that_lost_most_shared_bytes() -> None:
    def usage(shared: int, private: int) -> MapUsage:
        return MapUsage(
            rss=shared + private,
            pss=private + shared // 2,
            shared_clean=shared,
            shared_dirty=0,
            private_clean=0,
            private_dirty=private,
            private=private,
            shared=shared,
        )

    def worker(heap: tuple[int, int], libraries: tuple[int, int]) -> ProcessBreakdown:
        cats = {"heap": usage(*heap), "libraries": usage(*libraries)}
        return ProcessBreakdown(
            pid=7,
            role="worker",
            name="worker 1",
            categories=cats,
            total=usage(heap[0] + libraries[0], heap[1] + libraries[1]),
        )

    start = Breakdown(at="soak-start", seconds=0.0, processes=(worker((100, 10), (50, 5)),))
    end = Breakdown(at="soak-end", seconds=0.0, processes=(worker((40, 90), (45, 10)),))
    shift = soak_shift(start, end)
    assert shift.driver == "heap"
    (moved,) = shift.workers
    assert moved.categories["heap"].unshared == 60
    assert moved.categories["heap"].private_growth == 80
    assert moved.categories["libraries"].unshared == 5
