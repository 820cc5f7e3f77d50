"""One run: serve the app with one runner, drive it with Locust, sample it, and
turn what was measured into the run's record (``ok`` or ``failed``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runners.bench import soak
from runners.bench.incidents import Incidents, timeout_failures, worker_changes, worker_pids
from runners.bench.matrix import RunSpec, thread_override, worker_override
from runners.bench.options import Options
from runners.load.locust import LocustError, LocustPlan, LocustProcess
from runners.results.flags import notes_for
from runners.results.record import Artifacts, Measurement, Memory, Run, SoakSeries, utc_now
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

    def runtime(self, spec: RunSpec) -> Runtime:
        """The interpreter and packages the run's server runs on (built in ``execute``)."""
        key = axes.runtime_key(spec.runtime)
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


def plan_locust(server: RunningServer, spec: RunSpec, ctx: Context) -> LocustPlan:
    """The Locust run of ``spec`` against ``server``, on the load-generator CPUs."""
    options = ctx.options
    return LocustPlan(
        host=server.url,
        workload=spec.workload,
        variant=server.variant,
        users=spec.users,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        out_prefix=ctx.runs_dir / spec.stem,
        spawn_rate=options.spawn_rate,
        cpus=options.placement.loadgen,
        options=options.locust_options(),
        request_timeout_s=options.request_timeout_s,
    )


def measure(server: RunningServer, spec: RunSpec, ctx: Context) -> tuple[Measurement, Incidents]:
    """Drive ``server`` with Locust and measure it over the window.

    Ends early with ``ServerDied`` when the server's root exits.
    """
    options = ctx.options
    placement = options.placement
    locust_plan = plan_locust(server, spec, ctx)
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
    memory = Memory.from_dict(
        summarize(samples, sampler_cpu_percent=sampler.cpu_percent_of_sampler)
    )
    measurement = Measurement(
        window_s=window.duration_s,
        requests=window.requests,
        failures=window.failures,
        latency=stats.latency,
        locust_rps=stats.locust_rps,
        memory=memory,
        cpu_seconds=memory.cpu_seconds,
        loadgen_cpu_seconds=window.loadgen_cpu_seconds,
        loadgen_cpus=max(1, min(len(placement.loadgen), window.loadgen_processes)),
        server_cpus=len(placement.server),
    )
    return measurement, incidents


def soak_measure(
    server: RunningServer, spec: RunSpec, ctx: Context
) -> tuple[Measurement, Incidents, SoakSeries]:
    """``--soak``: ``runners.bench.soak.measure`` (memory sampled from before the first request)."""
    options = ctx.options
    assert options.soak is not None
    locust_plan = plan_locust(server, spec, ctx)
    measurement, series = soak.measure(
        server, locust_plan, options.soak, options.placement, check=server_watch(server)
    )
    incidents = Incidents(timeouts=timeout_failures(locust_plan.csv("failures")))
    return measurement, incidents, series


def base_run(spec: RunSpec, ctx: Context) -> Run:
    """The run's record before it is measured: what it asks for, the empty figures."""
    options = ctx.options
    runner = spec.runner
    runtime = ctx.runtime(spec)
    return Run(
        id=spec.id,
        runner=runner.name,
        family=runner.family,
        server=runner.server,
        interface=runner.interface,
        variant=options.variant or runner.variant,
        # What the run asks for; the server's own count replaces it once it is up
        # (a run whose server never started still needs one: the schema says integer).
        workers=worker_override(runner, options)
        or worker_count(runner.workers, len(options.placement.server)),
        threads=None,
        gc=spec.runtime.gc or runner.gc,
        middleware=options.middleware,
        # The server's interpreter and the Django it imports (not the driver's).
        python=runtime.python_info(),
        django=runtime.django,
        workload=spec.workload,
        users=spec.users,
        repeat=spec.repeat,
        status="ok",
        started_at=utc_now(),
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        server_cpus=options.placement.server,
        loadgen_cpus=options.placement.loadgen,
        soak=options.soak is not None,
    )


def artifacts(spec: RunSpec, ctx: Context) -> Artifacts:
    prefix = ctx.runs_dir / spec.stem
    html = prefix.with_name(prefix.name + ".html")
    csvs = sorted(ctx.runs_dir.glob(f"{spec.stem}_*.csv"))

    def existing(suffix: str) -> str | None:
        path = prefix.with_name(prefix.name + suffix)
        return ctx.rel(path) if path.exists() else None

    return Artifacts(
        locust_html=ctx.rel(html) if html.exists() else None,
        locust_csv=tuple(ctx.rel(p) for p in csvs) or None,
        server_log=existing(".server.log"),
        locust_log=existing(".locust.log"),
    )


def run_one(spec: RunSpec, ctx: Context) -> Run:
    """Serve, drive, measure one run; its record, with status ok or failed."""
    options = ctx.options
    run = base_run(spec, ctx)
    server_log = ctx.runs_dir / f"{spec.stem}.server.log"
    config = ServeConfig(
        runner=spec.runner,
        log_path=server_log,
        workers=worker_override(spec.runner, options),
        threads=thread_override(spec.runner, options),
        variant=options.variant,
        middleware=options.middleware,
        cpus=options.placement.server,
        env=ctx.server_env,
        python=ctx.runtime(spec).python,
        gc=spec.runtime.gc,
    )
    try:
        with serve(config) as server:
            run = dataclasses.replace(
                run,
                workers=server.workers,
                threads=server.threads,
                variant=server.variant,
                gc=server.gc,
                server_command=tuple(server.command.argv),
                startup_s=round(server.startup_seconds, 3),
            )
            if options.soak is not None:
                measurement, incidents, series = soak_measure(server, spec, ctx)
                run = dataclasses.replace(run, soak_series=series)
            else:
                measurement, incidents = measure(server, spec, ctx)
        flags = measurement.flags() + incidents.flags()
        if options.placement.shared:
            flags.append("shared-cpus")
        run = dataclasses.replace(
            measurement.fill(run),
            flags=tuple(flags),
            notes=tuple(notes_for(flags)),
            events=tuple(incidents.events()) or None,
        )
    except Exception as exc:  # a failed run is recorded, the matrix goes on
        message = str(exc).strip() or type(exc).__name__
        tails = [log_tail(server_log)]
        if isinstance(exc, LocustError):
            message, _, locust_tail = message.partition("\n")
            tails.append(f"--- Locust ---\n{locust_tail}")
        run = run.failed(
            error=message.splitlines()[0][:500],
            log_tail="\n".join(t for t in tails if t) or None,
        )
    return dataclasses.replace(run, artifacts=artifacts(spec, ctx))
