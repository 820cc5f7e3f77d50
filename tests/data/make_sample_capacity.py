"""Write ``tests/data/sample_bands.json``: an open-loop capacity invocation whose
runs carry the capacity's band, the probes' retakes and the host's steal.

Four runners x json and upstream x 2 repeats. Each run's curve comes from the
suite's own capacity search (``runners.bench.capacity.search``, ``bound`` and
``describe``, with its retakes) probing a model server (a capacity, a service time
and a queue, with a little seeded noise, and on a few probes a hypervisor that
steals the CPUs), and the run itself is built the way the driver builds it
(``Measurement.fill``, ``probe_record``, the band of ``runners.bench.measure``,
``ResultsFile``), so the file has the driver's exact shape and passes the schema.
What it holds on purpose:

- bounds: server-cpu (json, the async runners on upstream), server-slots
  (gunicorn-sync and gunicorn-gthread on upstream), loadgen (gunicorn-gthread
  on json: one Locust core cannot offer more than about 4,500 req/s, so its
  capacity is a lower bound, and the highest per GiB);
- uvicorn and granian-asgi on json: bands that overlap (a tie);
- steal: probes of uvicorn/upstream/open/1 disturbed (retaken, one of them
  disputed), gunicorn-sync/json/open/2's window over the threshold (flagged
  ``steal``);
- uvicorn/upstream/open/2 is unconfirmed (its confirmation window missed the
  target), gunicorn-sync/upstream/open/2 failed: two cells to run again.

``tests/data/sample_capacity.json`` is the same invocation as an earlier version of
this script wrote it, before the bands and the retakes (no ``low_rps``, ``retaken``
or steal figures): kept as it is, the old-format sample that must still render.

Run it from the repository root: ``python tests/data/make_sample_capacity.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

from runners.bench import capacity
from runners.bench.measure import probe_record
from runners.results import latency as hdr
from runners.results.criteria import LOADGEN_CPU_PERCENT, STEAL_SHARE
from runners.results.document import CpuPlacement, Environment, Matrix, ResultsFile
from runners.results.figures import MIB, per_gib
from runners.results.flags import notes_for
from runners.results.record import (
    Capacity,
    Interference,
    Latency,
    Measurement,
    Memory,
    MemorySample,
    ProcessSample,
    PythonInfo,
    Run,
)
from runners.serving.registry import get_runner
from runners.vocabulary import Load

OUT = Path(__file__).with_name("sample_bands.json")
SLO_MS = 100.0
PROBE_S = 5.0
WINDOW_S = 10.0
WARMUP_S = 3.0
UPSTREAM_MS = 50
RUNNERS = ("gunicorn-sync", "gunicorn-gthread", "uvicorn", "granian-asgi")
WORKLOADS = ("json", "upstream")
PYTHON = PythonInfo(
    implementation="CPython", version="3.11.11", path="/work/main/.tox/bench/bin/python"
)


@dataclass(frozen=True)
class Model:
    """A server: ``rate`` req/s at most; p99 = base + queue x rho / (1 - rho)."""

    rate: float
    p50: float
    p99: float
    queue: float
    cpu: float
    """Server CPU percent when saturated (low for a server out of workers or threads)."""
    slots: int | None
    processes: tuple[tuple[str, float, float, float], ...]
    """(role, RSS, PSS, USS) in MiB."""
    loadgen_limit: float = 4_600.0
    """Offered req/s at which one Locust core is saturated."""


MASTER = ("master", 38.0, 14.0, 7.0)
MODELS: dict[tuple[str, str], Model] = {
    ("gunicorn-sync", "json"): Model(
        2_900, 1.1, 3.0, 9.6, 99, 3, (MASTER, *[("worker", 66.0, 53.0, 47.0)] * 3)
    ),
    ("gunicorn-gthread", "json"): Model(
        5_400, 0.8, 2.2, 4.0, 99, 4, (MASTER, ("worker", 72.0, 58.0, 52.0))
    ),
    ("uvicorn", "json"): Model(1_800, 1.6, 4.0, 6.0, 99, None, (("worker", 76.0, 63.0, 57.0),)),
    ("granian-asgi", "json"): Model(
        1_950, 1.5, 3.5, 7.0, 99, None, (("master", 12.0, 6.0, 4.0), ("worker", 76.0, 63.0, 57.0))
    ),
    ("gunicorn-sync", "upstream"): Model(
        57.7, 52.0, 58.0, 10.0, 21, 3, (MASTER, *[("worker", 67.0, 54.0, 48.0)] * 3)
    ),
    ("gunicorn-gthread", "upstream"): Model(
        76.9, 52.0, 60.0, 9.0, 27, 4, (MASTER, ("worker", 75.0, 61.0, 55.0))
    ),
    ("uvicorn", "upstream"): Model(360, 53.0, 56.0, 4.0, 99, None, (("worker", 79.0, 66.0, 60.0),)),
    ("granian-asgi", "upstream"): Model(
        390, 53.0, 55.0, 4.0, 99, None, (("master", 12.0, 6.0, 4.0), ("worker", 80.0, 67.0, 61.0))
    ),
}


def jitter(rng: random.Random, value: float, share: float = 0.012) -> float:
    return value * (1.0 + rng.uniform(-share, share))


STOLEN: dict[tuple[str, str, int], dict[int, float]] = {
    # (runner, workload, repeat): {open probe call (retakes counted): steal share}
    ("uvicorn", "upstream", 1): {1: 0.12, 4: 0.14},
    ("granian-asgi", "json", 1): {1: 0.08, 2: 0.09, 4: 0.1},
}
"""Probes on which the hypervisor took the CPUs: each fails, and the search retakes it."""
WINDOW_STEAL: dict[tuple[str, str, int], float] = {("gunicorn-sync", "json", 2): 0.071}
"""Confirmation windows with steal over the threshold: the run is flagged ``steal``."""


def observe(
    model: Model,
    rng: random.Random,
    mode: Load,
    rate: float | None,
    users: int,
    steal: float | None = None,
) -> capacity.ProbeObservation:
    """What the model server does for one probe (``steal``: the share of its CPUs'
    time the hypervisor took: the latency suffers, not the server)."""
    if mode == "closed":
        # A closed loop pushing the server: all it can do, latency = users / rate.
        achieved = jitter(rng, model.rate * 0.99)
        wait = 1000.0 * users / achieved
        return capacity.ProbeObservation(
            mode="closed",
            offered_rps=None,
            achieved_rps=round(achieved, 1),
            p50_ms=round(jitter(rng, wait * 0.95), 1),
            p99_ms=round(jitter(rng, wait * 1.6), 1),
            requests=round(achieved * PROBE_S),
            failures=0,
            users=users,
            server_cpu_percent=round(jitter(rng, model.cpu, 0.01), 1),
            loadgen_cpu_percent=round(min(99.0, 88.0 * achieved / model.loadgen_limit), 1),
            loadgen_process_percent=round(min(99.0, 90.0 * achieved / model.loadgen_limit), 1),
        )
    assert rate is not None
    rho = rate / model.rate
    loadgen = 88.0 * rate / model.loadgen_limit
    late = 0.0 if loadgen < 90.0 else min(0.4, (loadgen - 88.0) / 40.0)
    if rho < 1.0:
        achieved = jitter(rng, rate, 0.004)
        # The queue grows steeply near saturation, to what a short overload gives.
        p99 = min(model.p99 + model.queue * rho / (1.0 - rho), 250.0 + model.p99)
        p50 = min(model.p50 + model.queue * 0.15 * rho / (1.0 - rho), 120.0 + model.p50)
    else:
        # Overloaded: the backlog grows through the probe.
        achieved = jitter(rng, model.rate * 0.99, 0.006)
        backlog_s = PROBE_S * (1.0 - model.rate / rate)
        p99 = 1000.0 * backlog_s * 0.98 + model.p99 * 4
        p50 = 1000.0 * backlog_s * 0.5 + model.p50 * 4
    if late:
        # The generator fell behind: latency from the intended send time shows it.
        p99 = max(p99, 40.0 + 900.0 * late)
    over = 0.0 if p99 <= SLO_MS else min(0.5, 0.01 + (p99 - SLO_MS) / 1000.0)
    if steal:
        # The vCPUs were not run for a while: a stretch of requests waited for them.
        p99 = max(p99, SLO_MS * 1.9)
        over = max(over, 0.03)
    return capacity.ProbeObservation(
        mode="open",
        offered_rps=round(rate, 1),
        nominal_rps=round(rate, 1),
        achieved_rps=round(min(achieved, rate * (1.0 - late)), 1),
        p50_ms=round(jitter(rng, p50), 1),
        p99_ms=round(jitter(rng, p99), 1),
        requests=round(rate * PROBE_S),
        failures=0,
        users=users,
        server_cpu_percent=round(min(100.0, jitter(rng, model.cpu * min(rho, 1.0), 0.01)), 1),
        loadgen_cpu_percent=round(min(99.5, loadgen), 1),
        loadgen_process_percent=round(min(99.5, loadgen * 1.02), 1),
        late_share=round(late, 3),
        over_target_share=round(over, 4),
        steal_share=round(steal if steal else rng.uniform(0.0, 0.01), 4),
        interference_share=round(rng.uniform(0.0, 0.02), 4),
    )


class Prober:
    """The search's probe function on a model server: the open probe calls counted, so
    that the calls in ``STOLEN`` are taken while the hypervisor steals the CPUs."""

    def __init__(self, model: Model, rng: random.Random, stolen: dict[int, float]) -> None:
        self.model = model
        self.rng = rng
        self.stolen = stolen
        self.calls = 0

    def __call__(self, mode: Load, rate: float | None, users: int) -> capacity.ProbeObservation:
        steal = None
        if mode == "open":
            steal = self.stolen.get(self.calls)
            self.calls += 1
        return observe(self.model, self.rng, mode, rate, users, steal)


def window_histogram(rng: random.Random, p50: float, p99: float, count: int) -> HdrHistogram:
    """Latencies (lognormal through p50 and p99), microseconds, as the load generator records."""
    hist = HdrHistogram(1, 3_600_000_000, 3)
    sigma = math.log(p99 / p50) / 2.326
    for _ in range(count):
        hist.record_value(max(1, round(1000.0 * rng.lognormvariate(math.log(p50), sigma))))
    return hist


def memory(model: Model, rng: random.Random, pid: int) -> Memory:
    samples = []
    for second in range(int(WINDOW_S)):
        grow = 1.0 + 0.002 * second
        processes = tuple(
            ProcessSample(
                pid=pid + i,
                role="master" if role == "master" else "worker",
                rss=round(jitter(rng, rss * grow, 0.002) * MIB),
                pss=round(jitter(rng, pss * grow, 0.002) * MIB),
                uss=round(jitter(rng, uss * grow, 0.002) * MIB),
            )
            for i, (role, rss, pss, uss) in enumerate(model.processes)
        )
        processes = tuple(dataclasses.replace(p, shared=p.rss - p.uss) for p in processes)
        samples.append(
            MemorySample(
                t=float(second),
                rss=sum(p.rss for p in processes),
                pss=sum(p.pss for p in processes),
                uss=sum(p.uss for p in processes),
                processes=processes,
            )
        )

    def peak(name: str) -> int:
        return int(max(getattr(s, name) for s in samples))

    def mean(name: str) -> int:
        return round(sum(int(getattr(s, name)) for s in samples) / len(samples))

    return Memory(
        rss_peak_bytes=peak("rss"),
        rss_mean_bytes=mean("rss"),
        pss_peak_bytes=peak("pss"),
        pss_mean_bytes=mean("pss"),
        uss_peak_bytes=peak("uss"),
        uss_mean_bytes=mean("uss"),
        processes=len(model.processes),
        sampler_cpu_percent=0.6,
        samples=tuple(samples),
    )


def base_run(runner_name: str, workload: str, repeat: int, minute: int) -> Run:
    runner = get_runner(runner_name)
    model = MODELS[(runner_name, workload)]
    workers = sum(1 for p in model.processes if p[0] == "worker")
    return Run(
        id=f"{runner_name}/{workload}/open/{repeat}",
        runner=runner.name,
        family=runner.family,
        server=runner.server,
        interface=runner.interface,
        variant=runner.variant,
        workers=workers,
        threads=runner.threads,
        gc=runner.gc,
        middleware="minimal",
        python=PYTHON,
        django="5.2.8",
        workload=workload,
        users=0,
        repeat=repeat,
        status="ok",
        started_at=f"2026-11-30T10:{minute:02d}:05+00:00",
        warmup_s=WARMUP_S,
        duration_s=WINDOW_S,
        server_cpus=(0,),
        loadgen_cpus=(1,),
        load="open",
    )


def measure(run: Run, rng: random.Random, pid: int, unconfirmed: bool) -> Run:
    model = MODELS[(run.runner, run.workload)]
    target = capacity.Target(slo_p99_ms=SLO_MS)
    key = (run.runner, run.workload, run.repeat)
    found = capacity.search(Prober(model, rng, STOLEN.get(key, {})), target)
    bound = capacity.bound(found, model.slots)
    reason = capacity.describe(found, bound)
    assert found.passed is not None and found.rate is not None
    # The confirmation window: the highest passing rate again, for WINDOW_S.
    again = observe(model, rng, "open", found.rate, found.passed.users)
    if unconfirmed:
        again = dataclasses.replace(again, p99_ms=round(SLO_MS * 1.08, 1), over_target_share=0.02)
    p50, p99 = again.p50_ms or 1.0, again.p99_ms or 2.0
    requests = round(found.rate * WINDOW_S)
    hist = window_histogram(rng, p50, p99, requests)
    window = hdr.latency(hist)
    mem = memory(model, rng, pid)
    rho = min(1.0, found.rate / model.rate)
    cpu_seconds = round(WINDOW_S * model.cpu * rho / 100.0, 2)
    loadgen_s = round(WINDOW_S * min(0.95, 0.88 * found.rate / model.loadgen_limit), 2)
    window_steal = WINDOW_STEAL.get(key, rng.uniform(0.0, 0.02))
    others = rng.uniform(0.0, 0.02)
    measured = Measurement(
        interference=Interference(
            server_cpu_seconds=round(others * WINDOW_S, 2),
            loadgen_cpu_seconds=round(others * WINDOW_S / 2, 2),
            share=round(others, 4),
            server_share=round(others, 4),
            loadgen_share=round(others / 2, 4),
            unpinned_cpu_seconds=0.04,
            server_steal_share=round(window_steal, 4),
            loadgen_steal_share=round(window_steal / 3, 4),
        ),
        window_s=WINDOW_S,
        requests=requests,
        failures=0,
        latency=Latency(
            p50=window.p50,
            p90=window.p90,
            p95=window.p95,
            p99=window.p99,
            max=window.max,
            mean=round(window.mean or 0.0, 2),
        ),
        locust_rps=round(requests / (WINDOW_S + 0.05), 1),
        memory=mem,
        cpu_seconds=cpu_seconds,
        loadgen_cpu_seconds=loadgen_s,
        loadgen_cpus=1,
        server_cpus=1,
        latency_hdr=hdr.encode(hist),
        offered_rps=found.rate,
        timeouts=0,
    )
    filled = measured.fill(run)
    loadgen = filled.loadgen_cpu_percent
    flags = [
        *(["loadgen-bound"] if loadgen is not None and loadgen > LOADGEN_CPU_PERCENT else []),
        *(["failures"] if measured.failures else []),
        *(["steal"] if window_steal > STEAL_SHARE else []),
    ]
    if bound == "loadgen" and "loadgen-bound" not in flags:
        flags.append("loadgen-bound")
    if unconfirmed:
        flags.append("unconfirmed")
    # The band, as runners.bench.measure records it.
    low = found.rate if not unconfirmed else None
    high = found.failed.offered_rps if found.failed is not None else None
    return dataclasses.replace(
        filled,
        flags=tuple(flags),
        notes=tuple(notes_for(flags)),
        server_command=("python", "-m", run.runner.split("-")[0]),
        startup_s=round(jitter(rng, 1.4, 0.1), 2),
        capacity=Capacity(
            slo_p99_ms=SLO_MS,
            rps=filled.rps,
            rps_per_gib=per_gib(filled.rps, mem.pss_peak_bytes),
            offered_rps=found.rate,
            confirmed=not unconfirmed,
            bound=bound,
            reason=reason,
            saturation_rps=found.saturation.achieved_rps if found.saturation else None,
            curve=tuple(probe_record(o, target) for o in [*found.curve, again]),
            low_rps=low,
            high_rps=high,
            lower_bound=bound == "loadgen" or high is None,
            retakes=found.retakes,
        ),
    )


FAILED_LOG = """\
[2026-11-30 10:31:40 +0000] [51190] [ERROR] Worker (pid:51203) was sent SIGKILL!
[2026-11-30 10:31:40 +0000] [51240] [INFO] Booting worker with pid: 51240
[2026-11-30 10:31:41 +0000] [51240] [ERROR] Exception in worker process
OSError: [Errno 24] Too many open files
[2026-11-30 10:31:41 +0000] [51190] [INFO] Shutting down: Master
"""


def main() -> None:
    rng = random.Random(20261130)
    sample = json.loads(OUT.with_name("sample_results.json").read_text(encoding="utf-8"))
    environment = Environment.from_dict(sample["environment"])
    environment = dataclasses.replace(
        environment,
        placement=CpuPlacement(server_cpus=(0,), loadgen_cpus=(1,), shared=False),
        packages={**environment.packages, "hdrhistogram": "0.10.3", "granian": "2.2.5"},
        git_commit="de549465c1f3a7d1c0b6e2a4f8d9e0b1c2d3e4f5",
    )
    matrix = Matrix(
        runners=RUNNERS,
        workloads=WORKLOADS,
        users=(0,),
        duration_s=WINDOW_S,
        warmup_s=WARMUP_S,
        repeat=2,
        middleware="minimal",
        upstream_ms=UPSTREAM_MS,
        request_timeout_s=2.0,
        order="repeat-major: every cell once, then every cell again",
        extra={"load": "open", "slo_p99_ms": SLO_MS, "arrival": "constant"},
    )
    out = ResultsFile(
        OUT,
        command="tox -e bench -- --runners "
        + ",".join(RUNNERS)
        + " --workloads json,upstream --repeat 2 --load open --slo-p99 100",
        environment=environment,
        matrix=matrix,
    )
    out.results = dataclasses.replace(out.results, created_at="2026-11-30T10:00:02+00:00")
    minute, pid = 0, 40_000
    for repeat in (1, 2):
        for workload in WORKLOADS:
            for runner in RUNNERS:
                minute += 1
                pid += 100
                run = base_run(runner, workload, repeat, minute)
                if (runner, workload, repeat) == ("gunicorn-sync", "upstream", 2):
                    run = run.failed(
                        "the server exited with code 1 during probe 4 of the capacity search",
                        FAILED_LOG,
                    )
                else:
                    unconfirmed = (runner, workload, repeat) == ("uvicorn", "upstream", 2)
                    run = measure(run, rng, pid, unconfirmed)
                out.add_run(run)
    out.results = dataclasses.replace(out.results, finished_at="2026-11-30T10:38:51+00:00")
    out.refresh_cells()
    out.save()
    assert not out.schema_errors, out.schema_errors


if __name__ == "__main__":
    main()
