"""``--fit-memory``'s search without a server: the idle bound, the trial budget, and the
bisection against made-up trial outcomes (every answer found within the budget)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from runners.bench import fitting
from runners.bench.matrix import RunSpec, matrix_block
from runners.bench.options import parse_options
from runners.bench.run import Context, base_run
from runners.bench.soak import SoakTarget
from runners.results import environment
from runners.results.criteria import FIT_MAX_WORKERS
from runners.results.document import CpuPlacement, ResultsFile
from runners.results.pods import Hold
from runners.results.record import Capacity, Run
from runners.runtimes.venvs import current_runtime
from runners.serving.registry import RUNNERS

MIB = 2**20


def test_the_idle_footprint_bounds_the_workers() -> None:
    assert fitting.upper_bound(512 * MIB, 100 * MIB, 40 * MIB) == 10
    assert fitting.upper_bound(512 * MIB, 500 * MIB, 40 * MIB) == 0
    assert fitting.upper_bound(512 * MIB, 10 * MIB, 1 * MIB) == FIT_MAX_WORKERS
    assert fitting.upper_bound(512 * MIB, 100 * MIB, 0) == FIT_MAX_WORKERS


@pytest.mark.parametrize(("bound", "trials"), [(0, 0), (1, 1), (2, 2), (3, 2), (10, 4), (16, 5)])
def test_the_trial_budget_is_logarithmic(bound: int, trials: int) -> None:
    assert fitting.trial_budget(bound) == trials


def _context(tmp_path: Path) -> tuple[Context, ResultsFile]:
    options, _ = parse_options(
        [
            *("--runners", "gunicorn-sync-preload", "--workloads", "json", "--quick"),
            *("--database", "sqlite", "--output", str(tmp_path / "out")),
        ]
    )
    assert options is not None
    options = dataclasses.replace(options, fit_memory=256 * MIB, hold=SoakTarget(duration_s=5.0))
    ctx = Context(options, tmp_path / "out", {}, {(None, None): current_runtime()})
    results = ResultsFile(
        tmp_path / "out" / "results.json",
        command="test",
        environment=environment.capture(
            placement=CpuPlacement(server_cpus=(0,), loadgen_cpus=(1,)),
            database_url=None,
            redis_url=None,
        ),
        matrix=matrix_block(options),
    )
    return ctx, results


def _hook(ctx: Context, answer: int, tried: list[int]) -> fitting.RunHook:
    """Trials that fit up to ``answer`` workers (more: OOM-killed in the hold)."""

    def run(spec: RunSpec, _go: Callable[[], Run]) -> Run:
        assert spec.workers is not None and spec.pod.memory_limit == 256 * MIB
        tried.append(spec.workers)
        fits = spec.workers <= answer
        hold = Hold(
            rate_rps=100.0 * spec.workers,
            duration_s=5.0,
            requests=500,
            failures=0,
            working_set_peak_bytes=(60 + 30 * spec.workers) * MIB,
            oom_kills=0 if fits else 3,
            fits=fits,
        )
        capacity = Capacity(
            slo_p99_ms=100, rps=100.0 * spec.workers, rps_per_gib=None, bound="server-cpu"
        )
        return dataclasses.replace(base_run(spec, ctx), hold=hold, capacity=capacity)

    return run


@pytest.mark.parametrize("answer", range(FIT_MAX_WORKERS + 1))
def test_the_bisection_finds_the_most_workers_that_fit_within_its_budget(
    tmp_path: Path, answer: int
) -> None:
    ctx, results = _context(tmp_path)
    tried: list[int] = []
    runner = RUNNERS["gunicorn-sync-preload"]
    found = fitting.fit(runner, "json", FIT_MAX_WORKERS, ctx, results, _hook(ctx, answer, tried))
    assert found.workers == (answer or None)
    assert len(tried) <= fitting.trial_budget(FIT_MAX_WORKERS)
    assert len(set(tried)) == len(tried)  # never the same count twice
    assert [r.id for r in results.runs] == [
        f"gunicorn-sync-preload/json/open/1/w{n}" for n in tried
    ]
    if answer:
        assert found.capacity_rps == 100.0 * answer
        assert found.working_set_peak_bytes == (60 + 30 * answer) * MIB
    assert [t.fits for t in found.trials] == [n <= answer for n in tried]


def test_a_run_whose_master_the_oom_killer_took_fails_flagged(tmp_path: Path) -> None:
    import contextlib
    from collections.abc import Iterator

    from runners.bench.probing import ServerDied
    from runners.bench.run import run_one
    from runners.hosting import Hosted
    from runners.results.document import Results
    from runners.results.schema import validation_errors
    from runners.serving.server import ServeConfig

    class DyingHost:
        def reserve(self, config: ServeConfig) -> tuple[ServeConfig, str | None]:
            return config, None

        @contextlib.contextmanager
        def serve(self, config: ServeConfig) -> Iterator[Hosted]:
            raise ServerDied("the server died during the run (killed by SIGKILL; 3 OOM kills)", 3)
            yield  # pragma: no cover

    ctx, results = _context(tmp_path)
    ctx = dataclasses.replace(ctx, hosting=DyingHost())
    run = run_one(RunSpec(RUNNERS["gunicorn-sync-preload"], "json", 0, 1, workers=3), ctx)
    assert run.status == "failed" and run.flags == ("oom-killed",)
    assert run.notes and run.notes[0].startswith("oom-killed: ")
    results.add_run(run)
    assert validation_errors(results.results.to_dict()) == []
    assert Results.from_dict(results.results.to_dict()).runs[0].flags == ("oom-killed",)
