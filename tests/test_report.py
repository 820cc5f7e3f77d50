"""The HTML reports, rendered from the committed sample results.json files."""

from __future__ import annotations

import copy
import json
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyperf
import pytest

from runners.report import ResultsError, render_comparison, render_index, render_run
from runners.report.__main__ import main
from runners.report.compare import ASSUMED_NOISE, NOISE_FLOOR, compare_stat
from runners.report.memory import downsample, process_rows
from runners.results.cells import Stat
from runners.results.document import read_results
from runners.results.record import MemorySample

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "sample_results.json"
SAMPLE_B = DATA / "sample_results_b.json"
MIB = 2**20
REPO = Path(__file__).resolve().parent.parent
BLOCKING = {"failed", "failures", "unconfirmed", "user-bound", "timeouts", "worker-lost"}
"""Flags that keep a cell out of the ranking (shared-cpus, noisy, say, do not)."""
LOWER_BOUND = {"loadgen-bound", "interference"}
"""Flags that make a cell's figure a lower bound: ranked as ≥ its lowest repeat."""


# --------------------------------------------------------------------------
# A small HTML tree, enough to read tables and check tags


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return " ".join(self.raw_text().split())

    def raw_text(self) -> str:
        return "".join(c if isinstance(c, str) else c.raw_text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            n
            for n in self.iter()
            if n.tag == tag and all(n.attrs.get(k) == v for k, v in wanted.items())
        ]

    def find(self, tag: str, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]

    def has_class(self, name: str) -> bool:
        return name in (self.attrs.get("class") or "").split()

    def cells(self) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node) and c.tag in ("td", "th")]


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def rows(table: Node) -> list[Node]:
    return [r for r in table.find_all("tr") if r.attrs.get("data-runner") is not None]


# --------------------------------------------------------------------------
# Fixtures


def place(results: dict[str, Any] | Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(results, Path):
        shutil.copy(results, folder / "results.json")
    else:
        (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


@pytest.fixture
def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder holding nothing but the sample results.json."""
    return place(SAMPLE, tmp_path / "reports" / "20261121T100012Z")


@pytest.fixture
def report(run_dir: Path) -> tuple[str, Node]:
    html = render_run(run_dir).read_text(encoding="utf-8")
    return html, parse(html)


# --------------------------------------------------------------------------
# The figures, computed here independently of runners.report


def expected_cells(data: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for run in data["runs"]:
        groups[(run["workload"], run["users"], run["runner"])].append(run)
    cells = {}
    for key, runs in groups.items():
        ok = [r for r in runs if r["status"] == "ok"]
        flags = {f for r in runs for f in r["flags"]}
        if len(ok) < len(runs):
            flags.add("failed")
        if any(r["failures"] for r in ok):
            flags.add("failures")
        rps = [r["rps"] for r in ok]
        if len(rps) > 1 and (max(rps) - min(rps)) / 2 / statistics.fmean(rps) > 0.05:
            flags.add("noisy")
        cells[key] = {
            "flags": flags,
            "ok": len(ok),
            "runs": len(runs),
            "rps_per_gib": statistics.fmean(r["rps_per_gib"] for r in ok) if ok else None,
            "per_gib_min": min((r["rps_per_gib"] for r in ok), default=None),
            "per_gib_max": max((r["rps_per_gib"] for r in ok), default=None),
            "rps_min": min(rps, default=None),
            "lower": bool(flags & LOWER_BOUND),
            "rps": statistics.fmean(rps) if ok else None,
            "p50": statistics.fmean(r["latency_ms"]["p50"] for r in ok) if ok else None,
            "p99": statistics.fmean(r["latency_ms"]["p99"] for r in ok) if ok else None,
            "pss": statistics.fmean(r["memory"]["pss_peak_bytes"] for r in ok) if ok else None,
            "rps_per_cpu": statistics.fmean(r["rps_per_cpu_second"] for r in ok) if ok else None,
            "failures": sum(r["failures"] for r in ok),
        }
    return cells


def expected_order(
    cells: dict[tuple[str, int, str], dict[str, Any]], workload: str, users: int
) -> list[tuple[str, bool]]:
    """(runner, ranked) best first: clean cells, then flagged, then failed."""
    mine = {k[2]: v for k, v in cells.items() if k[:2] == (workload, users)}
    clean = sorted(
        (r for r, c in mine.items() if not c["flags"] & BLOCKING),
        key=lambda r: -mine[r]["rps_per_gib"],
    )
    flagged = sorted(
        (r for r, c in mine.items() if c["flags"] & BLOCKING and c["ok"]),
        key=lambda r: -mine[r]["rps_per_gib"],
    )
    failed = [r for r, c in mine.items() if not c["ok"]]
    return [(r, True) for r in clean] + [(r, False) for r in flagged + failed]


def tied_ranks(ranked: list[tuple[str, float, float, float | None]]) -> dict[str, int]:
    """Ranks with ties, from (runner, figure, band low, band high or None when open),
    written out here: best figure first; a cell whose band overlaps the band of its
    group's first cell shares that cell's rank, else it starts a group at its position."""
    order = sorted(ranked, key=lambda c: -c[1])
    ranks: dict[str, int] = {}
    leader = None
    for position, (runner, _, low, high) in enumerate(order, start=1):
        if leader is not None:
            _, _, l_low, l_high = leader
            together = (l_high is None or low <= l_high) and (high is None or l_low <= high)
        if leader is None or not together:
            leader, rank = (runner, 0.0, low, high), position
        ranks[runner] = rank
    return ranks


def expected_ranks(
    cells: dict[tuple[str, int, str], dict[str, Any]], workload: str, users: int
) -> dict[str, int]:
    """A closed loop's band is the range of its repeats' requests/s per GiB (open above
    for a lower bound)."""
    mine = {k[2]: v for k, v in cells.items() if k[:2] == (workload, users)}
    return tied_ranks(
        [
            (runner, c["rps_per_gib"], c["per_gib_min"], None if c["lower"] else c["per_gib_max"])
            for runner, c in mine.items()
            if c["ok"] and not c["flags"] & BLOCKING
        ]
    )


def ms(value: float) -> str:
    return f"{value:,.1f}" if value < 10 else f"{value:,.0f}"


# --------------------------------------------------------------------------
# One run's report


def test_render_run_writes_index_html(run_dir: Path) -> None:
    path = render_run(run_dir)
    assert path == run_dir / "index.html"
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_ranking_tables_match_the_data(report: tuple[str, Node], sample: dict[str, Any]) -> None:
    _, doc = report
    cells = expected_cells(sample)
    tables = doc.find_all("table", **{"class": "ranking"})
    pairs = {(w, u) for w, u, _ in cells}
    assert {(t.attrs["data-workload"], int(t.attrs["data-users"] or 0)) for t in tables} == pairs
    assert len(tables) == 4
    for table in tables:
        workload, users = table.attrs["data-workload"] or "", int(table.attrs["data-users"] or 0)
        order = expected_order(cells, workload, users)
        ranks = expected_ranks(cells, workload, users)
        table_rows = rows(table)
        assert [(r.attrs["data-runner"], bool(r.attrs["data-rank"])) for r in table_rows] == order
        for row in table_rows:
            runner = row.attrs["data-runner"] or ""
            want = cells[(workload, users, runner)]
            tds = row.cells()
            if row.attrs["data-rank"]:
                assert tds[0].text().split()[0] == str(ranks[runner])
                tied = [r for r in ranks if r != runner and ranks[r] == ranks[runner]]
                assert ("within noise" in tds[0].text()) == bool(tied)
            else:
                assert tds[0].text() == "—"
            assert tds[1].find("strong").text() == runner
            if want["ok"]:
                assert float(row.attrs["data-rps-per-gib"] or 0) == pytest.approx(
                    want["rps_per_gib"]
                )
                if want["lower"]:
                    # A lower bound: at least its lowest repeat.
                    assert tds[2].text() == f"≥ {want['per_gib_min']:,.0f}"
                    assert tds[3].text() == f"≥ {want['rps_min']:,.0f}"
                else:
                    assert tds[2].text().split()[0] == f"{want['rps_per_gib']:,.0f}"
                    assert tds[3].text().split()[0] == f"{want['rps']:,.0f}"
                assert tds[4].text().split()[0] == ms(want["p50"])
                assert tds[5].text().split()[0] == ms(want["p99"])
                assert tds[6].text().split()[0] == f"{want['pss'] / MIB:,.1f}"
                assert tds[7].text().split()[0] == f"{want['rps_per_cpu']:,.0f}"
                assert tds[8].text().split()[0] == f"{want['failures']:,}"
            assert tds[9].text() == f"{want['ok']}/{want['runs']}"
            badges = {b.text() for b in tds[10].find_all("span")}
            assert badges == want["flags"]


def test_invocation_wide_flags_do_not_unrank(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    for run in data["runs"]:
        run["flags"].append("shared-cpus")
    doc = parse(render_run(place(data, tmp_path / "shared")).read_text(encoding="utf-8"))
    cells = expected_cells(data)
    table = doc.find("table", data_workload="json", data_users="16")
    assert [(r.attrs["data-runner"], bool(r.attrs["data-rank"])) for r in rows(table)] == (
        expected_order(cells, "json", 16)
    )
    assert all(bool(r.attrs["data-rank"]) for r in rows(table))
    assert all("shared-cpus" in r.text() for r in rows(table))


def test_headline_ranks_a_lower_bound_and_marks_unranked_cells(report: tuple[str, Node]) -> None:
    _, doc = report
    json64 = doc.find("table", data_workload="json", data_users="64")
    by_runner = {r.attrs["data-runner"]: r for r in rows(json64)}
    # uvicorn has the highest requests/s per GiB but the load generator ran out first:
    # what it did is a lower bound, and it beats every other runner, so it is first.
    uvicorn = by_runner["uvicorn"]
    assert uvicorn.attrs["data-rank"] == "1" and uvicorn.attrs["data-lower-bound"] == "yes"
    assert uvicorn.attrs["data-band-high"] == ""
    assert "loadgen-bound" in uvicorn.text()
    # noisy is a footnote: ranked, its band (the repeats' range) shows the spread.
    assert by_runner["gunicorn-sync"].attrs["data-flags"] == "noisy"
    assert by_runner["gunicorn-sync"].attrs["data-rank"] == "3"
    assert by_runner["gunicorn-sync-freeze"].attrs["data-rank"] == "2"
    verdict = doc.find("li", data_workload="json", data_users="64").text()
    assert verdict.startswith(
        "json at 64 users: uvicorn first with at least 49,634 req/s per GiB (≥ 2,814 req/s, "
    )
    assert verdict.endswith("the load generator could not push harder.")
    db64 = {
        r.attrs["data-runner"]: r
        for r in rows(doc.find("table", data_workload="db", data_users="64"))
    }
    assert "failed" in (db64["gunicorn-gthread"].attrs["data-flags"] or "")
    assert db64["gunicorn-gthread"].cells()[9].text() == "1/2"
    assert "9 (0.1 %)" in db64["uvicorn"].cells()[8].text()
    # Unranked (failures, a failed repeat): the headline says what to run again.
    db_verdict = doc.find("li", data_workload="db", data_users="64")
    assert db_verdict.text().startswith("db at 64 users: gunicorn-sync-freeze, 7,399 req/s per GiB")
    assert "uvicorn scored 10,861 but is failures" in db_verdict.text()
    rerun = db_verdict.find("span", **{"class": "rerun"})
    assert "Not ranked: uvicorn (failures), gunicorn-gthread (failed)" in rerun.text()
    assert rerun.find("code").text() == (
        "tox -e bench -- --runners uvicorn,gunicorn-gthread --workloads db --repeat 3 "
        "--users 16,64 --duration 10 --warmup 3"
    )
    # Every cell of json at 64 users is ranked: no command to run.
    assert not doc.find("li", data_workload="json", data_users="64").find_all("code")


def test_chart_data_matches_the_tables(report: tuple[str, Node], sample: dict[str, Any]) -> None:
    _, doc = report
    specs = json.loads(doc.find("script", id="report-data").raw_text())["charts"]
    canvases = [c.attrs["data-chart"] or "" for c in doc.find_all("canvas")]
    assert sorted(canvases) == sorted(specs)
    for w in ("w0", "w1"):  # json, db: both ran at 16 and 64 users
        for kind in ("rpg", "lat", "crps", "cp99", "mem", "pss"):
            assert f"{w}-{kind}" in specs
    cells = expected_cells(sample)
    rpg = specs["w0-rpg"]
    assert [d["label"] for d in rpg["datasets"]] == ["16 users", "64 users"]
    for dataset, users in zip(rpg["datasets"], (16, 64), strict=True):
        for runner, value, flag, band in zip(
            rpg["labels"], dataset["data"], dataset["flags"], dataset["bands"], strict=True
        ):
            want = cells[("json", users, runner)]
            assert value == pytest.approx(want["rps_per_gib"], abs=0.06)
            assert set(filter(None, flag.split(", "))) == want["flags"] & BLOCKING
            # The band: the repeats' range, open above for a lower bound.
            low, high = band
            assert low == pytest.approx(want["per_gib_min"], abs=0.06)
            if want["lower"]:
                assert high is None
            else:
                assert high == pytest.approx(want["per_gib_max"], abs=0.06)
    # Bars sorted by requests/s per GiB at the highest concurrency.
    top = rpg["datasets"][1]["data"]
    assert top == sorted(top, reverse=True)
    # The copy-on-write picture: master and every worker of each runner.
    mem = specs["w0-mem"]
    assert "gunicorn-sync-freeze · master" in mem["labels"]
    assert sum(1 for label in mem["labels"] if label.startswith("gunicorn-sync-freeze ·")) == 4
    assert [d["label"] for d in mem["datasets"]] == [
        "private (USS)",
        "shared, its PSS share",
        "shared, charged to the others",
    ]


def test_memory_table_is_the_peak_sample(report: tuple[str, Node], sample: dict[str, Any]) -> None:
    _, doc = report
    run = next(r for r in sample["runs"] if r["id"] == "gunicorn-sync-freeze/json/64/1")
    peak = max(run["memory"]["samples"], key=lambda s: s["pss"])
    table = doc.find_all("table", **{"class": "compact memory"})[0]
    shown = [
        [c.text() for c in r.cells()]
        for r in table.find_all("tr")
        if r.cells() and r.cells()[0].text() == "gunicorn-sync-freeze"
    ]
    procs = sorted(peak["processes"], key=lambda p: (p["role"] != "master", p["pid"]))
    assert [row[1] for row in shown] == ["master", "worker 1", "worker 2", "worker 3"]
    for row, proc in zip(shown, procs, strict=True):
        assert row[2] == str(proc["pid"])
        assert row[3:7] == [f"{proc[k] / MIB:,.1f}" for k in ("rss", "pss", "uss", "shared")]


def test_many_workers_are_summed_up() -> None:
    procs = [{"pid": 10, "role": "master", "rss": 30 * MIB, "pss": 12 * MIB, "uss": 8 * MIB}]
    procs += [
        {"pid": 11 + i, "role": "worker", "rss": (60 + i) * MIB, "pss": 40 * MIB, "uss": 30 * MIB}
        for i in range(17)
    ]
    shown = process_rows(MemorySample.from_dict({"t": 1.0, "processes": list(reversed(procs))}))
    assert [r.name for r in shown] == [
        "master",
        "worker 1",
        "worker 2",
        "worker 3",
        "workers 4–17 (mean)",
    ]
    assert shown[1].pid == 11 and shown[4].pid is None
    assert shown[4].rss == round(sum((60 + i) * MIB for i in range(3, 17)) / 14)
    assert shown[4].shared == shown[4].rss - 30 * MIB
    assert shown[0].charged_shared == 4 * MIB and shown[0].other_shared == 18 * MIB


def test_environment_command_and_failed_run(
    report: tuple[str, Node], sample: dict[str, Any]
) -> None:
    html, doc = report
    env = doc.find("section", id="environment")
    assert doc.find("pre", **{"class": "command"}).text() == sample["command"]
    text = env.text()
    for value in (
        "AMD EPYC 7B13 × 2",
        "CPython 3.11.11",
        "sqlite",
        "locmem",
        sample["environment"]["git_commit"],
    ):
        assert value in text
    packages = {
        r.cells()[0].text(): r.cells()[1].text() for r in env.find("table").find_all("tr")[1:]
    }
    assert packages == sample["environment"]["packages"]
    failed = doc.find("div", data_run_id="gunicorn-gthread/db/64/2")
    assert "server exited with code 3" in failed.text()
    assert "in <module>" in failed.find("pre").text()
    assert "in &lt;module&gt;" in html


def test_report_is_self_contained(report: tuple[str, Node]) -> None:
    html, doc = report
    assert_no_other_host(doc)
    scripts = doc.find_all("script")
    assert [s.attrs.get("type") for s in scripts] == ["application/json", None, None, None]
    assert all("src" not in s.attrs for s in scripts)
    assert "Chart.js v4.6.1" in html
    assert "chartjs-plugin-datalabels v2.2.0" in html
    assert "sourceMappingURL" not in html
    assert len(html.encode()) < 400_000


def assert_no_other_host(doc: Node) -> None:
    """No script, style, font, image or frame comes from anywhere but the page."""
    meta = doc.find("meta", http_equiv="Content-Security-Policy")
    assert "default-src 'none'" in (meta.attrs["content"] or "")
    remote = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
    for node in doc.iter():
        assert node.tag not in (
            "link",
            "iframe",
            "object",
            "embed",
            "base",
            "img",
            "video",
            "audio",
        )
        for name, value in node.attrs.items():
            assert not name.startswith("on"), (node.tag, name)
            if name in ("src", "href", "srcset", "poster", "data", "action", "xlink:href"):
                assert value is not None
                assert not remote.match(value), (node.tag, name, value)
                assert not value.lower().startswith(("javascript:", "http:", "https:")), value
        if node.tag == "style":
            css = node.raw_text().lower()
            assert "@import" not in css and "@font-face" not in css
            assert re.findall(r"url\(", css) == []
        if node.tag == "script" and node.attrs.get("type") != "application/json":
            code = node.raw_text()
            assert not re.search(r"""\bimport\s*\(\s*["']https?:""", code)
            assert "fonts.googleapis" not in code and "cdn.jsdelivr" not in code


def test_index_and_comparison_are_self_contained(tmp_path: Path) -> None:
    old = place(SAMPLE, tmp_path / "r" / "old")
    new = place(SAMPLE_B, tmp_path / "r" / "new")
    for page in (render_index(tmp_path / "r"), render_comparison(old, new)):
        doc = parse(page.read_text(encoding="utf-8"))
        assert_no_other_host(doc)
        assert doc.find_all("script") == []


HOSTILE = """<script>alert("runner")</script><img src=x onerror=alert(1)>&amp;'"x"""


def hostile_results(sample: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(sample)
    data["matrix"]["runners"] = [
        HOSTILE if r == "uvicorn" else r for r in data["matrix"]["runners"]
    ]
    data["command"] = f"tox -e bench -- --runners '{HOSTILE}'"
    data["environment"]["cpu_model"] = "</style><script>alert('cpu')</script>"
    data["environment"]["packages"]["<b>pkg</b>"] = "</script>"
    for run in data["runs"]:
        if run["runner"] == "uvicorn":
            run["runner"] = HOSTILE
            run["id"] = run["id"].replace("uvicorn", HOSTILE)
            run["flags"] = [*run["flags"], "<i>odd-flag</i>"]
            run["artifacts"]["locust_html"] = "javascript:alert(1)"
        if run["status"] == "failed":
            run["error"] = "</pre><script>alert('error')</script>"
            run["log_tail"] = "</details></section><script>alert('log')</script>"
    return data


def test_every_value_is_escaped(tmp_path: Path, sample: dict[str, Any]) -> None:
    folder = place(hostile_results(sample), tmp_path / "reports" / "evil")
    html = render_run(folder).read_text(encoding="utf-8")
    for raw in (
        HOSTILE,
        "<script>alert(",
        "<img src=x",
        "</style><script>",
        "<b>pkg</b>",
        "<i>odd-flag</i>",
        "javascript:alert",
    ):
        assert raw not in html, raw
    assert (
        "&lt;script&gt;alert(&#34;runner&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
        in html
    )
    assert "&lt;i&gt;odd-flag&lt;/i&gt;" in html
    doc = parse(html)
    # Only the four scripts the report writes; nothing broke out of a tag.
    assert len(doc.find_all("script")) == 4
    assert_no_other_host(doc)
    # The chart data still carries the name exactly (escaped as JSON, not lost).
    specs = json.loads(doc.find("script", id="report-data").raw_text())["charts"]
    assert HOSTILE in specs["w0-rpg"]["labels"]
    names = {
        r.attrs["data-runner"]
        for t in doc.find_all("table", **{"class": "ranking"})
        for r in rows(t)
    }
    assert HOSTILE in names

    # The index and a comparison escape too.
    place(sample, tmp_path / "reports" / "plain")
    index = render_index(tmp_path / "reports").read_text(encoding="utf-8")
    compare = render_comparison(tmp_path / "reports" / "plain", folder).read_text(encoding="utf-8")
    for page in (index, compare):
        assert HOSTILE not in page and "<script>alert(" not in page
        assert parse(page).find_all("script") == []


def test_artifact_links(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    first = data["runs"][0]
    first["artifacts"]["server_log"] = "runs/a b/server.log"  # a space: quoted in the link
    second = data["runs"][1]
    second["artifacts"] = {
        "locust_html": "../outside.html",
        "locust_csv": ["/etc/passwd", "https://example.com/x.csv"],
        "server_log": "javascript:alert(1)",
    }
    folder = place(data, tmp_path / "reports" / "run")
    run_files = folder / "runs" / "gunicorn-sync-json-16-1"
    run_files.mkdir(parents=True)
    (run_files / "locust.html").write_text("<html></html>", encoding="utf-8")
    (run_files / "locust_stats.csv").write_text("x\n", encoding="utf-8")
    (folder / "runs" / "a b").mkdir()
    (folder / "runs" / "a b" / "server.log").write_text("log\n", encoding="utf-8")
    (tmp_path / "reports" / "outside.html").write_text("x", encoding="utf-8")
    doc = parse(render_run(folder).read_text(encoding="utf-8"))

    row = doc.find("tr", data_run_id=first["id"])
    links = {a.text(): a.attrs["href"] for a in row.find_all("a")}
    assert links == {
        "report": "runs/gunicorn-sync-json-16-1/locust.html",
        "stats.csv": "runs/gunicorn-sync-json-16-1/locust_stats.csv",
        "log": "runs/a%20b/server.log",
    }
    # A path out of the folder, an absolute path, a URL: no link.
    assert doc.find("tr", data_run_id=second["id"]).find_all("a") == []
    # Every other run's files are missing: no links at all.
    assert doc.find("tr", data_run_id=data["runs"][2]["id"]).find_all("a") == []


def test_report_from_a_minimal_or_unfinished_results_json(
    tmp_path: Path, sample: dict[str, Any]
) -> None:
    data = copy.deepcopy(sample)
    data["finished_at"] = None
    del data["micro"]
    for key in ("hostname", "memory_total_bytes", "cache", "git_dirty"):
        del data["environment"][key]
    del data["environment"]["placement"]["shared"]
    data["environment"]["placement"]["loadgen_cpus"] = [0]
    data["runs"] = data["runs"][:3]
    for run in data["runs"]:
        for key in (
            "server",
            "interface",
            "variant",
            "workers",
            "threads",
            "gc",
            "middleware",
            "python",
            "django",
            "repeat",
            "log_tail",
            "started_at",
            "duration_s",
            "warmup_s",
            "rps_per_gib_mean_pss",
            "artifacts",
        ):
            run.pop(key, None)
        del run["latency_ms"]["p95"]
        del run["latency_ms"]["mean"]
    data["runs"][2]["memory"] = None
    data["runs"][2]["rps_per_gib"] = None
    folder = place(data, tmp_path / "crashed")
    html = render_run(folder).read_text(encoding="utf-8")
    assert "did not finish" in html
    assert "shared CPUs" in html
    assert "—" in html

    empty = copy.deepcopy(data)
    empty["runs"] = []
    html = render_run(place(empty, tmp_path / "empty")).read_text(encoding="utf-8")
    assert '<table class="ranking"' not in html


def test_python_versions_are_told_apart(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    extra = []
    for run in data["runs"]:
        if run["runner"] == "uvicorn" and run["workload"] == "json":
            other = copy.deepcopy(run)
            other["python"] = {**run["python"], "version": "3.13.1"}
            other["id"] = run["id"] + "/py3.13"
            other["rps"] = run["rps"] * 1.1
            other["rps_per_gib"] = run["rps_per_gib"] * 1.1
            extra.append(other)
    data["runs"] += extra
    doc = parse(render_run(place(data, tmp_path / "py")).read_text(encoding="utf-8"))
    table = doc.find("table", data_workload="json", data_users="16")
    assert "Python" in [th.text() for th in table.find_all("th")]
    pythons = [(r.attrs["data-runner"], r.attrs["data-python"]) for r in rows(table)]
    assert pythons[:2] == [("uvicorn", "CPython 3.13.1"), ("uvicorn", "CPython 3.11.11")]


# --------------------------------------------------------------------------
# Micro-benchmarks (pyperf)


def write_pyperf(path: Path) -> pyperf.BenchmarkSuite:
    def bench(name: str, values: list[float]) -> pyperf.Benchmark:
        runs = [
            pyperf.Run(values, metadata={"name": name, "unit": "second"}, collect_metadata=False)
            for _ in range(2)
        ]
        return pyperf.Benchmark(runs)

    suite = pyperf.BenchmarkSuite(
        [bench("url_resolve", [1.2e-5, 1.3e-5, 1.25e-5]), bench("<json_response>", [4.0e-5])]
    )
    suite.dump(str(path), replace=True)
    return suite


def test_micro_benchmarks_table(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    data["micro"] = "micro/pyperf.json"
    folder = place(data, tmp_path / "run")
    (folder / "micro").mkdir()
    suite = write_pyperf(folder / "micro" / "pyperf.json")
    html = render_run(folder).read_text(encoding="utf-8")
    doc = parse(html)
    section = doc.find("section", id="micro")
    shown = {
        r.attrs["data-benchmark"]: [c.text() for c in r.cells()]
        for r in section.find_all("tr")
        if r.attrs.get("data-benchmark")
    }
    assert set(shown) == {"url_resolve", "<json_response>"}
    for bench in suite.get_benchmarks():
        row = shown[bench.get_name()]
        assert row[1] == bench.format_value(bench.mean())
        assert row[3] == str(len(bench.get_values()))
    assert shown["url_resolve"][2] == suite.get_benchmark("url_resolve").format_value(
        suite.get_benchmark("url_resolve").stdev()
    )
    assert "&lt;json_response&gt;" in html
    assert doc.find("a", href="micro/pyperf.json")


def test_micro_benchmarks_missing_or_broken(tmp_path: Path, sample: dict[str, Any]) -> None:
    data = copy.deepcopy(sample)
    data["micro"] = "micro.json"
    folder = place(data, tmp_path / "run")
    assert "file not found next to results.json" in render_run(folder).read_text(encoding="utf-8")
    (folder / "micro.json").write_text("{not pyperf", encoding="utf-8")
    assert "cannot read it with pyperf" in render_run(folder).read_text(encoding="utf-8")
    data["micro"] = None
    assert 'id="micro"' not in render_run(place(data, folder)).read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# Across runs


def test_index_lists_every_run_newest_first(tmp_path: Path, sample: dict[str, Any]) -> None:
    reports = tmp_path / "reports"
    older = place(SAMPLE, reports / "20261121T100012Z")
    newer = place(SAMPLE_B, reports / "20261122T100009Z")
    broken = reports / "20261123T000000Z"
    broken.mkdir()
    (broken / "results.json").write_text("{", encoding="utf-8")
    (reports / "not-a-run").mkdir()
    render_run(older)
    render_comparison(older, newer)
    doc = parse(render_index(reports).read_text(encoding="utf-8"))
    listed = [r.attrs["data-folder"] for r in doc.find_all("tr") if r.attrs.get("data-folder")]
    assert listed == ["20261122T100009Z", "20261121T100012Z", "20261123T000000Z"]
    old_row = doc.find("tr", data_folder="20261121T100012Z")
    assert old_row.find("a").attrs["href"] == "20261121T100012Z/index.html"
    assert "gunicorn-sync, gunicorn-sync-freeze, gunicorn-gthread, uvicorn" in old_row.text()
    assert "AMD EPYC 7B13 × 2" in old_row.text()
    # The best at the highest concurrency: a lower bound that beats the others.
    assert "json @ 64: uvicorn ≥ 49,634" in old_row.text()
    new_row = doc.find("tr", data_folder="20261122T100009Z")
    assert "(no report yet)" in new_row.text()
    hrefs = [a.attrs["href"] for a in new_row.find_all("a")]
    assert "20261122T100009Z/compare-20261121T100012Z.html" in hrefs
    assert "unreadable" in doc.find("tr", data_folder="20261123T000000Z").text()


def test_comparison_page(tmp_path: Path) -> None:
    old = place(SAMPLE, tmp_path / "reports" / "old")
    new = place(SAMPLE_B, tmp_path / "reports" / "new")
    render_run(old)
    page = render_comparison(old, new)
    assert page == new / "compare-old.html"
    doc = parse(page.read_text(encoding="utf-8"))
    changes = {
        (r.attrs["data-runner"], r.attrs["data-users"], t.attrs["data-workload"]): r
        for t in doc.find_all("table", **{"class": "comparison"})
        for r in t.find_all("tr")
        if r.attrs.get("data-runner")
    }
    # Shared cells: three runners in both x two workloads x two user levels.
    assert len(changes) == 12
    assert {k[0] for k in changes} == {"gunicorn-sync", "gunicorn-sync-freeze", "uvicorn"}
    better = changes[("gunicorn-sync-freeze", "16", "json")]
    assert better.attrs["data-rps-verdict"] == "better"
    assert better.attrs["data-rps-per-gib-verdict"] == "better"
    assert "better" in better.text()
    assert changes[("uvicorn", "64", "db")].attrs["data-rps-verdict"] == "worse"
    same = changes[("gunicorn-sync", "16", "json")]
    assert same.attrs["data-rps-verdict"] == "noise"
    assert "within noise" in same.text()
    # The noisy cell moves within its own (wide) range.
    assert changes[("gunicorn-sync", "64", "json")].attrs["data-rps-verdict"] == "noise"
    a = json.loads(SAMPLE.read_text())
    b = json.loads(SAMPLE_B.read_text())
    old_rps = statistics.fmean(
        r["rps"] for r in a["runs"] if r["id"].startswith("gunicorn-sync-freeze/json/16/")
    )
    new_rps = statistics.fmean(
        r["rps"] for r in b["runs"] if r["id"].startswith("gunicorn-sync-freeze/json/16/")
    )
    assert float(better.attrs["data-rps-change"] or 0) == pytest.approx(
        (new_rps - old_rps) / old_rps
    )
    assert f"{old_rps:,.0f} → {new_rps:,.0f}" in better.text()
    # What only one side ran, and what changed around the runs.
    assert len(doc.find("ul", **{"class": "only-old"}).find_all("li")) == 4
    assert "granian-asgi" in doc.find("ul", **{"class": "only-new"}).text()
    diff = doc.find("table", **{"class": "compact env-diff"}).text()
    assert "Git commit" in diff and b["environment"]["git_commit"] in diff
    summary = doc.find("tr", data_figure="rps").cells()
    assert sum(int(c.text()) for c in summary[1:]) == 12
    assert doc.find("a", href="../old/index.html")


def test_compare_stat_noise_rules() -> None:
    def s(*values: float) -> Stat:
        return Stat(n=len(values), mean=statistics.fmean(values), min=min(values), max=max(values))

    # Ranges overlap: noise, whatever the sign.
    assert compare_stat(s(100, 110), s(108, 112), higher_is_better=True).verdict == "noise"
    # Tight repetitions still get the floor: a 1 % move is noise.
    assert compare_stat(s(100, 100.1), s(101, 101.1), True).verdict == "noise"
    assert NOISE_FLOOR == 0.02
    moved = compare_stat(s(100, 101), s(110, 111), True)
    assert (moved.verdict, moved.basis) == ("better", "measured")
    assert moved.change == pytest.approx(0.0995, abs=1e-3)
    # Lower is better for latency.
    assert compare_stat(s(100, 101), s(110, 111), False).verdict == "worse"
    # A single repetition: ±ASSUMED_NOISE assumed around it.
    assert compare_stat(s(100), s(100 * (1 + ASSUMED_NOISE)), True).verdict == "noise"
    single = compare_stat(s(100), s(125), True)
    assert (single.verdict, single.basis) == ("better", "assumed")
    assert compare_stat(None, s(1), True).verdict == "n/a"


def test_downsample_keeps_the_ends_and_the_peak() -> None:
    points = [(float(t), float(t % 97)) for t in range(1000)]
    kept = downsample(points, 120)
    assert len(kept) <= 121
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert max(y for _, y in kept) == 96.0


# --------------------------------------------------------------------------
# Loading and the command line


def test_load_results_errors_are_one_line(tmp_path: Path, sample: dict[str, Any]) -> None:
    with pytest.raises(ResultsError, match=r"results\.json: no such file$"):
        read_results(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"schema_version": 1,\n', encoding="utf-8")
    with pytest.raises(ResultsError, match=r"not valid JSON \(.* at line 2 column 1\)"):
        read_results(tmp_path / "bad")
    data = copy.deepcopy(sample)
    data["runs"][3]["rps"] = "fast"
    place(data, tmp_path / "invalid")
    with pytest.raises(ResultsError) as caught:
        read_results(tmp_path / "invalid")
    assert "does not match results.schema.json at runs/3/rps" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_rebuilds_a_run_and_the_index(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(run_dir)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(run_dir / "index.html"), str(run_dir.parent / "index.html")]
    assert (run_dir.parent / "index.html").is_file()
    # The file itself is accepted too.
    assert main([str(run_dir / "results.json")]) == 0


def test_cli_compare_and_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = place(SAMPLE, tmp_path / "reports" / "a")
    new = place(SAMPLE_B, tmp_path / "reports" / "b")
    out = tmp_path / "cmp.html"
    assert main([str(old), str(new), "--output", str(out)]) == 0
    assert out.is_file() and capsys.readouterr().out.strip() == str(out)
    assert main(["--index", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "reports" / "index.html").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "results.json: no such file"),
        ("[1, 2", "not valid JSON"),
        ('{"schema_version": 1}', "does not match results.schema.json at the top level"),
    ],
)
def test_cli_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    folder = tmp_path / "run"
    if content is not None:
        folder.mkdir()
        (folder / "results.json").write_text(content, encoding="utf-8")
    assert main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m runners.report: error: ")
    assert message in err
    assert not (folder / "index.html").exists()


def test_cli_usage_errors(tmp_path: Path) -> None:
    for argv in ([], ["a", "b", "c"], ["--index", str(tmp_path), "x"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runners.report", str(tmp_path / "missing")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith("missing/results.json: no such file")
    assert done.stderr.count("\n") == 1
