"""The report and the ranking say what is known: a capacity is a band, a lower bound is
ranked as one, bands that overlap tie, a comparison moves only beyond the bands, a cell
with nothing trustworthy is not ranked and the headline says what to run again.

Rendered from ``tests/data/sample_bands.json`` (written by
``tests/data/make_sample_capacity.py`` with the suite's capacity search and its
retakes, and the driver's band) and from copies of it changed here. The expected bands
and ranks are computed here from the JSON, independently of ``runners.results.bands``
and ``runners.report.ranking``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from runners.bench.console import results_table, summary_line
from runners.report import render_comparison, render_run
from runners.report.compare import compare_stat
from runners.report.rerun import rerun_command
from runners.results.bands import Band
from runners.results.cells import Stat
from runners.results.criteria import INTERFERENCE_SHARE, STEAL_SHARE
from runners.results.document import read_results
from runners.results.schema import validation_errors
from tests.test_report import Node, parse, place, rows, tied_ranks
from tests.test_report_capacity import by_cell

DATA = Path(__file__).parent / "data"
BANDS = DATA / "sample_bands.json"
OLD_SAMPLES = ("sample_results.json", "sample_results_b.json", "sample_capacity.json")
GIB = 2**30
UNRANKED = {"failed", "unconfirmed", "failures", "timeouts"}


@pytest.fixture
def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BANDS.read_text(encoding="utf-8"))
    return data


def render(data: dict[str, Any] | Path, folder: Path) -> Node:
    return parse(render_run(place(data, folder)).read_text(encoding="utf-8"))


def charts(doc: Node) -> dict[str, Any]:
    specs: dict[str, Any] = json.loads(doc.find("script", id="report-data").raw_text())["charts"]
    return specs


def table(doc: Node, workload: str) -> dict[str, Node]:
    found = doc.find("table", data_workload=workload, data_users="0")
    return {r.attrs["data-runner"] or "": r for r in rows(found)}


# --------------------------------------------------------------------------
# The bands, from the JSON


def run_band(run: dict[str, Any]) -> tuple[float, float | None]:
    """A run's capacity band per GiB: [min(low, rps), high] over its own PSS peak; open
    above for a lower bound."""
    cap = run["capacity"]
    gib = run["memory"]["pss_peak_bytes"] / GIB
    lower = cap.get("lower_bound") or cap["bound"] == "loadgen" or "loadgen-bound" in run["flags"]
    low = min(cap["low_rps"], cap["rps"]) if cap.get("low_rps") is not None else cap["rps"]
    high = None if lower else (cap["high_rps"] if cap.get("low_rps") is not None else cap["rps"])
    return low / gib, None if high is None else max(high, cap["rps"]) / gib


def expected(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    cells = {}
    for key, runs in by_cell(data).items():
        ok = [r for r in runs if r["status"] == "ok"]
        flags = {f for r in runs for f in r["flags"]} | (
            {"failed"} if len(ok) < len(runs) else set()
        )
        bands = [run_band(r) for r in ok]
        highs = [h for _, h in bands]
        cells[key] = {
            "flags": flags,
            "ranked": not flags & UNRANKED,
            "figure": sum(r["capacity"]["rps_per_gib"] for r in ok) / len(ok),
            "low": min(low for low, _ in bands),
            "high": None if None in highs else max(h for h in highs if h is not None),
        }
    return cells


def expected_ranks(cells: dict[tuple[str, str], dict[str, Any]], workload: str) -> dict[str, int]:
    return tied_ranks(
        [
            (runner, c["figure"], c["low"], c["high"])
            for (w, runner), c in cells.items()
            if w == workload and c["ranked"]
        ]
    )


def by_id(data: dict[str, Any], run_id: str) -> float:
    """The capacity per GiB of the run ``run_id``."""
    run = next(r for r in data["runs"] if r["id"] == run_id)
    return float(run["capacity"]["rps_per_gib"])


def set_band(
    data: dict[str, Any], runner: str, workload: str, low: float, high: float | None
) -> None:
    """Give every ok repeat of a cell the band [low, high] (req/s per GiB), its figure
    the middle of it (the low end for a lower bound)."""
    for run in data["runs"]:
        if run["runner"] != runner or run["workload"] != workload or run["status"] != "ok":
            continue
        gib = run["memory"]["pss_peak_bytes"] / GIB
        cap = run["capacity"]
        figure = low if high is None else (low + high) / 2
        cap.update(
            rps=figure * gib,
            rps_per_gib=figure,
            low_rps=low * gib,
            high_rps=None if high is None else high * gib,
            lower_bound=high is None,
            confirmed=True,
        )
        if cap["bound"] == "loadgen" and high is not None:
            cap["bound"] = "server-cpu"
        run["flags"] = [f for f in run["flags"] if f not in ("loadgen-bound", "unconfirmed")]


# --------------------------------------------------------------------------
# The sample


def test_the_sample_holds_bands_retakes_and_steal(sample: dict[str, Any]) -> None:
    assert validation_errors(sample) == []
    results = read_results(BANDS)
    caps = {r.id: r.capacity for r in results.ok_runs if r.capacity is not None}
    assert all(c.high_rps is not None for c in caps.values())
    assert all(c.low_rps is not None for i, c in caps.items() if i != "uvicorn/upstream/open/2")
    assert {i for i, c in caps.items() if c.lower_bound} == {
        "gunicorn-gthread/json/open/1",
        "gunicorn-gthread/json/open/2",
    }
    retaken = {i for i, c in caps.items() if any(p.retaken for p in c.curve if p.mode == "open")}
    assert retaken == {"uvicorn/upstream/open/1", "granian-asgi/json/open/1"}
    disputed = [p for c in caps.values() for p in c.curve if p.disputed]
    assert len(disputed) == 1
    steal = [r.id for r in results.ok_runs if "steal" in r.flags]
    assert steal == ["gunicorn-sync/json/open/2"]


# --------------------------------------------------------------------------
# 3. The headline ranks what it knows


def test_a_lower_bound_that_beats_every_other_runner_is_first(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    doc = render(sample, tmp_path / "r")
    cells = expected(sample)
    gthread = cells[("json", "gunicorn-gthread")]
    assert gthread["high"] is None  # a lower bound, and the highest figure
    assert gthread["low"] > max(c["figure"] for k, c in cells.items() if k[1] != "gunicorn-gthread")
    row = table(doc, "json")["gunicorn-gthread"]
    assert row.attrs["data-rank"] == "1" and row.attrs["data-lower-bound"] == "yes"
    assert row.cells()[2].text() == f"≥ {gthread['low']:,.0f}"
    verdict = doc.find("li", data_workload="json").text()
    assert verdict.startswith(
        f"json at p99 ≤ 100 ms: gunicorn-gthread first with at least {gthread['low']:,.0f} "
        "req/s per GiB at capacity (≥ "
    )
    assert verdict.endswith("): the load generator could not push harder.")


def test_a_search_that_found_no_failure_is_a_lower_bound_too(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    data = copy.deepcopy(sample)
    set_band(data, "uvicorn", "json", 90_000.0, None)
    for run in data["runs"]:
        if run["runner"] == "uvicorn" and run["workload"] == "json" and run["status"] == "ok":
            run["capacity"]["bound"] = "server-cpu"
    doc = render(data, tmp_path / "r")
    json_rows = table(doc, "json")
    assert json_rows["uvicorn"].attrs["data-rank"] == "1"
    verdict = doc.find("li", data_workload="json").text()
    assert verdict.startswith("json at p99 ≤ 100 ms: uvicorn first with at least 90,000 req/s")
    assert "): no probe failed within the search's budget; " in verdict
    # gthread's lower bound (≥ 62,042) reaches uvicorn's band (open too): they tie.
    assert verdict.endswith("within noise of it, sharing first place: gunicorn-gthread (≥ 62,042).")
    # gthread's lower bound (≥ 62,042) reaches uvicorn's band (open too): they tie.
    assert json_rows["gunicorn-gthread"].attrs["data-rank"] == "1"
    sentence = next(
        li.text()
        for li in doc.find("ul", data_workload="json").find_all("li")
        if li.text().startswith("uvicorn")
    )
    assert "a lower bound: no probe failed within the search's budget" in sentence


def test_other_programs_on_the_cpus_make_a_lower_bound(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    data = copy.deepcopy(sample)
    for run in data["runs"]:
        if run["runner"] == "gunicorn-sync" and run["workload"] == "json":
            run["flags"] = [*run["flags"], "interference"]
    doc = render(data, tmp_path / "r")
    row = table(doc, "json")["gunicorn-sync"]
    assert row.attrs["data-lower-bound"] == "yes" and row.attrs["data-rank"]
    # Open above, its band reaches the others': it ties with the second group.
    cells = expected(data)
    ranks = expected_ranks(cells, "json")  # as computed without the flag ...
    assert ranks["gunicorn-sync"] == 4
    assert row.attrs["data-rank"] == str(ranks["granian-asgi"])  # ... and with it
    assert "other programs took some of its CPUs" in doc.find("ul", data_workload="json").text()


def test_overlapping_bands_share_a_rank_within_noise(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    cells = expected(sample)
    ranks = expected_ranks(cells, "json")
    uvicorn, granian = cells[("json", "uvicorn")], cells[("json", "granian-asgi")]
    # The sample's two async runners: their bands overlap.
    assert uvicorn["low"] <= granian["high"] and granian["low"] <= uvicorn["high"]
    assert ranks == {"gunicorn-gthread": 1, "granian-asgi": 2, "uvicorn": 2, "gunicorn-sync": 4}
    doc = render(sample, tmp_path / "r")
    json_rows = table(doc, "json")
    assert {r: json_rows[r].attrs["data-rank"] for r in ranks} == {
        r: str(n) for r, n in ranks.items()
    }
    for runner, other in (("uvicorn", "granian-asgi"), ("granian-asgi", "uvicorn")):
        rank = json_rows[runner].cells()[0]
        assert rank.text() == "2 within noise"
        assert json_rows[runner].attrs["data-tied"] == other
    for runner in ("gunicorn-gthread", "gunicorn-sync"):
        assert "within noise" not in json_rows[runner].cells()[0].text()
        assert json_rows[runner].attrs["data-tied"] == ""
    # The figure carries its band.
    band = json_rows["uvicorn"].cells()[2].text()
    assert band == f"{uvicorn['figure']:,.0f} [{uvicorn['low']:,.0f}, {uvicorn['high']:,.0f}]"


def test_disjoint_bands_are_ranked_apart_and_ties_share_first_place(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    apart = copy.deepcopy(sample)
    set_band(apart, "uvicorn", "json", 30_000.0, 31_000.0)
    set_band(apart, "granian-asgi", "json", 28_000.0, 29_900.0)
    doc = render(apart, tmp_path / "apart")
    json_rows = table(doc, "json")
    assert json_rows["uvicorn"].attrs["data-rank"] == "2"
    assert json_rows["granian-asgi"].attrs["data-rank"] == "3"
    assert not any("within noise" in r.cells()[0].text() for r in json_rows.values())
    # Overlapping by a hair: equal.
    touching = copy.deepcopy(sample)
    set_band(touching, "uvicorn", "json", 30_000.0, 31_000.0)
    set_band(touching, "granian-asgi", "json", 28_000.0, 30_000.0)
    assert table(render(touching, tmp_path / "touch"), "json")["granian-asgi"].attrs[
        "data-rank"
    ] == ("2")
    # Three that cannot be told apart at the top: 1, 1, 1, then 4.
    top = copy.deepcopy(sample)
    set_band(top, "gunicorn-gthread", "json", 60_000.0, 64_000.0)
    set_band(top, "uvicorn", "json", 61_500.0, 63_500.0)
    set_band(top, "granian-asgi", "json", 59_000.0, 62_000.0)
    doc = render(top, tmp_path / "top")
    assert {r: row.attrs["data-rank"] for r, row in table(doc, "json").items()} == {
        "uvicorn": "1",
        "gunicorn-gthread": "1",
        "granian-asgi": "1",
        "gunicorn-sync": "4",
    }
    verdict = doc.find("li", data_workload="json").text()
    assert verdict.startswith(
        "json at p99 ≤ 100 ms: uvicorn, 62,500 [61,500, 63,500] req/s per GiB"
    )
    assert (
        "within noise of it, sharing first place: gunicorn-gthread (62,000 [60,000, 64,000]), "
        "granian-asgi (60,500 [59,000, 62,000])"
    ) in verdict


def test_a_cell_with_nothing_trustworthy_is_unranked_and_the_headline_says_what_to_rerun(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    # Some of uvicorn's repeats held their confirmation: ranked by those, flagged.
    partly = table(render(sample, tmp_path / "partly"), "upstream")["uvicorn"]
    assert partly.attrs["data-rank"] == "1" and "partly-confirmed" in (
        partly.attrs["data-flags"] or ""
    )
    assert partly.cells()[2].text().split()[0] == f"{by_id(sample, 'uvicorn/upstream/open/1'):,.0f}"
    # None did: nothing trustworthy is known.
    for run in sample["runs"]:
        if run["id"] == "uvicorn/upstream/open/1":
            run["capacity"].update(confirmed=False, low_rps=None)
            run["flags"] = ["unconfirmed"]
    doc = render(sample, tmp_path / "r")
    upstream = table(doc, "upstream")
    assert upstream["uvicorn"].attrs["data-rank"] == ""  # unconfirmed
    assert upstream["gunicorn-sync"].attrs["data-rank"] == ""  # a repeat failed
    verdict = doc.find("li", data_workload="upstream")
    rerun = verdict.find("span", **{"class": "rerun"})
    assert rerun.text().startswith("Not ranked: uvicorn (unconfirmed), gunicorn-sync (failed)")
    assert rerun.find("code").text() == (
        "tox -e bench -- --runners uvicorn,gunicorn-sync --workloads upstream --repeat 3 "
        "--load open --slo-p99 100"
    )
    # Every cell of json is ranked: nothing to rerun there.
    assert not doc.find("li", data_workload="json").find_all("span", **{"class": "rerun"})
    # Nothing known of any cell of a workload: no first, and the command for them all.
    none = copy.deepcopy(sample)
    for run in none["runs"]:
        if run["workload"] == "json" and run["status"] == "ok":
            run["flags"] = [*run["flags"], "timeouts"]
    verdict = render(none, tmp_path / "none").find("li", data_workload="json")
    assert verdict.text().startswith(
        "json at p99 ≤ 100 ms: no cell to rank: nothing trustworthy is known."
    )
    assert verdict.find("code").text() == (
        "tox -e bench -- --runners gunicorn-gthread,granian-asgi,uvicorn,gunicorn-sync "
        "--workloads json --repeat 3 --load open --slo-p99 100"
    )


def test_the_rerun_command_keeps_the_invocations_other_options() -> None:
    read = read_results(BANDS)
    from runners.report.ranking import cells_of

    cells = [c for c in cells_of(read) if c.runner == "uvicorn" and c.workload == "json"]
    command = (
        "python -m runners.bench --runners uvicorn,granian-asgi --workloads=json --sweep "
        "--repeat 2 --slo-p99 50 --output /tmp/x --python 3.11,3.12  (and the soak runs of: x)"
    )
    assert rerun_command(command, cells, 5) == (
        "tox -e bench -- --runners uvicorn --workloads json --repeat 5 --slo-p99 50 "
        "--python 3.11,3.12"
    )
    assert rerun_command("whatever", cells, 1).endswith("--workloads json --repeat 3")


# --------------------------------------------------------------------------
# 2. A band, not a point: the chart


def test_the_capacity_chart_spec_carries_the_bands(tmp_path: Path, sample: dict[str, Any]) -> None:
    doc = render(sample, tmp_path / "r")
    cells = expected(sample)
    spec = charts(doc)["w0-rpg"]
    (dataset,) = spec["datasets"]
    shown = dict(
        zip(spec["labels"], zip(dataset["bands"], dataset["texts"], strict=True), strict=True)
    )
    for runner, (band, text) in shown.items():
        cell = cells[("json", runner)]
        low, high = band
        assert low == pytest.approx(cell["low"], abs=0.06)
        if cell["high"] is None:
            assert high is None and text == f"≥ {cell['low']:,.0f}"
        else:
            assert high == pytest.approx(cell["high"], abs=0.06)
            assert text == f"{cell['figure']:,.0f}"
    # An open band is drawn to past every bar and band end.
    assert spec["bandEnd"] > max(c["high"] or c["low"] for c in cells.values())
    # Unranked cells' bars are pale and flagged on the upstream chart.
    up = charts(doc)["w1-rpg"]["datasets"][0]
    texts = dict(zip(charts(doc)["w1-rpg"]["labels"], up["texts"], strict=True))
    assert texts["gunicorn-sync"].endswith(" ⚑") and not texts["granian-asgi"].endswith("⚑")


def test_capacity_per_gib_carries_the_band_with_the_same_pss_peak(sample: dict[str, Any]) -> None:
    results = read_results(BANDS)
    from runners.results.bands import capacity_band, capacity_band_per_gib

    for run in results.ok_runs:
        assert run.capacity is not None and run.memory is not None
        per_second, per_gib = capacity_band(run), capacity_band_per_gib(run)
        assert per_second is not None and per_gib is not None
        gib = run.memory.pss_peak_bytes / GIB
        assert per_gib.low == pytest.approx(per_second.low / gib)
        assert (per_gib.high is None) == (per_second.high is None)
        if per_gib.high is not None and per_second.high is not None:
            assert per_gib.high == pytest.approx(per_second.high / gib)
        assert per_gib.low <= (run.capacity.rps_per_gib or 0) + 1e-6


# --------------------------------------------------------------------------
# compare: bands


def test_compare_stat_with_bands() -> None:
    one = Stat(n=1, mean=100.0, min=100.0, max=100.0)
    far = Stat(n=1, mean=140.0, min=140.0, max=140.0)
    # Without bands a 40 % move is beyond the assumed ±5 %: better.
    assert compare_stat(one, far, True).verdict == "better"
    # Bands that overlap: noise, however far the means.
    wide = compare_stat(one, far, True, Band(90, 130, True), Band(125, 150, True))
    assert (wide.verdict, wide.basis) == ("noise", "band")
    assert wide.bands == "[90, 130] → [125, 150]"
    # Disjoint bands: significant, even for a small move.
    close = Stat(n=1, mean=103.0, min=103.0, max=103.0)
    tight = compare_stat(one, close, True, Band(99, 101, True), Band(102, 104, True))
    assert (tight.verdict, tight.basis) == ("better", "band")
    # A lower bound reaches every higher band.
    assert compare_stat(one, far, True, Band(90, None, True), Band(125, 150, True)).verdict == (
        "noise"
    )
    # A side without the search's band: the old noise rule.
    mixed = compare_stat(one, close, True, Band(99, 101, True), Band(103, 103, False))
    assert (mixed.verdict, mixed.basis) == ("noise", "assumed")


def test_the_comparison_page_marks_a_change_only_beyond_the_bands(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    new = copy.deepcopy(sample)
    new["created_at"] = "2026-11-30T12:00:00+00:00"
    cells = expected(sample)
    # granian-asgi on upstream: 3 % more, but its bands overlap the old ones: noise.
    old_up = cells[("upstream", "granian-asgi")]
    set_band(new, "granian-asgi", "upstream", old_up["high"] * 0.99, old_up["high"] * 1.06)
    # gunicorn-gthread on upstream: 3 % more, its bands clear of the old ones: better.
    old_gt = cells[("upstream", "gunicorn-gthread")]
    set_band(new, "gunicorn-gthread", "upstream", old_gt["high"] * 1.005, old_gt["high"] * 1.01)
    doc = parse(
        render_comparison(place(sample, tmp_path / "old"), place(new, tmp_path / "new")).read_text(
            encoding="utf-8"
        )
    )
    by_runner = {
        r.attrs["data-runner"]: r
        for r in rows(doc.find("table", **{"class": "comparison", "data-workload": "upstream"}))
    }
    granian, gthread = by_runner["granian-asgi"], by_runner["gunicorn-gthread"]
    assert granian.attrs["data-rps-per-gib-verdict"] == "noise"
    assert "within noise" in granian.cells()[-2].text()
    assert gthread.attrs["data-rps-per-gib-verdict"] == "better"
    assert gthread.attrs["data-rps-verdict"] == "better"
    assert float(gthread.attrs["data-rps-change"] or 0) > 0
    assert "[" in gthread.cells()[-2].text()  # the bands that decided are shown
    summary = doc.find("section", id="summary").text()
    assert "has changed only when the two bands do not overlap" in summary


# --------------------------------------------------------------------------
# 4. The saturation curve: retakes and disputed points


def test_the_curve_marks_retaken_and_disputed_takes(tmp_path: Path, sample: dict[str, Any]) -> None:
    doc = render(sample, tmp_path / "r")
    specs = charts(doc)
    run = next(r for r in sample["runs"] if r["id"] == "granian-asgi/json/open/1")
    opens = [p for p in run["capacity"]["curve"] if p["mode"] == "open"]
    retaken = sorted((p for p in opens if p.get("retaken")), key=lambda p: p["offered_rps"])
    believed = sorted((p for p in opens if not p.get("retaken")), key=lambda p: p["offered_rps"])
    assert retaken and any(p.get("disputed") for p in believed)
    line = next(d for d in specs["w0-sat"]["datasets"] if d["label"] == "granian-asgi")
    assert line["data"] == [{"x": p["offered_rps"], "y": p["achieved_rps"]} for p in believed]
    assert line["disputed"] == [bool(p.get("disputed")) for p in believed]
    apart = [t for t in specs["w0-sat"]["retaken"] if t["label"] == "granian-asgi"]
    assert sorted(t["x"] for t in apart) == [p["offered_rps"] for p in retaken]
    # The probes table says which take was not believed, and why.
    probes = [
        r
        for r in doc.find("table", **{"class": "compact probes", "data-workload": "json"}).find_all(
            "tr"
        )
        if r.attrs.get("data-runner") == "granian-asgi"
    ]
    takes = [r.attrs["data-take"] for r in probes]
    assert takes.count("retaken") == len(retaken) and takes.count("disputed") == 1
    steal = next(r for r in probes if r.attrs["data-take"] == "retaken")
    assert "retaken, not believed: the hypervisor took" in steal.text()
    # The reason sentence mentions the retakes.
    sentence = next(
        li.text()
        for li in doc.find("ul", data_workload="json").find_all("li")
        if li.text().startswith("granian-asgi")
    )
    assert (
        f"the search retook {len(retaken)} probes it could not believe: steal ({len(retaken)})"
        in (sentence)
    )
    assert "disagreed (disputed)" in sentence
    # A runner whose search retook nothing says nothing of it.
    assert "retook" not in next(
        li.text()
        for li in doc.find("ul", data_workload="json").find_all("li")
        if li.text().startswith("gunicorn-sync")
    )


# --------------------------------------------------------------------------
# 1. Steal and interference beside the figures


def test_the_host_table_shows_steal_beside_the_others(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    doc = render(sample, tmp_path / "r")
    host = doc.find("table", **{"class": "compact host"})
    heads = [th.text() for th in host.find("thead").find_all("th")]
    assert heads[1:6] == [
        "others on server CPUs (s)",
        "others on load gen CPUs (s)",
        "largest share",
        "steal on server CPUs",
        "steal on load gen CPUs",
    ]
    row = host.find("tr", data_run_id="gunicorn-sync/json/open/2")
    run = next(r for r in sample["runs"] if r["id"] == "gunicorn-sync/json/open/2")
    assert row.cells()[4].text() == f"{run['interference']['server_steal_share'] * 100:.1f} %"
    assert "steal" in row.cells()[5].text()
    note = doc.find("h3", id="host")
    text = doc.find("section", id="runs").text()
    assert note.text() == "Other processes on the host"
    assert (
        f"above {INTERFERENCE_SHARE * 100:.1f} % of the window flags the run interference" in text
    )
    assert f"above {STEAL_SHARE * 100:.1f} % on either side it flags the run steal" in text
    # steal is a footnote: the run's cell is ranked.
    assert table(doc, "json")["gunicorn-sync"].attrs["data-rank"] == "4"


# --------------------------------------------------------------------------
# The console


def test_the_console_table_shows_lower_bounds_and_bands() -> None:
    results = read_results(BANDS)
    text = results_table(results.runs)
    lines: dict[str, str] = {}
    for line in text.splitlines()[2:]:  # the first repeat's line of each cell
        lines.setdefault(" ".join(line.split()[:2]), line)
    assert text.splitlines()[0].split()[:5] == ["runner", "workload", "load", "rps", "band"]
    gthread = next(r for r in results.runs if r.id == "gunicorn-gthread/json/open/1")
    assert gthread.capacity is not None and gthread.capacity.low_rps is not None
    low = min(gthread.capacity.low_rps, gthread.capacity.rps or 0)
    assert lines["gunicorn-gthread json"].split()[4:7] == [f"≥{low:.0f}", f"[{low:.0f},", "∞)"]
    uvicorn = next(r for r in results.runs if r.id == "uvicorn/json/open/1")
    assert uvicorn.capacity is not None
    cap = uvicorn.capacity
    assert lines["uvicorn json"].split()[4:7] == [
        f"{uvicorn.rps:.0f}",
        f"[{cap.low_rps:.0f},",
        f"{cap.high_rps:.0f}]",
    ]
    assert "≥" not in lines["uvicorn json"]
    assert summary_line(gthread).startswith(f"capacity ≥{low:.0f} req/s [{low:.0f}, ∞) within")


# --------------------------------------------------------------------------
# Old results still render


@pytest.mark.parametrize("name", OLD_SAMPLES)
def test_old_samples_still_render_without_bands(tmp_path: Path, name: str) -> None:
    data = json.loads((DATA / name).read_text(encoding="utf-8"))
    assert not any((r.get("capacity") or {}).get("low_rps") for r in data["runs"])
    doc = render(DATA / name, tmp_path / name)
    ranked = [r for t in doc.find_all("table", **{"class": "ranking"}) for r in rows(t)]
    assert ranked and any(r.attrs["data-rank"] == "1" for r in ranked)
    # No band of the search's: a figure is its mean (± the repeats), or ≥ a lower bound.
    for row in ranked:
        figure = row.cells()[2].text()
        assert "[" not in figure
        assert figure.startswith("≥") == (row.attrs["data-lower-bound"] == "yes")
    assert doc.find("ul", **{"class": "verdicts"}).find_all("li")
