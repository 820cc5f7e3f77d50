"""One run: serve the app with one runner, drive it with Locust, sample it, and
turn what was measured into the run's record (``ok`` or ``failed``)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.catalog import needs_upstream, workload_options
from runners.bench.estimate import run_estimate_s
from runners.bench.matrix import RunSpec, runtime_python
from runners.bench.measure import RunFindings, closed_loop, open_loop, soak_loop
from runners.bench.options import Options
from runners.bench.probing import NO_HOOKS, ServerDied, WindowHooks
from runners.bench.profiles import ProfilePlan, Profiler
from runners.hosting import Hosted, LocalHost, ServerHost
from runners.load.locust import (
    LOCUSTFILE,
    TRAFFICFILE,
    USERFILE,
    LoadGenerator,
    LoadGeneratorFactory,
    LocustError,
    LocustPlan,
    LocustProcess,
)
from runners.results.document import LoadgenCeiling
from runners.results.flags import notes_for, order_flags
from runners.results.record import Artifacts, Run, utc_now
from runners.runtimes import axes
from runners.runtimes.axes import RuntimeKey
from runners.runtimes.venvs import Runtime
from runners.serving import cgroups
from runners.serving.registry import (
    worker_count,
)
from runners.serving.server import ServeConfig
from runners.serving.subject import BUILTIN, Subject
from runners.serving.supervisor import log_tail
from runners.vocabulary import Variant


@dataclass(frozen=True)
class Context:
    """What every run of one invocation shares, complete once the invocation is prepared
    (``runners.bench.main.prepare``)."""

    options: Options
    out_dir: Path
    server_env: Mapping[str, str]
    """The servers' environment: the database and the upstream service's address."""
    runtimes: Mapping[RuntimeKey, Runtime]
    """The interpreter and packages of each runtime of the matrix (built beforehand)."""
    hosting: ServerHost = field(default_factory=LocalHost)
    """Where the servers run: here, or on the agent's host (``--agent``)."""
    ceiling: LoadgenCeiling | None = None
    """``--calibrate``'s measure of this host's load generator."""
    loadgen: LoadGeneratorFactory = LocustProcess
    """How a run gets its load generator (a Locust process; tests give a model)."""
    subject: Subject = BUILTIN
    """What the servers serve: the built-in app, or the user's project (``--project``)."""
    traffic_files: Mapping[str, Path] = field(default_factory=dict)
    """A project's URL-list and access-log workloads, written for Locust's TrafficUser."""
    precheck_runners: frozenset[str] = frozenset()
    """Runners the pre-check found broken or disagreeing (measured with --allow-errors)."""

    def runtime(self, spec: RunSpec) -> Runtime:
        """The interpreter and packages the run's server runs on."""
        return self.runtimes[axes.runtime_key(spec.runtime)]

    @property
    def runs_dir(self) -> Path:
        return self.out_dir / "runs"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()


def server_watch(server: Hosted) -> Callable[[], None]:
    """A check for Locust's waits: raise ``ServerDied`` once the server is gone, so that a
    run whose server died ends at once instead of at Locust's deadline."""

    def check() -> None:
        status = server.exit_status()
        if status is not None:
            local = server.local
            kills = cgroups.oom_kills(local.cgroup) if local and local.cgroup else None
            oom = f"; its cgroup counted {kills} OOM kill(s)" if kills else ""
            raise ServerDied(f"the server died during the run ({status}{oom})", kills)

    return check


def locust_options(options: Options) -> tuple[str, ...]:
    """The workloads' own options: the upstream's delay, the seeded ids to draw from."""
    return workload_options(options.upstream_ms, options.seed)


def workload_files(
    spec: RunSpec, ctx: Context
) -> tuple[tuple[Path, ...], tuple[str, ...], tuple[str, ...]]:
    """The Locust files, user classes and options of ``spec``'s workload: the suite's own
    (``loadtests/locustfile.py``), a project's traffic file (``TrafficUser``), or a
    project's own locustfile (with the plugin that puts its tasks on the schedule)."""
    project = ctx.options.project
    if project is None:
        return (LOCUSTFILE,), (), locust_options(ctx.options)
    traffic = project.traffic_of(spec.workload)
    if traffic.source == "locustfile":
        return (project.file_of(spec.workload), USERFILE), traffic.user_classes, ()
    traffic_file = str(ctx.traffic_files[spec.workload])
    return (TRAFFICFILE,), ("TrafficUser",), ("--traffic", traffic_file)


def plan_locust(url: str, variant: Variant, spec: RunSpec, ctx: Context) -> LocustPlan:
    """The Locust process of ``spec`` against the server at ``url``, on the load-generator
    CPUs; its own time limit is a safety net well past the run's estimate."""
    options = ctx.options
    locustfiles, user_classes, workload_options = workload_files(spec, ctx)
    return LocustPlan(
        host=url,
        workload=spec.workload,
        variant=variant,
        out_prefix=ctx.runs_dir / spec.stem,
        run_time_limit_s=3 * run_estimate_s(options) + 60,
        cpus=options.placement.locust,
        options=workload_options,
        locustfiles=locustfiles,
        user_classes=user_classes,
        request_timeout_s=options.request_timeout_s,
        processes=options.loadgen_processes,
        expect_workers=options.expect_workers,
        master_bind_host=options.master_bind_host,
        master_port=options.master_port,
    )


def measure(
    server: Hosted,
    loadgen: LoadGenerator,
    spec: RunSpec,
    ctx: Context,
    profiler: Profiler | None = None,
) -> RunFindings:
    """Drive ``server`` with the load generator and measure it: the capacity search, a
    closed loop, or a soak; ``profiler`` takes the run's profiles around the measured
    window. Ends early with ``ServerDied`` when the server's root exits."""
    options = ctx.options
    check = server_watch(server)
    hooks: WindowHooks = profiler if profiler is not None else NO_HOOKS
    upstream = ctx.server_env.get("BENCH_UPSTREAM_URL") if needs_upstream(spec.workload) else None
    if options.soak is not None:
        started = profiler.soak_started if profiler is not None else None
        measured = soak_loop(loadgen, server, options, spec.users, check, hooks, started)
    elif options.load == "open":
        measured = open_loop(loadgen, server, options, check, hooks, upstream)
    else:
        measured = closed_loop(loadgen, server, options, spec.users, check, hooks, upstream)
    check()
    if measured.measurement.requests == 0:
        raise RuntimeError(
            "no request completed in the measured window: the server answered nothing "
            f"(hung?) and no request reached the {options.request_timeout_s:g} s "
            "--request-timeout"
        )
    return measured


def ceiling_share(
    rps: float, processes: int | None, ceiling: LoadgenCeiling | None
) -> float | None:
    """The run's rate as a share of what its Locust processes can send at most."""
    if ceiling is None or not ceiling.rps_per_process:
        return None
    return round(rps / (ceiling.rps_per_process * (processes or 1)), 4)


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
        workers=spec.workers or worker_count(runner.workers, rule_cpus(spec, options)),
        threads=spec.threads or runner.threads,
        gc=spec.runtime.gc or runner.gc,
        middleware=options.middleware,
        # The server's interpreter and the Django it imports (not the driver's).
        python=runtime_python(runtime),
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
        load=options.load,
        loadgen_processes=options.loadgen_processes + options.expect_workers
        if options.loadgen_processes > 1 or options.expect_workers
        else 1,
        pod=spec.pod.record(None if spec.workers else rule_cpus(spec, options))
        if options.pods
        else None,
    )


def rule_cpus(spec: RunSpec, options: Options) -> int:
    """The CPUs the run's worker rule reads (``runners.bench.pods.PodSpec.rule_cpus``)."""
    return spec.pod.rule_cpus(len(options.placement.server))


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


def serve_config(
    spec: RunSpec, ctx: Context, server_log: Path, profiles: ProfilePlan
) -> ServeConfig:
    """How the run's server is started: its runner, CPUs, environment, runtime and pod."""
    options = ctx.options
    return ServeConfig(
        runner=spec.runner,
        log_path=server_log,
        workers=spec.workers,
        threads=spec.threads,
        variant=options.variant,
        middleware=options.middleware,
        cpus=options.placement.server,
        env={**ctx.server_env, **profiles.server_env()},
        python=ctx.runtime(spec).python,
        gc=spec.runtime.gc,
        subject=ctx.subject,
        limits=spec.pod.limits,
        rule_cpus=spec.pod.host_cpus(),
    )


def failed_run(run: Run, exc: Exception, server_log: Path) -> Run:
    """``run`` failed with ``exc``: its first line, the server's (and Locust's) log tail,
    and ``oom-killed`` when the OOM killer took the server."""
    message = str(exc).strip() or type(exc).__name__
    tails = [log_tail(server_log)]
    if isinstance(exc, LocustError):
        message, _, locust_tail = message.partition("\n")
        tails.append(f"--- Locust ---\n{locust_tail}")
    run = run.failed(
        error=message.splitlines()[0][:500],
        log_tail="\n".join(t for t in tails if t) or None,
    )
    if isinstance(exc, ServerDied) and exc.oom_kills:
        # The OOM killer took the master (a preloading master is as large as a fresh
        # worker): the run failed, and says why.
        run = dataclasses.replace(
            run, flags=("oom-killed",), notes=tuple(notes_for(["oom-killed"]))
        )
    return run


def run_one(spec: RunSpec, ctx: Context) -> Run:
    """Serve, drive, measure one run; its record, with status ok or failed."""
    options = ctx.options
    run = base_run(spec, ctx)
    server_log = ctx.runs_dir / f"{spec.stem}.server.log"
    profiles = ProfilePlan.of(options, ctx.out_dir, spec.stem)
    config, early_url = ctx.hosting.reserve(serve_config(spec, ctx, server_log, profiles))
    try:
        with contextlib.ExitStack() as stack:
            loadgen: LoadGenerator | None = None
            if early_url is not None:
                # Where the server's address is known before it starts, the load generator
                # starts beside it (on its own CPUs; it sends nothing before the first probe).
                variant = config.variant or spec.runner.variant
                loadgen = stack.enter_context(
                    ctx.loadgen(plan_locust(early_url, variant, spec, ctx))
                )
            server = stack.enter_context(ctx.hosting.serve(config))
            run = dataclasses.replace(
                run,
                workers=server.workers,
                threads=server.threads,
                variant=server.variant,
                gc=server.gc,
                server_command=server.argv,
                startup_s=round(server.startup_seconds, 3),
                python=server.python or run.python,
                django=server.django or run.django,
            )
            if loadgen is None:
                plan = plan_locust(server.url, server.variant, spec, ctx)
                loadgen = stack.enter_context(ctx.loadgen(plan))
            # The profilers read the server's processes: only where they run here.
            local = server.local
            profiler = stack.enter_context(Profiler(profiles, local)) if local else None
            measured = measure(server, loadgen, spec, ctx, profiler)
            here = server.here
        flags = [*measured.flags, *measured.incidents.flags(), *profiles.flags()]
        if options.placement.shared and here:
            flags.append("shared-cpus")
        if spec.runner.name in ctx.precheck_runners:
            flags.append("precheck-failed")
        flags = list(order_flags(flags))
        share = ceiling_share(measured.measurement.rps, run.loadgen_processes, ctx.ceiling)
        run = dataclasses.replace(
            measured.measurement.fill(run),
            loadgen_ceiling_share=share,
            capacity=measured.capacity,
            soak_series=measured.soak_series,
            hold=measured.hold,
            flags=tuple(flags),
            notes=tuple(notes_for(flags)),
            events=tuple(measured.incidents.events()) or None,
            **(profiler.fields() if profiler is not None else {}),
        )
    except Exception as exc:  # a failed run is recorded, the matrix goes on
        run = failed_run(run, exc, server_log)
    return dataclasses.replace(run, artifacts=artifacts(spec, ctx))
