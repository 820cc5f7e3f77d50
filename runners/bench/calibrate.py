"""``--calibrate``: this host's load-generator ceiling, requests/s per Locust process.

Before the matrix, the cheapest endpoint (``plaintext``) on a fast runner
(``gunicorn-gthread``, pinned to the server CPUs like every run) is driven
by one Locust process, a closed loop of many users, for a few seconds. What
one process can send at most is its requests/s divided by the share of a core
it used: a process that was not saturated (the server was the limit) still
gives its cost per request, and the ceiling is where that cost fills a core.
The ceiling goes into the environment block; every run then shows its load as
a share of it (``loadgen_ceiling_share``): a run near 1 measured the load
generator as much as the server.
"""

from __future__ import annotations

from pathlib import Path

from loadtests.window import ProbeCommand
from runners.bench.options import Options
from runners.bench.run import locust_options
from runners.load.locust import LocustPlan, LocustProcess
from runners.results.document import LoadgenCeiling
from runners.serving.registry import RUNNERS
from runners.serving.server import ServeConfig, serve

RUNNER = "gunicorn-gthread"
WORKLOAD = "plaintext"
USERS = 64
WARMUP_S = 1.0
DURATION_S = 3.0


def calibrate(
    options: Options, prefix: Path, server_env: dict[str, str], python: str
) -> LoadgenCeiling:
    """Measure the ceiling (see the module's docstring)."""
    config = ServeConfig(
        runner=RUNNERS[RUNNER],
        log_path=prefix.with_name(prefix.name + ".server.log"),
        cpus=options.placement.server,
        env=server_env,
        python=python,
    )
    with serve(config) as server:
        plan = LocustPlan(
            host=server.url,
            workload=WORKLOAD,
            variant=server.variant,
            out_prefix=prefix,
            run_time_limit_s=120,
            cpus=options.placement.loadgen[:1],
            options=locust_options(options),
            request_timeout_s=options.request_timeout_s,
        )
        command = ProbeCommand(
            seq=1, mode="closed", users=USERS, warmup_s=WARMUP_S, duration_s=DURATION_S
        )
        with LocustProcess(plan) as locust:
            window = locust.probe(command)
            locust.finish()
    rps = window.successes / window.duration_s if window.duration_s > 0 else 0.0
    cpu = window.busiest_process_percent or 0.0
    per_process = rps / (cpu / 100.0) if cpu > 0 else None
    return LoadgenCeiling(
        runner=RUNNER,
        workload=WORKLOAD,
        users=USERS,
        duration_s=round(window.duration_s, 3),
        rps=round(rps, 1),
        cpu_percent=round(cpu, 1),
        rps_per_process=round(per_process, 1) if per_process is not None else None,
    )
