"""The worker sweep's fast tier: ``--workers``/``--threads`` lists and ``--sweep``
parsed and expanded into runs, their ids, cells, report labels and the planner's
observations told apart by worker and thread count. (The real sweep on servers:
tests/test_plan_sweep.py.)"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runners.bench import main
from runners.bench import matrix as bench_matrix
from runners.bench import options as bench_options
from runners.bench.console import describe_plan
from runners.bench.estimate import estimate_s, run_estimate_s
from runners.bench.matrix import run_count
from runners.plan.observe import observations
from runners.report.ranking import runner_label
from runners.results.cells import aggregate, summarize
from runners.results.document import Results
from runners.results.record import Run
from runners.results.schema import SCHEMA_PATH
from runners.serving.cpus import Placement
from runners.serving.registry import RUNNERS, sweep_counts

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = json.loads((DATA / "sample_results.json").read_text())
CPUS = ("--server-cpus", "0", "--loadgen-cpus", "1")


def parse(*argv: str) -> bench_options.Options:
    options, _ = bench_options.parse_options([*argv, *CPUS])
    assert options is not None
    return options


def ids(options: bench_options.Options) -> list[str]:
    return [spec.id for spec in bench_matrix.plan(options)]


# --- parsing ------------------------------------------------------------------------------------


def test_lists_of_workers_and_threads_are_parsed_in_order_without_duplicates() -> None:
    options = parse("--workers", "1,2,4,2", "--threads", "8,2")
    assert options.workers == (1, 2, 4)
    assert options.threads == (8, 2)
    assert parse().workers == () and parse().threads == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "1,,2"], "--workers: malformed list"),
        (["--workers", "1,0"], "--workers: 0 is not positive"),
        (["--threads", "2,x"], "--threads: 'x' is not a whole number"),
        (["--sweep", "--workers", "2"], "--sweep: it picks"),
        (["--sweep", "--threads", "2"], "give --threads or --sweep"),
    ],
)
def test_bad_sweeps_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, lines
    assert message in lines[0]


# --- the matrix ---------------------------------------------------------------------------------


def test_a_count_multiplies_only_the_runners_it_applies_to() -> None:
    options = parse(
        "--runners",
        "gunicorn-sync-preload,waitress,gunicorn-gthread,daphne",
        "--workloads",
        "json",
        "--workers",
        "1,2",
        "--threads",
        "2,4",
    )
    assert ids(options) == [
        "gunicorn-sync-preload/json/open/1/w1",
        "gunicorn-sync-preload/json/open/1/w2",
        "waitress/json/open/1/t2",
        "waitress/json/open/1/t4",
        "gunicorn-gthread/json/open/1/w1/t2",
        "gunicorn-gthread/json/open/1/w1/t4",
        "gunicorn-gthread/json/open/1/w2/t2",
        "gunicorn-gthread/json/open/1/w2/t4",
        "daphne/json/open/1",
    ]
    specs = bench_matrix.plan(options)
    assert [(s.workers, s.threads) for s in specs][:3] == [(1, None), (2, None), (None, 2)]
    assert len({s.stem for s in specs}) == len(specs)
    assert run_count(options) == len(specs) == 9


def test_one_count_is_an_override_not_a_sweep() -> None:
    options = parse("--runners", "gunicorn-sync,waitress", "--workloads", "json", "--workers", "2")
    specs = bench_matrix.plan(options)
    assert [s.id for s in specs] == ["gunicorn-sync/json/open/1", "waitress/json/open/1"]
    assert [s.workers for s in specs] == [2, None]
    block = bench_matrix.matrix_block(options)
    assert block.workers == 2 and block.worker_counts is None
    swept = bench_matrix.matrix_block(parse("--workers", "1,3"))
    assert swept.workers is None and swept.worker_counts == (1, 3)


def test_sweep_counts_follow_the_rule_per_family() -> None:
    def workers(name: str, cpus: int) -> list[int | None]:
        return [w for w, _ in sweep_counts(RUNNERS[name], cpus)]

    assert workers("gunicorn-sync", 1) == [1, 2, 3]
    assert workers("gunicorn-sync", 4) == [1, 2, 4, 9]
    assert workers("uwsgi", 8) == [1, 2, 4, 8, 17]
    assert workers("uvicorn", 1) == [1]
    assert workers("uvicorn", 6) == [1, 2, 4, 6]
    assert sweep_counts(RUNNERS["gunicorn-gthread"], 1) == [(1, t) for t in (1, 2, 4, 8)]
    assert sweep_counts(RUNNERS["gunicorn-gthread"], 4) == [
        *((1, t) for t in (1, 2, 4, 8)),
        (2, 4),
        (4, 4),
    ]
    assert sweep_counts(RUNNERS["waitress"], 4) == [(None, t) for t in (1, 2, 4, 8)]
    assert sweep_counts(RUNNERS["daphne"], 4) == [(None, None)]


def test_sweep_expands_per_runner_and_the_estimate_counts_every_run() -> None:
    runners = ("--runners", "gunicorn-sync-preload,gunicorn-gthread,uvicorn", "--workloads", "json")
    plain = parse(*runners)
    swept = parse(*runners, "--sweep")
    # One server CPU: pre-fork 1,2,3 workers; gthread 1,2,4,8 threads; uvicorn n=1: one run.
    assert ids(swept) == [
        "gunicorn-sync-preload/json/open/1/w1",
        "gunicorn-sync-preload/json/open/1/w2",
        "gunicorn-sync-preload/json/open/1/w3",
        "gunicorn-gthread/json/open/1/t1",
        "gunicorn-gthread/json/open/1/t2",
        "gunicorn-gthread/json/open/1/t4",
        "gunicorn-gthread/json/open/1/t8",
        "uvicorn/json/open/1",
    ]
    assert run_count(swept) == 8 and run_count(plain) == 3
    per_run = run_estimate_s(swept, "json")
    assert estimate_s(swept) - estimate_s(plain) == pytest.approx(5 * per_run)
    text = describe_plan(swept)
    assert text.startswith("Plan: 8 runs")
    assert "gunicorn-sync-preload workers 1,2,3; gunicorn-gthread threads 1,2,4,8" in text


# --- ids, cells, labels, the planner ------------------------------------------------------------


def sweep_run(workers: int, repeat: int, rps: float, *, ok: bool = True) -> dict[str, Any]:
    run: dict[str, Any] = copy.deepcopy(SAMPLE["runs"][0])
    run.update(
        id=f"gunicorn-sync-preload/json/16/{repeat}/w{workers}",
        runner="gunicorn-sync-preload",
        family="prefork",
        workload="json",
        users=16,
        repeat=repeat,
        workers=workers,
        threads=None,
        rps=rps,
        rps_per_gib=rps * 4,
    )
    run["memory"]["pss_peak_bytes"] = (40 + 20 * workers) * 2**20
    if not ok:
        run.update(status="failed", error="boom")
    return run


def test_sweep_cells_stay_distinct_and_are_labelled_with_their_count() -> None:
    runs = [Run.from_dict(sweep_run(w, r, 100.0 * w + r)) for r in (1, 2) for w in (1, 2, 3)]
    assert runs[1].sweep == ("w2",) and runs[1].qualifiers == ["w2"]
    cells = aggregate(runs)
    assert [(c.workers, len(c.runs)) for c in cells] == [(1, 2), (2, 2), (3, 2)]
    assert [s.id for s in summarize(cells)] == [
        "gunicorn-sync-preload/json/16/w1",
        "gunicorn-sync-preload/json/16/w2",
        "gunicorn-sync-preload/json/16/w3",
    ]
    assert summarize(cells)[2].rps_mean == pytest.approx(301.5)
    assert runner_label(cells[0], False) == "gunicorn-sync-preload (1 worker)"
    assert runner_label(cells[2], False) == "gunicorn-sync-preload (3 workers)"


def test_the_planner_reads_a_sweep_from_one_folder() -> None:
    doc = copy.deepcopy(SAMPLE)
    doc["runs"] = [sweep_run(w, 1, 100.0 * w) for w in (1, 2, 3)]
    doc.pop("micro", None)
    obs = observations([Results.from_dict(doc)], None)
    assert [(o.runner, o.workers) for o in obs] == [("gunicorn-sync-preload", n) for n in (1, 2, 3)]
    assert [o.capacity_rps for o in obs] == [100.0, 200.0, 300.0]


def test_a_sweep_document_matches_the_schema_and_reads_back() -> None:
    doc = copy.deepcopy(SAMPLE)
    doc["runs"] = [sweep_run(w, 1, 100.0 * w) for w in (1, 2, 3)]
    doc["cells"] = [c.to_dict() for c in summarize(aggregate(map(Run.from_dict, doc["runs"])))]
    matrix = bench_matrix.matrix_block(parse("--workers", "1,2,3")).to_dict()
    doc["matrix"] = {**doc["matrix"], **matrix}
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    back = Results.from_dict(doc)
    assert back.matrix.worker_counts == (1, 2, 3) and back.matrix.workers is None
    assert back.to_dict()["matrix"]["worker_counts"] == [1, 2, 3]


def test_a_threaded_sweep_on_two_cpus_also_varies_workers_at_the_runners_threads() -> None:
    options = parse("--runners", "gunicorn-gthread", "--workloads", "json", "--sweep")
    options = dataclasses.replace(options, placement=Placement(server=(0, 1), loadgen=(1,)))
    assert ids(options) == [
        *(f"gunicorn-gthread/json/open/1/w1/t{t}" for t in (1, 2, 4, 8)),
        "gunicorn-gthread/json/open/1/w2/t4",
    ]
    assert "gunicorn-gthread workers x threads 1x1,1x2,1x4,1x8,2x4" in describe_plan(options)
    crossed = parse("--runners", "gunicorn-gthread", "--workers", "1,2", "--threads", "2,4")
    assert "gunicorn-gthread workers 1,2 x threads 2,4" in describe_plan(crossed)
