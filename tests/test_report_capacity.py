"""The report of open-loop capacity runs, and the comparison key: rendered from
``tests/data/sample_capacity.json`` (written by ``tests/data/make_sample_capacity.py``
with the suite's own capacity search against model servers).

The expected figures are computed here from the JSON, independently of
``runners.report`` and ``runners.results.cells`` (percentiles of repeats from
their HDR histograms merged with ``hdrh`` directly).
"""

from __future__ import annotations

import copy
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from runners.report import render_comparison, render_index, render_run
from runners.report.compare import compare
from runners.results.document import read_results
from runners.results.schema import validation_errors
from tests.test_report import Node, parse, place, rows

DATA = Path(__file__).parent / "data"
CAPACITY = DATA / "sample_capacity.json"
CLOSED = DATA / "sample_results.json"
MIB = 2**20
WORKLOADS = ("json", "upstream")
RUNNERS = ("gunicorn-sync", "gunicorn-gthread", "uvicorn", "granian-asgi")


@pytest.fixture
def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CAPACITY.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def report(tmp_path: Path) -> Node:
    folder = place(CAPACITY, tmp_path / "reports" / "20261130T100002Z")
    return parse(render_run(folder).read_text(encoding="utf-8"))


def charts(doc: Node) -> dict[str, Any]:
    specs: dict[str, Any] = json.loads(doc.find("script", id="report-data").raw_text())["charts"]
    return specs


def ms(value: float) -> str:
    return f"{value:,.1f}" if value < 10 else f"{value:,.0f}"


# --------------------------------------------------------------------------
# The figures, from the JSON


def merged_p99(runs: list[dict[str, Any]]) -> float:
    total: HdrHistogram | None = None
    for run in runs:
        hist = HdrHistogram.decode(run["latency_hdr"])
        if total is None:
            total = hist
        else:
            total.add(hist)
    assert total is not None
    return float(total.get_value_at_percentile(99.0)) / 1000.0


def by_cell(data: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The runs of each (workload, runner)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in data["runs"]:
        groups[(run["workload"], run["runner"])].append(run)
    return groups


def expected(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    cells = {}
    for key, runs in by_cell(data).items():
        ok = [r for r in runs if r["status"] == "ok"]
        caveats = set()
        if len(ok) < len(runs):
            caveats.add("failed")
        # Where some repeats' confirmation held, the cell is theirs (partly-confirmed).
        held = [r for r in ok if r["capacity"].get("confirmed") and r["capacity"].get("rps")]
        basis = held or ok
        if any(r["capacity"]["bound"] == "loadgen" for r in basis):
            caveats.add("loadgen-bound")
        if held and len(held) < len(ok):
            caveats.add("partly-confirmed")
        elif any(not r["capacity"].get("confirmed", False) for r in ok):
            caveats.add("unconfirmed")
        bounds = [r["capacity"]["bound"] for r in basis]
        cells[key] = {
            "caveats": caveats,
            # Nothing trustworthy is known: not ranked (loadgen-bound is a lower bound).
            "unranked": caveats - {"loadgen-bound", "partly-confirmed"},
            "lower": "loadgen" in bounds,
            "per_gib": statistics.fmean(r["capacity"]["rps_per_gib"] for r in basis),
            "per_gib_min": min(r["capacity"]["rps_per_gib"] for r in basis),
            "capacity": statistics.fmean(r["capacity"]["rps"] for r in basis),
            "capacity_min": min(r["capacity"]["rps"] for r in basis),
            "p99": merged_p99(basis),
            "pss": statistics.fmean(r["memory"]["pss_peak_bytes"] for r in ok),
            "cpu": statistics.fmean(r["server_cpu_percent"] for r in ok),
            "bound": max(set(bounds), key=bounds.count),
            "first": ok[0],
        }
    return cells


def expected_order(
    cells: dict[tuple[str, str], dict[str, Any]], workload: str
) -> list[tuple[str, int | None]]:
    mine = {runner: c for (w, runner), c in cells.items() if w == workload}
    clean = sorted(
        (r for r, c in mine.items() if not c["unranked"]), key=lambda r: -mine[r]["per_gib"]
    )
    other = sorted((r for r, c in mine.items() if c["unranked"]), key=lambda r: -mine[r]["per_gib"])
    return [(r, i + 1) for i, r in enumerate(clean)] + [(r, None) for r in other]


# --------------------------------------------------------------------------
# The sample itself


def test_the_sample_is_a_valid_open_loop_invocation(sample: dict[str, Any]) -> None:
    assert validation_errors(sample) == []
    results = read_results(CAPACITY)  # the project's own loader, which validates too
    assert results.schema_version == 2
    assert len(results.runs) == len(RUNNERS) * len(WORKLOADS) * 2
    assert {(r.runner, r.workload) for r in results.runs} == {
        (r, w) for r in RUNNERS for w in WORKLOADS
    }
    assert all(r.load == "open" and r.users == 0 for r in results.runs)
    assert [r.id for r in results.failed_runs] == ["gunicorn-sync/upstream/open/2"]
    bounds = set()
    unconfirmed = []
    for run in results.ok_runs:
        assert run.capacity is not None and run.id.split("/")[2] == "open"
        assert 5 <= len(run.capacity.curve) <= 8
        assert run.capacity.rps == run.rps
        assert run.capacity.slo_p99_ms == 100
        bounds.add(run.capacity.bound)
        if not run.capacity.confirmed:
            unconfirmed.append(run.id)
    assert bounds == {"server-cpu", "server-slots", "loadgen"}
    assert unconfirmed == ["uvicorn/json/open/2"]


# --------------------------------------------------------------------------
# The headline


def test_headline_ranks_by_capacity_per_gib_at_the_target(
    report: Node, sample: dict[str, Any]
) -> None:
    assert report.find("section", id="headline").find("h2").text() == (
        "Headline: capacity per GiB at p99 ≤ 100 ms"
    )
    cells = expected(sample)
    for workload in WORKLOADS:
        table = report.find("table", data_workload=workload, data_users="0")
        assert table.find("caption").text() == f"Workload {workload} · capacity at p99 ≤ 100 ms"
        heads = [th.text() for th in table.find("thead").find_all("th")]
        assert heads[2:8] == [
            "capacity per GiB",
            "capacity req/s",
            "p50 ms",
            "p99 ms at capacity",
            "PSS MiB",
            "bound",
        ]
        order = [(r.attrs["data-runner"], r.attrs["data-rank"] or None) for r in rows(table)]
        want = expected_order(cells, workload)
        assert order == [(runner, str(rank) if rank else None) for runner, rank in want]
        for row in rows(table):
            cell = cells[(workload, row.attrs["data-runner"] or "")]
            tds = row.cells()
            if cell["lower"]:
                assert tds[2].text() == f"≥ {cell['per_gib_min']:,.0f}"
                assert tds[3].text() == f"≥ {cell['capacity_min']:,.0f}"
            else:
                assert tds[2].text().split()[0] == f"{cell['per_gib']:,.0f}"
                assert tds[3].text().split()[0] == f"{cell['capacity']:,.0f}"
            assert tds[5].text().split()[0] == ms(cell["p99"])
            assert tds[6].text().split()[0] == f"{cell['pss'] / MIB:,.1f}"
            assert tds[7].text() == cell["bound"]
            assert tds[7].find("span").attrs["title"] == cell["first"]["capacity"]["reason"]
            badges = {b.text() for b in tds[10].find_all("span")}
            assert cell["caveats"] <= badges
    # What the sample is built to show, said plainly.
    assert expected_order(cells, "json") == [
        # Highest per GiB, a lower bound (the load generator ran out first): still first.
        ("gunicorn-gthread", 1),
        # Repeat 2 was not confirmed, repeat 1 was: ranked by repeat 1 (partly-confirmed).
        ("uvicorn", 2),
        ("granian-asgi", 3),
        ("gunicorn-sync", 4),
    ]
    assert expected_order(cells, "upstream") == [
        ("uvicorn", 1),
        ("granian-asgi", 2),
        ("gunicorn-gthread", 3),
        ("gunicorn-sync", None),  # a repeat failed
    ]
    verdict = report.find("li", data_workload="json").text()
    best = cells[("json", "gunicorn-gthread")]
    assert verdict.startswith(
        f"json at p99 ≤ 100 ms: gunicorn-gthread first with at least {best['per_gib_min']:,.0f} "
        f"req/s per GiB at capacity (≥ {best['capacity_min']:,.0f} req/s, p99 {ms(best['p99'])} "
        f"ms, {best['pss'] / MIB:,.1f} MiB PSS): the load generator could not push harder."
    )
    assert "scored" not in verdict  # no unranked cell beats the first
    assert "Not ranked" not in verdict  # something trustworthy is known of every cell
    upstream = report.find("li", data_workload="upstream").text()
    best = cells[("upstream", "uvicorn")]
    assert upstream.startswith(
        f"upstream at p99 ≤ 100 ms: uvicorn, {best['per_gib']:,.0f} req/s per GiB at capacity "
        f"({best['capacity']:,.0f} req/s, p99 {ms(best['p99'])} ms"
    )
    legend = report.find("p", **{"class": "legend-flags"}).text()
    assert "partly-confirmed some repeats' confirmation windows missed" in legend


def test_bound_sentences(report: Node, sample: dict[str, Any]) -> None:
    cells = expected(sample)
    said = {
        w: [li.text() for li in report.find("ul", data_workload=w).find_all("li")]
        for w in WORKLOADS
    }

    def at(workload: str, runner: str) -> str:
        c = cells[(workload, runner)]
        return f"{c['capacity']:,.0f} req/s (p99 {ms(c['p99'])} ms)"

    def cpu_bound(workload: str, runner: str) -> str:
        """Where a server-cpu bound was judged: the first ok repeat's lowest failing
        probe above its capacity, with the server's CPU there."""
        run = next(
            r
            for r in sample["runs"]
            if r["workload"] == workload and r["runner"] == runner and r["status"] == "ok"
        )
        rate = run["capacity"]["offered_rps"]
        above = [
            p
            for p in run["capacity"]["curve"]
            if p["mode"] == "open" and not p["passed"] and p["offered_rps"] > rate
        ]
        p = min(above, key=lambda p: p["offered_rps"])
        return (
            f"{at(workload, runner)}; at {p['offered_rps']:,.0f} req/s the server's CPU was "
            f"{p['server_cpu_percent']:.0f} % busy and requests queued for it "
            f"(p99 {ms(p['p99_ms'])} ms)"
        )

    uvicorn = cells[("upstream", "uvicorn")]
    sync = cells[("upstream", "gunicorn-sync")]
    gthread_up = cells[("upstream", "gunicorn-gthread")]
    gthread = cells[("json", "gunicorn-gthread")]
    uv_json = cells[("json", "uvicorn")]
    unconfirmed = next(r for r in sample["runs"] if r["id"] == "uvicorn/json/open/2")
    assert said["upstream"] == [
        f"uvicorn on upstream: {cpu_bound('upstream', 'uvicorn')}.",
        f"granian-asgi on upstream: {cpu_bound('upstream', 'granian-asgi')}.",
        f"gunicorn-gthread on upstream: all 4 threads (1 worker × 4) busy at "
        f"{at('upstream', 'gunicorn-gthread')}, with server CPU {gthread_up['cpu']:.0f} %.",
        f"gunicorn-sync on upstream: all 3 workers busy at {at('upstream', 'gunicorn-sync')}, "
        f"with server CPU {sync['cpu']:.0f} %; 1 of 2 repeats failed.",
    ]
    assert uvicorn["bound"] == "server-cpu"
    # In ranking order: gthread (a lower bound) first, uvicorn (partly confirmed) second.
    assert said["json"][0] == (
        f"gunicorn-gthread on json: the load generator could not keep its schedule above "
        f"{at('json', 'gunicorn-gthread')}, with server CPU {gthread['cpu']:.0f} %; "
        "the server may do more."
    )
    assert said["json"][1] == (
        f"uvicorn on json: {cpu_bound('json', 'uvicorn')}; repeat 2 not "
        f"confirmed: its confirmation window had p99 {ms(unconfirmed['latency_ms']['p99'])} ms."
    )
    assert uv_json["bound"] == "server-cpu"


# --------------------------------------------------------------------------
# The saturation curves


def test_saturation_curves(report: Node, sample: dict[str, Any]) -> None:
    specs = charts(report)
    canvases = sorted(c.attrs["data-chart"] or "" for c in report.find_all("canvas"))
    assert canvases == sorted(specs)
    for index, workload in enumerate(WORKLOADS):
        rate, p99 = specs[f"w{index}-sat"], specs[f"w{index}-sp99"]
        assert rate["kind"] == p99["kind"] == "saturation"
        assert p99["target"] == 100 and p99["targetLabel"] == "target p99 ≤ 100 ms"
        assert [d["label"] for d in rate["datasets"]] == list(RUNNERS)
        offered_all: list[float] = []
        achieved_all: list[float] = []
        for runner, line, latency, knee, knee_p99 in zip(
            RUNNERS, rate["datasets"], p99["datasets"], rate["knees"], p99["knees"], strict=True
        ):
            # One line per runner: the open probes of its first repeat, by offered rate.
            run = next(
                r
                for r in sample["runs"]
                if r["runner"] == runner and r["workload"] == workload and r["status"] == "ok"
            )
            probes = sorted(
                (p for p in run["capacity"]["curve"] if p["mode"] == "open"),
                key=lambda p: p["offered_rps"],
            )
            assert line["data"] == [{"x": p["offered_rps"], "y": p["achieved_rps"]} for p in probes]
            assert latency["data"] == [{"x": p["offered_rps"], "y": p["p99_ms"]} for p in probes]
            assert line["passed"] == [p["passed"] for p in probes]
            offered_all += [p["offered_rps"] for p in probes]
            achieved_all += [p["achieved_rps"] for p in probes]
            # The knee: the confirmed rate, what came back, the window's p99.
            assert (knee["label"], knee["x"]) == (runner, run["capacity"]["offered_rps"])
            assert knee["y"] == pytest.approx(run["capacity"]["rps"], abs=0.06)
            assert knee_p99["y"] == run["latency_ms"]["p99"]
            # Below the knee every probe passed; the first above it failed.
            passed = [p["passed"] for p in probes if p["offered_rps"] <= knee["x"]]
            assert passed and passed[-1]
            above = [p for p in probes if p["offered_rps"] > knee["x"]]
            assert above and not above[0]["passed"]
        assert p99["span"] == [min(offered_all), max(offered_all)]
        both = offered_all + achieved_all
        assert rate["span"] == [min(both), max(both)]
        table = report.find("table", **{"class": "compact probes", "data-workload": workload})
        probe_rows = rows(table)
        assert len(probe_rows) == sum(
            len(r["capacity"]["curve"])
            for r in sample["runs"]
            if r["workload"] == workload and r["repeat"] == 1
        )
    # Every chart of the page's workloads ranks by capacity per GiB.
    assert specs["w0-rpg"]["datasets"][0]["label"] == "capacity at p99 ≤ 100 ms"


def test_a_closed_loop_file_renders_as_before(tmp_path: Path) -> None:
    doc = parse(render_run(place(CLOSED, tmp_path / "closed")).read_text(encoding="utf-8"))
    assert doc.find("section", id="headline").find("h2").text() == "Headline: requests/s per GiB"
    assert not doc.find_all("ul", **{"class": "bounds"})
    specs = charts(doc)
    assert not [k for k in specs if specs[k]["kind"] == "saturation"]
    table = doc.find("table", data_workload="json", data_users="64")
    assert table.find("caption").text() == "Workload json · 64 users"
    assert "req per CPU-s" in table.find("thead").text()


def test_index_shows_the_best_capacity(tmp_path: Path, sample: dict[str, Any]) -> None:
    place(CAPACITY, tmp_path / "reports" / "20261130T100002Z")
    doc = parse(render_index(tmp_path / "reports").read_text(encoding="utf-8"))
    best = doc.find("tr", data_folder="20261130T100002Z").cells()[-1].text()
    cells = expected(sample)
    gthread = cells[("json", "gunicorn-gthread")]
    assert f"json @ capacity: gunicorn-gthread ≥ {gthread['per_gib_min']:,.0f}" in best
    assert f"upstream @ capacity: uvicorn {cells[('upstream', 'uvicorn')]['per_gib']:,.0f}" in best


# --------------------------------------------------------------------------
# The comparison key


def changed(sample: dict[str, Any], runner: str, **fields: Any) -> dict[str, Any]:
    data = copy.deepcopy(sample)
    data["created_at"] = "2026-11-30T12:00:00+00:00"
    for run in data["runs"]:
        if run["runner"] == runner:
            run.update(fields)
    return data


def comparison_page(tmp_path: Path, old: dict[str, Any] | Path, new: dict[str, Any]) -> Node:
    old_dir = place(old, tmp_path / "reports" / "old")
    new_dir = place(new, tmp_path / "reports" / "new")
    return parse(render_comparison(old_dir, new_dir).read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [CAPACITY, CLOSED], ids=["open", "closed"])
def test_comparison_refuses_to_pair_runs_that_differ_in_middleware(
    tmp_path: Path, path: Path
) -> None:
    sample = json.loads(path.read_text(encoding="utf-8"))
    doc = comparison_page(tmp_path, path, changed(sample, "uvicorn", middleware="default"))
    compared = {
        r.attrs["data-runner"]
        for t in doc.find_all("table", **{"class": "comparison"})
        for r in rows(t)
    }
    assert "uvicorn" not in compared
    assert compared  # the others are compared
    refused = rows(doc.find("table", **{"class": "not-comparable"}))
    assert refused and {r.attrs["data-runner"] for r in refused} == {"uvicorn"}
    for row in refused:
        assert row.attrs["data-reasons"] == "middleware: minimal → default"
        assert "middleware: minimal → default" in row.text()
    summary = doc.find("section", id="summary").text()
    assert f"{len(refused)} more ran in both with different settings and are not compared" in (
        summary
    )


def test_every_setting_that_changes_a_figure_is_in_the_key(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    old_dir = place(CAPACITY, tmp_path / "old")

    def reasons(new: dict[str, Any]) -> dict[str, set[str]]:
        result = compare(read_results(old_dir), read_results(place(new, tmp_path / "new")))
        found: dict[str, set[str]] = defaultdict(set)
        for mismatch in result.not_comparable:
            found[mismatch.new.runner].update(mismatch.reasons)
        return found

    # One setting changed per runner, in one invocation.
    several = copy.deepcopy(sample)
    for run in several["runs"]:
        if run["status"] != "ok":
            continue
        if run["runner"] == "granian-asgi":
            run["capacity"]["slo_p99_ms"] = 50
        elif run["runner"] == "gunicorn-sync":
            run["workers"] = 5
        elif run["runner"] == "uvicorn":
            run["server_cpus"] = [0, 1]
        else:
            run["threads"] = 8
    assert reasons(several) == {
        "granian-asgi": {"latency target: p99 ≤ 100 ms → p99 ≤ 50 ms"},
        "gunicorn-sync": {"workers: 3 → 5"},
        "uvicorn": {"server CPUs: 0 → 0, 1"},
        "gunicorn-gthread": {"threads: 4 → 8"},
    }
    python = {"implementation": "CPython", "version": "3.13.1", "path": "/usr/bin/python3.13"}
    runtime = changed(sample, "uvicorn", python=python, django="6.1.3", gc="freeze")
    runtime["environment"]["database"] = "postgres://postgres@127.0.0.1:5432/test"
    database = "database: sqlite → postgres://postgres@127.0.0.1:5432/test"
    assert reasons(runtime) == {
        "uvicorn": {
            "Python: CPython 3.11.11 → CPython 3.13.1",
            "Django: 5.2.8 → 6.1.3",
            "gc mode: default → freeze",
            database,
        },
        **{runner: {database} for runner in RUNNERS if runner != "uvicorn"},
    }
    upstream = copy.deepcopy(sample)
    upstream["matrix"]["upstream_ms"] = 20
    refused = compare(read_results(old_dir), read_results(place(upstream, tmp_path / "up")))
    # Only the workload that calls the upstream is affected.
    assert {m.new.workload for m in refused.not_comparable} == {"upstream"}
    assert {c.new.workload for c in refused.shared} == {"json"}
    # The same settings: every shared cell compared, none refused.
    same = compare(read_results(old_dir), read_results(place(sample, tmp_path / "same")))
    assert not same.not_comparable and len(same.shared) == len(RUNNERS) * len(WORKLOADS)


def test_open_runs_are_compared_by_capacity_per_gib(tmp_path: Path, sample: dict[str, Any]) -> None:
    faster = copy.deepcopy(sample)
    faster["created_at"] = "2026-11-30T12:00:00+00:00"
    for run in faster["runs"]:
        if run["runner"] == "granian-asgi" and run["status"] == "ok":
            # The capacity per GiB moves; the closed-loop style rps per GiB does not.
            run["capacity"]["rps"] *= 1.10
            run["capacity"]["rps_per_gib"] *= 1.10
    doc = comparison_page(tmp_path, CAPACITY, faster)
    table = doc.find("table", **{"class": "comparison", "data-workload": "json"})
    heads = [th.text() for th in table.find("thead").find_all("th")]
    assert heads[2:5] == ["capacity req/s", "p99 ms at capacity", "capacity per GiB"]
    by_runner = {r.attrs["data-runner"]: r for r in rows(table)}
    granian = by_runner["granian-asgi"]
    assert granian.attrs["data-rps-per-gib-verdict"] == "better"
    assert granian.attrs["data-rps-verdict"] == "better"
    assert float(granian.attrs["data-rps-change"] or 0) == pytest.approx(0.10)
    assert by_runner["gunicorn-sync"].attrs["data-rps-per-gib-verdict"] == "noise"
    labels = [
        r.cells()[0].text()
        for r in doc.find("table", **{"class": "compact summary"}).find_all("tr")[1:]
    ]
    assert labels == ["capacity req/s", "p99 latency at capacity", "capacity per GiB"]


def test_a_cell_where_no_rate_passed(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    for run in data["runs"]:
        if run["runner"] == "uvicorn" and run["workload"] == "upstream":
            run["capacity"].update(rps=None, rps_per_gib=None, offered_rps=None, confirmed=False)
            for probe in run["capacity"]["curve"]:
                probe["passed"] = False
    doc = parse(render_run(place(data, tmp_path / "none")).read_text(encoding="utf-8"))
    table = doc.find("table", data_workload="upstream", data_users="0")
    row = next(r for r in rows(table) if r.attrs["data-runner"] == "uvicorn")
    assert row.attrs["data-rank"] == "" and row.cells()[2].text() == "—"
    said = [li.text() for li in doc.find("ul", data_workload="upstream").find_all("li")]
    assert "uvicorn on upstream: no rate met p99 ≤ 100 ms (server-cpu)." in said
    assert "unconfirmed" not in (row.attrs["data-flags"] or "")
    verdict = doc.find("li", data_workload="upstream").text()
    assert "Not ranked: gunicorn-sync (failed), uvicorn (no rate met the target)" in verdict
    knees = charts(doc)["w1-sat"]["knees"]
    assert "uvicorn" not in {k["label"] for k in knees} and len(knees) == 3
