"""The capacity planner on a real sweep: gunicorn-sync-preload and gunicorn-sync at
1, 2 and 3 workers, one bench invocation (``--workers 1,2,3``: a run per count),
then ``python -m runners.plan`` on its one folder.

Summed PSS grows with every worker; with --preload the master holds the app
(a larger base) and the workers share it copy-on-write (a smaller slope) than
without, where every worker imports Django itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from runners.plan.cli import main
from runners.plan.model import build_models
from runners.plan.observe import observations
from runners.results.document import read_results
from runners.results.figures import MIB
from tests.servers import BenchRun, run_bench

WORKERS = (1, 2, 3)
RUNNERS = ("gunicorn-sync", "gunicorn-sync-preload")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchRun]:
    root = tmp_path_factory.mktemp("plan-sweep")
    bench = run_bench(
        root / "sweep",
        tmp_path_factory.mktemp("plan-data"),
        *("--runners", ",".join(RUNNERS), "--workloads", "json"),
        *("--workers", ",".join(map(str, WORKERS))),
        *("--load", "closed", "--users", "4", "--warmup", "0.5", "--duration", "1.5"),
        "--no-report",
    )
    assert bench.proc.returncode == 0, bench.proc.stdout + bench.proc.stderr
    yield bench


@pytest.mark.servers
@pytest.mark.slow
def test_a_real_sweep_fits_the_copy_on_write_picture(sweep: BenchRun) -> None:
    assert "Plan: 6 runs" in sweep.proc.stdout
    assert "Sweep: gunicorn-sync workers 1,2,3; gunicorn-sync-preload workers 1,2,3" in (
        sweep.proc.stdout
    )
    folder = sweep.out
    results = read_results(folder)
    assert [r.id for r in results.runs] == [
        f"{runner}/json/4/1/w{n}" for runner in RUNNERS for n in WORKERS
    ]
    assert [r.workers for r in results.runs] == [*WORKERS, *WORKERS]
    assert results.matrix.worker_counts == WORKERS
    obs = observations([results], None)
    assert {(o.runner, o.workers) for o in obs} == {(r, n) for r in RUNNERS for n in WORKERS}
    fits = {m.runner: m.memory for m in build_models(obs)}
    plain, preload = fits["gunicorn-sync"], fits["gunicorn-sync-preload"]
    assert plain is not None and preload is not None
    report = (
        f"gunicorn-sync {plain.base / MIB:.1f} + n x {plain.per_worker / MIB:.1f} MiB; "
        f"preload {preload.base / MIB:.1f} + n x {preload.per_worker / MIB:.1f} MiB"
    )
    assert preload.per_worker > 0, report
    assert preload.base > plain.base, report
    assert preload.per_worker < plain.per_worker, report

    assert main([str(folder), "--cores", "16", "--memory", "32GiB"]) == 0
    doc = json.loads((folder / "plan.json").read_text())
    rows = {r["runner"]: r for r in doc["workloads"][0]["rows"]}
    assert set(rows) <= set(RUNNERS)
    for row in rows.values():
        assert row["memory_bytes"] <= doc["host"]["budget_bytes"]
    assert {v["held_out"]["workers"] for v in doc["validation"]} == {3}
    html = (folder / "index.html").read_text()
    assert 'id="capacity-plan"' in html
    assert "gunicorn-sync-preload (3 workers)" in html
