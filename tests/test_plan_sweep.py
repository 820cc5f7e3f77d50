"""The capacity planner on a real sweep: gunicorn-sync-preload and gunicorn-sync at
1, 2 and 3 workers (three short bench invocations, one per --workers, as a
sweep is made until the driver takes a list), then ``python -m runners.plan``
on the three folders.

Summed PSS grows with every worker; with --preload the master holds the app
(a larger base) and the workers share it copy-on-write (a smaller slope) than
without, where every worker imports Django itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.plan.cli import main
from runners.plan.model import build_models
from runners.plan.observe import observations
from runners.results.document import read_results
from runners.results.figures import MIB
from tests.servers import run_bench

WORKERS = (1, 2, 3)
RUNNERS = ("gunicorn-sync", "gunicorn-sync-preload")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    data_dir = tmp_path_factory.mktemp("plan-data")
    root = tmp_path_factory.mktemp("plan-sweep")
    folders = []
    for n in WORKERS:
        bench = run_bench(
            root / f"w{n}",
            data_dir,
            *("--runners", ",".join(RUNNERS), "--workloads", "json", "--workers", str(n)),
            *("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "2"),
            "--no-report",
        )
        assert bench.proc.returncode == 0, bench.proc.stdout + bench.proc.stderr
        folders.append(bench.out)
    yield folders


@pytest.mark.servers
@pytest.mark.slow
def test_a_real_sweep_fits_the_copy_on_write_picture(sweep: list[Path]) -> None:
    obs = observations([read_results(f) for f in sweep], None)
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

    assert main([*(str(f) for f in sweep), "--cores", "16", "--memory", "32GiB"]) == 0
    doc = json.loads((sweep[0] / "plan.json").read_text())
    rows = {r["runner"]: r for r in doc["workloads"][0]["rows"]}
    assert set(rows) <= set(RUNNERS)
    for row in rows.values():
        assert row["memory_bytes"] <= doc["host"]["budget_bytes"]
    assert {v["held_out"]["workers"] for v in doc["validation"]} == {3}
    assert 'id="capacity-plan"' in (sweep[0] / "index.html").read_text()
