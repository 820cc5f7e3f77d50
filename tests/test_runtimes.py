"""Interpreters, gc modes and soak runs: the report sections from a committed sample,
then real short runs through the bench CLI on two interpreters and each gc mode.

The real runs build (or reuse) ``.data/venvs/py3.11.*`` and ``py3.12.*`` with uv
from its cache; with a warm cache the whole module takes about two minutes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runners.report import render_comparison, render_run
from runners.results.schema import SCHEMA_PATH
from runners.runtimes.interpreters import find_interpreter
from runners.runtimes.releases import locked_django
from runners.runtimes.venvs import runtime_env
from runners.sampling.memory import sample_tree
from tests.servers import BenchRun, get_json, run_bench, running
from tests.test_report import Node, parse
from tests.test_report_browser import CHECK_CHARTS, chromium, console_problems, launched

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "sample_runtimes.json"
MIB = 2**20
PYTHONS = ("3.11", "3.12")


def place(results: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


@pytest.fixture
def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


def render(results: dict[str, Any], folder: Path) -> Node:
    place(results, folder)
    return parse(render_run(folder).read_text(encoding="utf-8"))


def section(page: Node, anchor: str) -> Node:
    return page.find("section", id=anchor)


def chart_data(page: Node) -> dict[str, Any]:
    script = page.find("script", id="report-data")
    data: dict[str, Any] = json.loads(script.raw_text())["charts"]
    return data


def mib(value: float) -> str:
    return f"{value / MIB:,.1f}"


# --- the report, from the committed sample ---------------------------------------------------


def test_sample_matches_the_schema(sample: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(sample, schema, cls=jsonschema.Draft202012Validator)
    assert len({r["id"] for r in sample["runs"]}) == len(sample["runs"])


def test_interpreters_side_by_side_with_ratios(sample: dict[str, Any], tmp_path: Path) -> None:
    page = render(sample, tmp_path / "run")
    table = section(page, "interpreters").find("table", **{"class": "compact runtimes"})
    rows = [r for r in table.find_all("tr") if r.attrs.get("data-runtime")]
    runs = {
        (r["runner"], r["workload"], r["python"]["version"], r["gc"]): r for r in sample["runs"]
    }
    versions = sorted({k[2] for k in runs}, key=lambda v: tuple(map(int, v.split("."))))
    assert len(versions) == 2
    for row in rows:
        version = (row.attrs["data-runtime"] or "").removeprefix("CPython ")
        runner, workload, gc = (
            row.attrs[k] or "" for k in ("data-runner", "data-workload", "data-gc")
        )
        run, base = runs[(runner, workload, version, gc)], runs[(runner, workload, versions[0], gc)]
        assert float(row.attrs["data-rps-per-gib"] or 0) == pytest.approx(run["rps_per_gib"])
        ratio = float(row.attrs["data-rps-per-gib-ratio"] or 0)
        assert ratio == pytest.approx(run["rps_per_gib"] / base["rps_per_gib"])
    assert len(rows) == len(runs)
    cells = [c.text() for c in rows[0].cells()]
    assert "(baseline)" in " ".join(cells) and "×1.00" in cells
    verdicts = section(page, "interpreters").find("ul", **{"class": "verdicts runtime-verdicts"})
    assert "requests/s per GiB of CPython " + versions[0] in verdicts.text()
    chart = chart_data(page)["rt-rpg"]
    assert [d["label"] for d in chart["datasets"]] == [f"CPython {v}" for v in versions]
    for dataset in chart["datasets"]:  # the text on each bar, which report.js reads
        assert len(dataset["texts"]) == len(dataset["data"])
        for value, text in zip(dataset["data"], dataset["texts"], strict=True):
            assert value is None or abs(float(text.replace(",", "")) - value) <= 0.55


def test_gc_sentences_are_computed_from_the_data(sample: dict[str, Any], tmp_path: Path) -> None:
    page = render(sample, tmp_path / "run")
    text = section(page, "gc-modes").text()
    runs = [r for r in sample["runs"] if r["runner"] == "gunicorn-sync-preload"]
    python = runs[0]["python"]["version"]
    by_gc = {r["gc"]: r for r in runs if r["python"]["version"] == python and not r.get("soak")}
    base, freeze = by_gc["default"], by_gc["freeze"]
    pss, base_pss = freeze["memory"]["pss_peak_bytes"], base["memory"]["pss_peak_bytes"]
    change = pss / base_pss - 1
    words = (
        "the same summed PSS"
        if abs(change) < 0.005
        else (f"{abs(change):.0%} {'more' if change > 0 else 'less'} summed PSS")
    )
    expected = (
        f"gunicorn-sync-preload, json (CPython {python}): gc freeze used {words} "
        f"({pss / MIB:,.0f} vs {base_pss / MIB:,.0f} MiB)"
    )
    assert expected in text
    assert "than gc default." in text
    assert "gc off used" in text


def test_soak_section_draws_every_worker(sample: dict[str, Any], tmp_path: Path) -> None:
    page = render(sample, tmp_path / "run")
    soak = section(page, "soak")
    soak_runs = [r for r in sample["runs"] if r.get("soak")]
    cards = soak.find_all("div", **{"class": "card soak-run"})
    assert len(cards) == len(soak_runs) >= 3
    charts = chart_data(page)
    for card, run in zip(cards, soak_runs, strict=True):
        assert card.attrs["data-run-id"] == run["id"]
        assert card.attrs["data-gc"] == run["gc"]
        series = run["soak_series"]
        table = card.find("table", **{"class": "compact soak-workers"})
        rows = [r for r in table.find_all("tr") if r.attrs.get("data-name")]
        assert [r.attrs["data-name"] for r in rows] == [p["name"] for p in series["processes"]]
        for row, proc in zip(rows, series["processes"], strict=True):
            shared = [v for v in proc["shared"] if v is not None]
            private = [v for v in proc["uss"] if v is not None]
            cells = [c.text() for c in row.cells()]
            assert cells[0] == f"{proc['name']} {proc['pid']}"
            assert cells[1] == f"{mib(shared[0])} → {mib(shared[-1])}"
            assert cells[3] == f"{mib(private[0])} → {mib(private[-1])}"
        canvas = card.find("canvas")
        spec = charts[canvas.attrs["data-chart"] or ""]
        workers = [p for p in series["processes"] if p["role"] == "worker"]
        assert spec["kind"] == "soakTime"
        assert len(spec["datasets"]) == 2 * len(workers)
    summaries = soak.find_all("div", **{"class": "card wide soak-summary"})
    pythons = {r["python"]["version"] for r in soak_runs}
    assert len(summaries) == len(pythons)
    gcs = [r.attrs["data-gc"] for r in summaries[0].find_all("tr") if r.attrs.get("data-gc")]
    assert gcs == ["default", "freeze", "off"]


def test_django_releases_are_compared_like_interpreters(
    sample: dict[str, Any], tmp_path: Path
) -> None:
    data = copy.deepcopy(sample)
    data["runs"] = [
        r for r in data["runs"] if r["python"]["version"] == sample["runs"][0]["python"]["version"]
    ]
    twin = copy.deepcopy([r for r in data["runs"] if not r.get("soak")])
    for run in twin:
        run["django"] = "6.1.3"
        run["id"] += "/django6.1"
        run["rps"] *= 1.1
        run["rps_per_gib"] *= 1.1
    data["runs"] += twin
    page = render(data, tmp_path / "run")
    heading = section(page, "interpreters").find("h2").text()
    assert heading == "Django releases side by side"
    runtimes = {
        r.attrs["data-runtime"]
        for r in section(page, "interpreters").find_all("tr")
        if r.attrs.get("data-runtime")
    }
    assert runtimes == {"Django " + sample["runs"][0]["django"], "Django 6.1.3"}


def test_comparison_page_of_two_runtime_invocations(sample: dict[str, Any], tmp_path: Path) -> None:
    old = place(sample, tmp_path / "old")
    newer = copy.deepcopy(sample)
    for run in newer["runs"]:
        run["rps"] *= 1.5
        if run["rps_per_gib"] is not None:
            run["rps_per_gib"] *= 1.5
    new = place(newer, tmp_path / "new")
    out = tmp_path / "compare.html"
    proc = subprocess.run(
        [sys.executable, "-m", "runners.report", str(old), str(new), "--output", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    page = parse(out.read_text(encoding="utf-8"))
    table = page.find("table", **{"class": "comparison"})
    rows = [r for r in table.find_all("tr") if r.attrs.get("data-runner")]
    json_runs = [r for r in sample["runs"] if r["workload"] == "json"]
    assert len(rows) == len(json_runs)
    # Same runner, two interpreters, three gc modes: never matched with one another.
    keys = {(r.attrs["data-runner"], r.attrs["data-python"], r.attrs["data-gc"]) for r in rows}
    assert len(keys) == len(rows)
    assert {r.attrs["data-rps-verdict"] for r in rows} == {"better"}
    assert render_comparison(old, new).is_file()


@pytest.mark.browser
def test_runtime_charts_draw_in_chromium(sample: dict[str, Any], tmp_path: Path) -> None:
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    report = render_run(place(sample, tmp_path / "reports" / "run"))
    profile = tmp_path / "profile"
    profile.mkdir()
    with launched(binary, profile, tmp_path / "chromium.log") as tools:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            tools.send(f"{domain}.enable", session)
        tools.send("Page.navigate", session, url=report.as_uri())
        tools.wait_for("Page.loadEventFired")
        result = tools.send(
            "Runtime.evaluate", session, expression=CHECK_CHARTS, returnByValue=True
        )
        state = json.loads(result["result"]["value"])
        events = list(tools.events)
    assert console_problems(events) == []
    assert state["canvases"] == state["specs"] == int(state["flag"])
    soak_charts = sum(
        1 for name in chart_data(parse(report.read_text())) if name.startswith("soak-")
    )
    assert soak_charts >= 3 + 1
    for chart in state["drawn"]:
        assert chart["datasets"] > 0 and chart["painted"] > 2000, chart


# --- real runs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-data")


@pytest.fixture(scope="module")
def two_pythons(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[BenchRun]:
    """gunicorn-sync-preload under two gc modes and uvicorn, on 3.11 and 3.12: 6 short runs
    (``off`` taking effect on another interpreter: ``test_gc_modes_take_effect...``)."""
    out = tmp_path_factory.mktemp("runtimes") / "results"
    yield run_bench(
        out,
        data_dir,
        *("--python", ",".join(PYTHONS), "--runners", "gunicorn-sync-preload,uvicorn"),
        *("--workloads", "json", "--gc", "default,freeze"),
        *("--load", "closed", "--users", "4", "--warmup", "0.5", "--duration", "1"),
    )


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[BenchRun]:
    """A 300-request soak of gunicorn-sync-preload on mixed under each gc mode."""
    out = tmp_path_factory.mktemp("soak") / "results"
    yield run_bench(out, data_dir, "--soak", "300", "--users", "4")


@pytest.mark.servers
@pytest.mark.slow
def test_each_run_records_its_interpreter_and_gc_mode(two_pythons: BenchRun) -> None:
    results = two_pythons.check()
    runs = results["runs"]
    assert len(runs) == 2 * (2 + 1)
    assert len({r["id"] for r in runs}) == len(runs)
    expected = {find_interpreter(spec).version for spec in PYTHONS}
    assert {r["python"]["version"] for r in runs} == expected
    assert [p["version"] for p in results["matrix"]["pythons"]] == sorted(expected)
    assert results["matrix"]["gcs"] == ["default", "freeze"]
    assert len(results["runtimes"]) == 2
    for run in runs:
        python = run["python"]
        assert python["implementation"] == "CPython"
        assert Path(python["path"]).is_file()
        # The server ran from the interpreter's own environment, with the locked Django.
        assert run["server_command"][0] == python["venv"]
        assert f"/py{python['version']}-django" in python["venv"]
        assert run["django"] == locked_django()
        assert run["id"].split("/")[4] == f"py{python['version']}"
        assert run["requests"] > 0 and run["failures"] == 0
    gunicorn = [r for r in runs if r["runner"] == "gunicorn-sync-preload"]
    for version in expected:
        modes = sorted(r["gc"] for r in gunicorn if r["python"]["version"] == version)
        assert modes == ["default", "freeze"]
    # Not a pre-fork master: one run per interpreter, with the default mode recorded.
    uvicorn = [r for r in runs if r["runner"] == "uvicorn"]
    assert [r["gc"] for r in uvicorn] == ["default", "default"]
    cells = {c["id"] for c in results["cells"]}
    assert len(cells) == len(runs)
    assert not any("noisy" in r["flags"] for r in runs)


@pytest.mark.servers
@pytest.mark.slow
def test_one_report_shows_the_interpreters_side_by_side(two_pythons: BenchRun) -> None:
    two_pythons.check()
    page = parse((two_pythons.out / "index.html").read_text(encoding="utf-8"))
    interp = section(page, "interpreters")
    runtimes = {
        r.attrs["data-runtime"] for r in interp.find_all("tr") if r.attrs.get("data-runtime")
    }
    assert runtimes == {f"CPython {find_interpreter(spec).version}" for spec in PYTHONS}
    groups = [r for r in interp.find_all("tr") if "group-start" in (r.attrs.get("class") or "")]
    assert len(groups) == 2 + 1  # gunicorn x 2 gc modes, uvicorn
    gc = section(page, "gc-modes").text()
    assert gc.count("than gc default.") == 2 * 1  # freeze, on each interpreter


@pytest.mark.servers
@pytest.mark.slow
def test_gc_modes_take_effect_in_workers_on_another_interpreter() -> None:
    runtime = runtime_env(find_interpreter("3.12"))
    # The permanent generation is not empty at start-up on every version (375 objects on 3.12.1).
    baseline = int(
        subprocess.run(
            [runtime.python, "-c", "import gc; print(gc.get_freeze_count())"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    expected = {
        "default": {"enabled": True, "frozen": False, "off": False},
        "freeze": {"enabled": True, "frozen": True, "off": False},
        "off": {"enabled": False, "frozen": False, "off": True},
    }
    for mode, want in expected.items():
        with running(
            "gunicorn-sync-preload",
            gc=mode,
            python=runtime.python,
            app="tests.gc_probe:application",
        ) as server:
            assert server.command.argv[0] == runtime.python
            workers = {p.pid for p in sample_tree(server.pid).workers}
            seen = {}
            for _ in range(10):
                state = get_json(server, "/probe")
                seen[state["pid"]] = state
            assert set(seen) <= workers
            for state in seen.values():
                assert state["enabled"] is want["enabled"], (mode, state)
                assert (state["frozen"] > baseline) is want["frozen"], (mode, baseline, state)
                assert (state["threshold"][0] == 0) is want["off"], (mode, state)


@pytest.mark.servers
@pytest.mark.slow
def test_soak_records_per_worker_memory_over_time(soaked: BenchRun) -> None:
    results = soaked.check()
    runs = results["runs"]
    assert [r["gc"] for r in runs] == ["default", "freeze", "off"]
    assert results["matrix"]["soak"] == {"requests": 300, "duration_s": None}
    for run in runs:
        assert run["soak"] is True
        assert run["runner"] == "gunicorn-sync-preload" and run["workload"] == "mixed"
        assert run["requests"] >= 300
        series = run["soak_series"]
        assert series["ended_by"] == "requests"
        t = series["t"]
        assert len(t) >= 3 and t == sorted(t) and t[0] < 0.2
        assert 0 < series["window_start_s"] < series["window_end_s"] <= t[-1] + 1
        workers = [p for p in series["processes"] if p["role"] == "worker"]
        assert len(workers) == run["workers"]
        assert [p["role"] for p in series["processes"]].count("master") == 1
        for proc in series["processes"]:
            assert len(proc["shared"]) == len(proc["uss"]) == len(proc["pss"]) == len(t)
            values = [v for v in proc["uss"] if v is not None]
            assert values and all(v > 0 for v in values)
        # Every worker served: it un-shared pages, its private memory grew.
        assert any(p["uss"][-1] > p["uss"][0] for p in workers)


@pytest.mark.servers
@pytest.mark.slow
def test_soak_report_draws_shared_and_private_per_worker(soaked: BenchRun) -> None:
    soaked.check()
    page = parse((soaked.out / "index.html").read_text(encoding="utf-8"))
    soak = section(page, "soak")
    cards = soak.find_all("div", **{"class": "card soak-run"})
    assert [c.attrs["data-gc"] for c in cards] == ["default", "freeze", "off"]
    for card in cards:
        rows = [r for r in card.find_all("tr") if r.attrs.get("data-role") == "worker"]
        assert len(rows) >= 2
    assert "mean worker" in soak.text()


def test_latency_tables_name_the_gc_mode_of_each_row(
    sample: dict[str, Any], tmp_path: Path
) -> None:
    # Rows that differ only by gc mode (or interpreter) must not look the same.
    html = render_run(place(sample, tmp_path / "run")).read_text(encoding="utf-8")
    # The latency tables: the runner name, then its distinguishing <small> notes.
    rows = re.findall(r"<tr><td>gunicorn-sync-preload (<small>.*?)</td>", html)
    assert rows, "no latency rows for gunicorn-sync-preload"
    assert any("gc freeze" in row for row in rows)
    assert any("gc default" in row for row in rows)
