"""One run: serve the app with one runner, drive it with Locust, sample it, and
turn what was measured into the run's record (``ok`` or ``failed``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.bench import soak
from runners.bench.incidents import Incidents, timeout_failures, worker_changes, worker_pids
from runners.bench.matrix import Cell, thread_override, worker_override
from runners.bench.options import Options
from runners.load.locust import LocustError, LocustPlan, LocustProcess
from runners.results.record import (
    Measurement,
    empty_figures,
    notes_for,
    utc_now,
)
from runners.runtimes import axes
from runners.runtimes.axes import RuntimeKey
from runners.runtimes.venvs import Runtime
from runners.sampling.memory import Sampler, summarize
from runners.serving.registry import (
    worker_count,
)
from runners.serving.server import (
    RunningServer,
    ServeConfig,
    serve,
)
from runners.serving.supervisor import log_tail


@dataclass
class Context:
    """What every run of one invocation shares."""

    options: Options
    out_dir: Path
    server_env: dict[str, str]
    upstream_url: str | None = None
    built_runtimes: dict[RuntimeKey, Runtime] = field(default_factory=dict)

    def runtime(self, cell: Cell) -> Runtime:
        """The interpreter and packages the cell's server runs on (built in ``execute``)."""
        key = axes.runtime_key(cell.runtime)
        if key not in self.built_runtimes:
            self.built_runtimes.update(
                axes.build_runtimes(self.options.pythons, self.options.djangos)
            )
        return self.built_runtimes[key]

    @property
    def runs_dir(self) -> Path:
        return self.out_dir / "runs"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()


def sample_interval(duration_s: float) -> float:
    """About ten samples over short windows, one a second over long ones."""
    return min(1.0, max(0.25, duration_s / 10))


class ServerDied(RuntimeError):
    """The server's root process ended during a run."""


def server_watch(server: RunningServer) -> Callable[[], None]:
    """A check for ``LocustProcess.wait_for``: raise ``ServerDied`` once the server is gone,
    so that a run whose server died ends at once instead of at Locust's deadline."""

    def check() -> None:
        status = server.exit_status()
        if status is not None:
            raise ServerDied(f"the server died during the run ({status})")

    return check


def plan_locust(server: RunningServer, cell: Cell, ctx: Context) -> LocustPlan:
    """The Locust run of ``cell`` against ``server``, on the load-generator CPUs."""
    options = ctx.options
    return LocustPlan(
        host=server.url,
        workload=cell.workload,
        variant=server.variant,
        users=cell.users,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        out_prefix=ctx.runs_dir / cell.stem,
        spawn_rate=options.spawn_rate,
        cpus=options.placement.loadgen,
        options=options.locust_options(),
        request_timeout_s=options.request_timeout_s,
    )


def measure(server: RunningServer, cell: Cell, ctx: Context) -> tuple[Measurement, Incidents]:
    """Drive ``server`` with Locust and measure it over the window.

    Ends early with ``ServerDied`` when the server's root exits.
    """
    options = ctx.options
    placement = options.placement
    locust_plan = plan_locust(server, cell, ctx)
    check = server_watch(server)
    workers_before = worker_pids(server)
    with LocustProcess(locust_plan) as locust:
        locust.wait_for("start", check=check)
        sampler = Sampler(server.pid, interval=sample_interval(options.duration_s))
        sampler.start()
        try:
            locust.wait_for("end", check=check)
        finally:
            samples = sampler.stop()
        check()
        outcome = locust.finish()
    check()
    if sampler.error is not None:
        raise ServerDied(f"the server died during the run ({sampler.error})")
    window = outcome.window
    if window.requests == 0:
        raise RuntimeError(
            "no request completed in the measured window: the server answered nothing "
            f"(hung?) and no request reached the {options.request_timeout_s:g} s "
            "--request-timeout"
        )
    gone, new = worker_changes(workers_before, samples)
    incidents = Incidents(gone, new, timeout_failures(locust_plan.csv("failures")))
    stats = outcome.stats
    memory = summarize(samples, sampler_cpu_percent=sampler.cpu_percent_of_sampler)
    cpu_seconds = memory.get("cpu_seconds")
    measurement = Measurement(
        window_s=window.duration_s,
        requests=window.requests,
        failures=window.failures,
        latency=stats.latency,
        locust_rps=stats.locust_rps,
        memory=memory,
        cpu_seconds=float(cpu_seconds) if isinstance(cpu_seconds, int | float) else None,
        loadgen_cpu_seconds=window.loadgen_cpu_seconds,
        loadgen_cpus=max(1, min(len(placement.loadgen), window.loadgen_processes)),
        server_cpus=len(placement.server),
    )
    return measurement, incidents


def soak_measure(
    server: RunningServer, cell: Cell, ctx: Context
) -> tuple[Measurement, Incidents, dict[str, Any]]:
    """``--soak``: ``runners.bench.soak.measure`` (memory sampled from before the first request)."""
    options = ctx.options
    assert options.soak is not None
    locust_plan = plan_locust(server, cell, ctx)
    measurement, series = soak.measure(
        server, locust_plan, options.soak, options.placement, check=server_watch(server)
    )
    incidents = Incidents(timeouts=timeout_failures(locust_plan.csv("failures")))
    return measurement, incidents, series


def base_record(cell: Cell, ctx: Context) -> dict[str, Any]:
    options = ctx.options
    runner = cell.runner
    return {
        "id": cell.id,
        "runner": runner.name,
        "family": runner.family,
        "server": runner.server,
        "interface": runner.interface,
        "variant": options.variant or runner.variant,
        # What the run asks for; the server's own count replaces it once it is up
        # (a run whose server never started still needs one: the schema says integer).
        "workers": worker_override(runner, options)
        or worker_count(runner.workers, len(options.placement.server)),
        "threads": None,
        "gc": cell.runtime.gc or runner.gc,
        "middleware": options.middleware,
        # The server's interpreter and the Django it imports (not the driver's).
        "python": ctx.runtime(cell).python_record(),
        "django": ctx.runtime(cell).django,
        "workload": cell.workload,
        "users": cell.users,
        "repeat": cell.repeat,
        "status": "ok",
        "error": None,
        "log_tail": None,
        "started_at": utc_now(),
        "warmup_s": options.warmup_s,
        "duration_s": options.duration_s,
        "server_cpus": list(options.placement.server),
        "loadgen_cpus": list(options.placement.loadgen),
        **empty_figures(),
        "flags": [],
        **({"soak": True} if options.soak is not None else {}),
    }


def artifacts(cell: Cell, ctx: Context) -> dict[str, Any]:
    prefix = ctx.runs_dir / cell.stem
    found: dict[str, Any] = {}
    html = prefix.with_name(prefix.name + ".html")
    if html.exists():
        found["locust_html"] = ctx.rel(html)
    csvs = sorted(ctx.runs_dir.glob(f"{cell.stem}_*.csv"))
    if csvs:
        found["locust_csv"] = [ctx.rel(p) for p in csvs]
    for key, suffix in (("server_log", ".server.log"), ("locust_log", ".locust.log")):
        path = prefix.with_name(prefix.name + suffix)
        if path.exists():
            found[key] = ctx.rel(path)
    return found


def run_cell(cell: Cell, ctx: Context) -> dict[str, Any]:
    """Serve, drive, measure one cell; a record with status ok or failed."""
    options = ctx.options
    record = base_record(cell, ctx)
    server_log = ctx.runs_dir / f"{cell.stem}.server.log"
    config = ServeConfig(
        runner=cell.runner,
        log_path=server_log,
        workers=worker_override(cell.runner, options),
        threads=thread_override(cell.runner, options),
        variant=options.variant,
        middleware=options.middleware,
        cpus=options.placement.server,
        env=ctx.server_env,
        python=ctx.runtime(cell).python,
        gc=cell.runtime.gc,
    )
    try:
        with serve(config) as server:
            record.update(
                workers=server.workers,
                threads=server.threads,
                variant=server.variant,
                gc=server.gc,
                server_command=list(server.command.argv),
                startup_s=round(server.startup_seconds, 3),
            )
            if options.soak is not None:
                measurement, incidents, record["soak_series"] = soak_measure(server, cell, ctx)
            else:
                measurement, incidents = measure(server, cell, ctx)
        record.update(measurement.as_dict())
        flags = measurement.flags() + incidents.flags()
        if options.placement.shared:
            flags.append("shared-cpus")
        record["flags"] = flags
        record["notes"] = notes_for(flags)
        if incidents.events():
            record["events"] = incidents.events()
    except Exception as exc:  # a failed cell is recorded, the matrix goes on
        message = str(exc).strip() or type(exc).__name__
        tails = [log_tail(server_log)]
        if isinstance(exc, LocustError):
            message, _, locust_tail = message.partition("\n")
            tails.append(f"--- Locust ---\n{locust_tail}")
        record.update(empty_figures())
        record.update(
            status="failed",
            error=message.splitlines()[0][:500],
            log_tail="\n".join(t for t in tails if t) or None,
            flags=[],
        )
    record["artifacts"] = artifacts(cell, ctx)
    return record
