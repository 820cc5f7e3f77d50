"""The driver's orchestration against a model: no server, no Locust, no network.

``open_loop`` (the capacity search and its confirmation) and the matrix walk
(``runners.bench.main.walk`` with ``run_one``) run here against a model server of known
capacity: a fake host (``runners.hosting.Hosted``) and a fake load generator
(``runners.load.locust.LoadGenerator``) that answers each probe command with the
``ProbeResult`` such a server would give, the way pyperf and Locust test their
orchestrators without processes. What the real processes add is tested with them
(``tests/test_open_loop.py``, ``tests/test_bench.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from loadtests.window import ProbeCommand, ProbeResult, ProcessLoad
from runners.bench import main as bench_main
from runners.bench import options as bench_options
from runners.bench.console import PlainProgress
from runners.bench.matrix import plan
from runners.bench.measure import open_loop
from runners.bench.run import Context
from runners.hosting import Hosted, HostWindow, WindowFigures
from runners.load.locust import Aggregated, LocustOutcome, LocustPlan
from runners.results.record import NO_LATENCY
from runners.runtimes import axes
from runners.sampling import cpustat
from runners.sampling.memory import ProcessMemory, TreeSample
from runners.serving.registry import RUNNERS, Runner
from runners.serving.server import ServeConfig
from runners.serving.supervisor import RunnerError
from runners.vocabulary import GcMode, Variant

MIB = 2**20
SERVICE_MS = 5.0


def _hist(values_ms: list[float]) -> str:
    hist = HdrHistogram(1, 3_600_000_000, 3)
    for value in values_ms:
        hist.record_value(max(1, round(value * 1000)))
    return hist.encode().decode("ascii") if values_ms else ""


@dataclass
class ModelServer:
    """A server that serves ``capacity`` requests/s: below it every request takes
    ``SERVICE_MS``; above it a queue grows through the window."""

    capacity: float

    def result(self, command: ProbeCommand) -> ProbeResult:
        d = command.duration_s
        if command.mode == "closed":
            served = round(self.capacity * d)
            per_request = 1000.0 * command.users / self.capacity
            latencies = [per_request] * served
            scheduled = 0
        else:
            assert command.rate is not None
            scheduled = round(command.rate * d)
            served = min(scheduled, round(self.capacity * d))
            backlog_ms = 1000.0 * max(0.0, 1.0 / self.capacity - 1.0 / command.rate)
            latencies = [SERVICE_MS + i * backlog_ms for i in range(scheduled)]
        half = len(latencies) // 2
        return ProbeResult(
            seq=command.seq,
            mode="open" if command.mode == "open" else "closed",
            rate=command.rate,
            users=command.users,
            start=0.0,
            end=d,
            duration_s=d,
            scheduled=scheduled,
            dispatched=scheduled,
            free_dispatches=scheduled,
            late=0,
            pool_waits=0,
            successes=len(latencies),
            failures=0,
            timeouts=0,
            unsent=0,
            in_flight=0,
            served=served,
            late_fraction=0.0,
            latency_hdr=_hist(latencies),
            halves_hdr=(_hist(latencies[:half]), _hist(latencies[half:])),
            loadgen_cpu_seconds=0.1 * d,
            processes_expected=1,
            processes=(ProcessLoad(0, 1, 0.1 * d, 10.0, 0.0),),
        )


@dataclass
class FakeLoadGenerator:
    """Answers every probe with the model's result; records what it was asked."""

    server: ModelServer
    commands: list[ProbeCommand] = field(default_factory=list)
    pauses: list[int] = field(default_factory=list)
    finished: bool = False

    def probe(
        self,
        command: ProbeCommand,
        *,
        on_start: Callable[[], object] | None = None,
        on_end: Callable[[], object] | None = None,
        check: Callable[[], None] | None = None,
    ) -> ProbeResult:
        self.commands.append(command)
        if on_start is not None:
            on_start()
        if on_end is not None:
            on_end()
        return self.server.result(command)

    def pause(self, seq: int, drain_s: float, check: Callable[[], None] | None = None) -> None:
        self.pauses.append(seq)

    def finish(self) -> LocustOutcome:
        self.finished = True
        return LocustOutcome(Aggregated(0, 0, NO_LATENCY, None), exit_code=0)


def _sample(t: float) -> TreeSample:
    return TreeSample(
        t=t,
        processes=(
            ProcessMemory(100, "master", 20 * MIB, 10 * MIB, 8 * MIB, t),
            ProcessMemory(101, "worker", 60 * MIB, 40 * MIB, 30 * MIB, 2 * t),
        ),
    )


@dataclass
class FakeWindow:
    sample: bool
    opened: int = 0

    def open(self) -> None:
        self.opened += 1

    def close(self) -> WindowFigures:
        samples = (_sample(0.0), _sample(1.0)) if self.sample else ()
        return WindowFigures(server_cpu_percent=97.0, samples=samples)


@dataclass
class FakeServer:
    """A ``Hosted`` that is not on this host (so nothing reads the run's own CPUs)."""

    runner: Runner
    workers: int = 1
    threads: int | None = None
    windows: list[FakeWindow] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 9  # nothing listens: the idle check returns at once

    url = "http://127.0.0.1:9"
    argv: tuple[str, ...] = ("model",)
    startup_seconds = 0.1
    here = False
    local = None
    python = None
    django = None

    @property
    def variant(self) -> Variant:
        return self.runner.variant

    @property
    def gc(self) -> GcMode:
        return self.runner.gc

    def exit_status(self) -> str | None:
        return None

    def worker_pids(self) -> set[int]:
        return {101}

    def window(self, *, sample: bool, interval: float) -> HostWindow:
        window = FakeWindow(sample)
        self.windows.append(window)
        return window


@dataclass
class FakeHost:
    """Serves every runner as a model of ``capacity`` req/s; ``broken`` runners fail to start."""

    capacity: dict[str, float]
    broken: frozenset[str] = frozenset()
    served: list[str] = field(default_factory=list)

    def reserve(self, config: ServeConfig) -> tuple[ServeConfig, str | None]:
        return config, None

    @contextlib.contextmanager
    def serve(self, config: ServeConfig) -> Iterator[Hosted]:
        self.served.append(config.runner.name)
        if config.runner.name in self.broken:
            raise RunnerError(f"{config.runner.name} exited during start-up (status 3)")
        yield FakeServer(config.runner, workers=config.workers or 1)


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's CPU counters as a quiet machine's (the load generator's CPUs are read
    here even for a model server: this machine's own steal must not disturb the model)."""
    ticks = [0]

    def read(path: Path = cpustat.PROC_STAT) -> cpustat.CpuTimes:
        ticks[0] += 100
        cpus = range(os.cpu_count() or 2)
        return cpustat.CpuTimes(
            busy=dict.fromkeys(cpus, ticks[0] // 2),
            total=dict.fromkeys(cpus, ticks[0]),
            steal=dict.fromkeys(cpus, 0),
        )

    monkeypatch.setattr(cpustat, "read", read)


def _options(tmp_path: Path, *argv: str) -> bench_options.Options:
    options, _ = bench_options.parse_options(
        ["--quick", "--database", "sqlite", "--output", str(tmp_path / "out"), *argv]
    )
    assert options is not None
    return options


@pytest.mark.parametrize("capacity", [300.0, 4000.0])
def test_open_loop_finds_the_model_capacity_and_confirms_it(
    tmp_path: Path, capacity: float
) -> None:
    options = _options(tmp_path)
    loadgen = FakeLoadGenerator(ModelServer(capacity))
    server = FakeServer(RUNNERS["uvicorn"])
    found = open_loop(loadgen, server, options, check=lambda: None)
    cap = found.capacity
    assert cap is not None and cap.rps is not None
    assert 0.85 * capacity <= cap.rps <= 1.001 * capacity, cap.rps
    assert cap.confirmed and "unconfirmed" not in found.flags
    assert cap.bound == "server-cpu"  # the model's CPU was at 97%
    # The saturation probe, the search's probes, the confirmation: in order, each probe
    # from an idle server (a pause before every probe but the first).
    seqs = [c.seq for c in loadgen.commands]
    assert loadgen.commands[0].mode == "closed" and loadgen.commands[-1].mode == "open"
    assert loadgen.pauses == [s - 1 for s in seqs[1:]]
    assert loadgen.commands[0].warmup_s == options.warmup_s
    assert {c.warmup_s for c in loadgen.commands[1:]} == {0.5}
    assert len(cap.curve) == len(loadgen.commands) <= 2 + options.max_probes + 1
    assert loadgen.finished
    # Only the confirmation window sampled the server's memory; its figures are the run's.
    assert [w.sample for w in server.windows].count(True) == 1
    assert found.measurement.memory.pss_peak_bytes == 50 * MIB
    assert cap.rps_per_gib == pytest.approx(cap.rps / (50 * MIB / 2**30), rel=1e-3)


def test_the_matrix_walk_records_every_run_in_order_and_goes_on_after_a_failure(
    tmp_path: Path,
) -> None:
    options = _options(
        tmp_path, "--runners", "gunicorn-gthread,uvicorn", "--workloads", "json", "--repeat", "2"
    )
    host = FakeHost({"gunicorn-gthread": 1200.0, "uvicorn": 500.0}, broken=frozenset({"uvicorn"}))
    loadgens: list[FakeLoadGenerator] = []

    @contextlib.contextmanager
    def loadgen(plan_: LocustPlan) -> Iterator[FakeLoadGenerator]:
        runner = host.served[-1]
        loadgens.append(FakeLoadGenerator(ModelServer(host.capacity[runner])))
        yield loadgens[-1]

    runtimes = axes.build_runtimes(options.pythons, options.djangos)
    connection = bench_main.Connection(options)
    results = bench_main.open_results(connection, "test", runtimes)
    ctx = Context(
        options=options,
        out_dir=options.output,
        server_env={"DATABASE_URL": ""},
        runtimes=runtimes,
        hosting=host,
        loadgen=loadgen,
    )
    specs = plan(options)
    progress = PlainProgress(len(specs))
    bench_main.walk(specs, ctx, results, progress, bench_main.Clock())
    results.finish(interrupted=False)

    # Repeat-major: every cell once, then again; the broken server's runs are failed
    # cells with the reason, and the walk went on.
    assert host.served == ["gunicorn-gthread", "uvicorn", "gunicorn-gthread", "uvicorn"]
    written = json.loads((options.output / "results.json").read_text())
    runs = written["runs"]
    assert [(r["runner"], r["repeat"], r["status"]) for r in runs] == [
        ("gunicorn-gthread", 1, "ok"),
        ("uvicorn", 1, "failed"),
        ("gunicorn-gthread", 2, "ok"),
        ("uvicorn", 2, "failed"),
    ]
    assert "exited during start-up" in runs[1]["error"]
    for run in (runs[0], runs[2]):
        assert run["capacity"]["confirmed"] is True
        assert 0.85 * 1200 <= run["capacity"]["rps"] <= 1200 * 1.001
    assert len(loadgens) == 2 and all(g.finished for g in loadgens)
    assert not results.schema_errors
