"""The invocation, as named steps: ``connect`` (stray processes, the agent),
``open_results``, ``prepare`` (database, calibration, upstream: the runs' ``Context``),
``walk`` (the matrix), ``summarise`` (table, notes, report, exit status)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.catalog import needs_upstream
from runners import REPO_ROOT
from runners.agent.client import AgentClient, RemoteHost, client_token
from runners.bench import fitting, pods, precheck
from runners.bench.calibrate import calibrate
from runners.bench.console import (
    ProgressView,
    describe_plan,
    flag_notes,
    fmt_duration,
    list_text,
    make_progress,
    results_table,
)
from runners.bench.defaults import MICRO_ESTIMATE_S, REPORTS_DIR, SETUP_S
from runners.bench.estimate import estimate_s
from runners.bench.matrix import RunSpec, matrix_block, plan, run_count, runtime_record
from runners.bench.options import Options, parse_options
from runners.bench.project_run import (
    project_readings,
    project_record,
    project_runtimes,
    traffic_files,
)
from runners.bench.run import Context, run_one
from runners.cli.args import UsageError
from runners.cli.signals import stop_on_signals
from runners.hosting import LocalHost, ServerHost
from runners.micro import benchmarks as micro_bench
from runners.project.environment import ProjectEnv
from runners.project.errors import ProjectError
from runners.project.inspect import ProjectFacts, inspect_project
from runners.project.serving import serve_project
from runners.results import environment as env_capture
from runners.results.document import CpuPlacement, LoadgenCeiling, ResultsFile
from runners.results.record import Run
from runners.runtimes import axes
from runners.runtimes.axes import RuntimeKey
from runners.runtimes.venvs import Runtime
from runners.serving import cgroups, ledger, supervisor
from runners.serving.cpus import Placement, placement_from
from runners.serving.server import (
    prepare_database,
    upstream,
)
from runners.serving.subject import BUILTIN


def server_environment(options: Options) -> dict[str, str]:
    """The built-in app's database: an empty DATABASE_URL selects SQLite even when the
    caller's environment has one. A project's settings say its own (wrapped by the suite:
    ``runners.project.data``)."""
    if options.project is not None:
        return {}
    return {"DATABASE_URL": options.database_url or ""}


@dataclass
class Clock:
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def remaining_s(options: Options, done: int, elapsed_runs: float) -> float:
    left = run_count(options) - done
    if done:
        return left * elapsed_runs / done
    return estimate_s(options) - SETUP_S


def report_reaped(book: ledger.Ledger) -> None:
    """Last resort at the end of the matrix: stop what a cut-short stop left running."""
    for line in supervisor.reap(book):
        print(f"warning: stopped a leftover process: {line}", file=sys.stderr, flush=True)


def run_micro(ctx: Context, say: Callable[[str], None]) -> str | None:
    """The pyperf micro-benchmarks (``runners.micro.benchmarks --fast``) pinned to the server CPUs.

    Writes ``micro.json`` and ``micro.log`` into the results folder and returns
    the path relative to it, or None (with a warning) when they failed.
    """
    out = ctx.out_dir / "micro.json"
    log = ctx.out_dir / "micro.log"
    cpus = ",".join(str(cpu) for cpu in ctx.options.placement.server)
    # The database was prepared for the matrix (with its --seed sizes): keep it.
    argv = micro_bench.command(out, ["--fast", f"--affinity={cpus}", "--skip-prepare"])
    say(f"Micro-benchmarks (pyperf --fast on CPU {cpus}, ~{MICRO_ESTIMATE_S / 60:.0f} min)...")
    with log.open("w") as fh:
        status = subprocess.run(
            argv,
            env={**os.environ, **ctx.server_env},
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            check=False,
        ).returncode
    if status != 0 or not out.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        say(f"warning: the micro-benchmarks failed (exit {status}); see {log}\n{tail}")
        return None
    return ctx.rel(out)


def measure_ceiling(
    options: Options, out_dir: Path, server_env: Mapping[str, str], python: str
) -> LoadgenCeiling:
    """``--calibrate``: measure and print the load-generator ceiling."""
    print("Calibrating the load generator (plaintext on gunicorn-gthread, ~15 s)...", flush=True)
    ceiling = calibrate(options, out_dir / "runs" / "calibrate", dict(server_env), python)
    per = ceiling.rps_per_process
    head = f"{per:.0f} req/s per Locust process" if per else "not measurable"
    print(
        f"Load-generator ceiling: {head} "
        f"({ceiling.rps:.0f} req/s at {ceiling.cpu_percent:.0f}% of a core)",
        flush=True,
    )
    return ceiling


def render_report(out_dir: Path, say: Callable[[str], None]) -> None:
    """Render the HTML report; a failure is a warning, never a lost result."""
    try:
        from runners.report.render import render_index, render_run
    except ImportError as exc:
        say(f"warning: no HTML report (runners.report is not available: {exc})")
        return
    try:
        path = render_run(out_dir)
        say(f"HTML report: {path}")
        if out_dir.resolve().parent == REPORTS_DIR.resolve():
            render_index(REPORTS_DIR)
    except Exception as exc:  # the results are safe; the report is a view
        say(f"warning: the HTML report failed: {type(exc).__name__}: {exc}")


def say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Connection:
    """Where the runs' servers live: the options (with the agent's server CPUs filled in)
    and the agent's client, None when they run here."""

    options: Options
    agent: AgentClient | None = None


def connect(options: Options) -> Connection:
    """Stop what a killed driver left, and reach the agent if there is one (asking for its
    server CPUs also checks the token). Says once when the servers get no cgroup here."""
    stray = supervisor.strays_message()
    if stray is not None:
        say(stray)
    if options.agent is None:
        found = cgroups.support()
        if not found.available:
            say(
                f"note: no cgroup for the servers here ({found.reason}): memory is measured as "
                "PSS only (no working set, limits or OOM kills)"
            )
        return Connection(options)
    agent = AgentClient(options.agent, client_token(options.agent_token_file))
    placement = agent.environment().placement
    options = dataclasses.replace(
        options,
        placement=Placement(server=placement.server_cpus, loadgen=options.placement.loadgen),
    )
    say(f"Agent: {options.agent} (its server CPUs: {placement.server_cpus})")
    return Connection(options, agent)


def open_results(
    connection: Connection, command: str, runtimes: Mapping[RuntimeKey, Runtime]
) -> ResultsFile:
    """results.json with the environment, the matrix and the runtimes, before any run."""
    options = connection.options
    results = ResultsFile(
        options.output / "results.json",
        command=command,
        environment=env_capture.capture(
            placement=CpuPlacement(
                server_cpus=options.placement.server,
                loadgen_cpus=options.placement.loadgen,
                # Through an agent the server's CPUs are another host's.
                shared=options.placement.shared and connection.agent is None,
            ),
            database_url=options.database_url,
            redis_url=os.environ.get("REDIS_URL"),
            seed=options.seed,
        ),
        matrix=matrix_block(options),
    )
    results.update(runtimes=tuple(runtime_record(runtime) for runtime in runtimes.values()))
    return results


@dataclass(frozen=True)
class Built:
    """The servers' interpreters and packages, built (or reused) before any run; with
    ``--project``, the project's environments and what was found in them."""

    runtimes: dict[RuntimeKey, Runtime]
    project_env: ProjectEnv | None = None
    facts: ProjectFacts | None = None


def build(options: Options) -> Built:
    """Every runtime of the matrix (``ProjectError``: a project that cannot be served,
    found before any server starts)."""
    if options.project is None:
        return Built(axes.build_runtimes(options.pythons, options.djangos, say=say))
    runtimes, envs = project_runtimes(options, say)
    env = next(iter(envs.values()))
    project = options.project
    facts = inspect_project(project.layout, env, project.settings, project.wsgi, project.asgi)
    asgi = facts.asgi or "Django's get_asgi_application() (it has none: built by the suite)"
    say(
        f"Project {project.layout.name}: settings {facts.settings}, WSGI {facts.wsgi}, "
        f"ASGI {asgi}, Django {facts.django}"
    )
    return Built(runtimes, env, facts)


def prepare(
    connection: Connection,
    built: Built,
    results: ResultsFile,
    stack: contextlib.ExitStack,
) -> Context:
    """The database prepared (a project's: copied or cloned), the load generator
    calibrated (``--calibrate``) and the upstream service started, here or on the
    agent's host; what every run then shares. What it starts is left by ``stack``."""
    options, agent = connection.options, connection.agent
    runtimes = built.runtimes
    upstream_needed = any(needs_upstream(w) for w in options.workloads)
    server_env = server_environment(options)
    hosting: ServerHost = LocalHost()
    subject = BUILTIN
    if options.project is not None:
        assert built.facts is not None and built.project_env is not None
        say(f"Isolating the project's database ({built.facts.database.engine or 'none'})...")
        served = serve_project(
            built.project_env,
            built.facts,
            stack,
            say,
            as_is=options.project.database_as_is,
            health=options.project.health,
        )
        subject = served.subject
        results.update(
            environment=dataclasses.replace(
                results.results.environment,
                project=project_record(served, options.project, None),
            )
        )
    else:
        where = " on the agent's host" if agent is not None else ""
        label = env_capture.database_label(options.database_url)
        say(f"Preparing the database{where} ({label})...")
    if agent is not None:
        # Left before the ledger: releasing the lease stops the agent's servers.
        lease = stack.enter_context(agent.lease())
        lease.prepare(options.database_url, options.seed)
        environment = dataclasses.replace(
            results.results.environment, server_host=agent.environment()
        )
        results.update(environment=environment)
        # The agent starts the upstream beside each server, on its host.
        hosting = RemoteHost(lease, options.database_url, upstream_needed)
    elif options.project is None:
        # Once per interpreter: the app runs there (idempotent after the first).
        for python in dict.fromkeys(runtime.python for runtime in runtimes.values()):
            prepare_database(server_env, python, 600.0, **options.seed)
    ceiling = None
    if options.calibrate:
        python = next(iter(runtimes.values())).python
        ceiling = measure_ceiling(options, options.output, server_env, python)
        environment = dataclasses.replace(results.results.environment, loadgen_ceiling=ceiling)
        results.update(environment=environment)
    if upstream_needed and agent is None:
        log = options.output / "upstream.log"
        url = stack.enter_context(upstream(cpus=options.placement.upstream, log_path=log))
        server_env["BENCH_UPSTREAM_URL"] = url
    return Context(
        options=options,
        out_dir=options.output,
        server_env=server_env,
        runtimes=runtimes,
        hosting=hosting,
        ceiling=ceiling,
        subject=subject,
    )


class SubjectRefused(Exception):
    """The pre-check found the project's pages broken or the target out of reach: the
    lines say what, one per URL."""


def check_subject(ctx: Context, results: ResultsFile) -> Context:
    """``--project``: every URL through every runner on an idle server before anything is
    timed (``runners.bench.precheck``); the context with the traffic files Locust reads
    (each request's expected status the one the idle servers answered)."""
    project = ctx.options.project
    if project is None:
        return ctx
    say(f"Pre-check: every URL through {len(ctx.options.runners)} runner(s), idle...")
    found = precheck.run(ctx)
    for line in found.problems:
        say(f"pre-check: {line}")
    environment = results.results.environment
    if environment.project is not None:
        record = dataclasses.replace(
            environment.project,
            precheck=project_readings(found),
            precheck_problems=found.problems,
        )
        results.update(environment=dataclasses.replace(environment, project=record))
    if found.problems and not project.allow_errors:
        raise SubjectRefused(
            f"the pre-check found {len(found.problems)} problem(s) (above); fix them, or "
            "measure anyway with --allow-errors (the cells are flagged)"
        )
    slo = found.slo_problem(ctx.options.slo_p99_ms)
    if slo is not None:
        raise SubjectRefused(slo)
    files = traffic_files(project, ctx.out_dir, found.expected_statuses())
    return dataclasses.replace(ctx, traffic_files=files, precheck_runners=found.runners_at_fault())


def walk(
    specs: Sequence[RunSpec],
    ctx: Context,
    results: ResultsFile,
    progress: ProgressView,
    clock: Clock,
) -> None:
    """Every run of the matrix in order, each appended to results.json as it ends
    (``clock``: the invocation's, for the progress lines)."""
    runs = Clock()
    for index, spec in enumerate(specs, start=1):
        left = remaining_s(ctx.options, index - 1, runs.elapsed)
        progress.starting(index, spec, clock.elapsed, left)
        run = run_one(spec, ctx)
        results.add_run(run)
        left = remaining_s(ctx.options, index, runs.elapsed)
        progress.finished(index, spec, run, clock.elapsed, left)


def walk_fits(ctx: Context, results: ResultsFile, progress: ProgressView, clock: Clock) -> None:
    """``--fit-memory``: the bounded search per runner and workload (``runners.bench.fitting``),
    each trial a run appended to results.json as it ends."""
    runs = Clock()
    done = 0
    total = fitting.budget(len(ctx.options.runners), len(ctx.options.workloads))

    def run(spec: RunSpec, go: Callable[[], Run]) -> Run:
        nonlocal done
        left = (total - done) * (runs.elapsed / done) if done else 0.0
        progress.starting(done + 1, spec, clock.elapsed, left)
        finished = go()
        done += 1
        progress.finished(done, spec, finished, clock.elapsed, (total - done) * runs.elapsed / done)
        return finished

    fitting.fit_all(ctx, results, run, progress.message)


def check_footprints(options: Options) -> None:
    """``UsageError`` when a memory limit (or ``--fit-memory``) is below a runner's idle
    footprint (``runners.bench.pods.check_footprints``: each runner started once, idle)."""
    limits = [m for m in options.memory_limits if m is not None]
    option = "--fit-memory" if options.fit_memory is not None else "--memory-limit"
    if options.fit_memory is not None:
        limits.append(options.fit_memory)
    if limits and options.agent is None:
        pods.check_footprints(
            option,
            min(limits),
            options.runners,
            options.placement.server,
            server_environment(options),
        )


def summarise(results: ResultsFile, options: Options, clock: Clock, interrupted: bool) -> int:
    """The table, the flags' notes, the report; the exit status."""
    runs = results.runs
    say("\n" + results_table(runs) if runs else "No run finished.")
    for note in flag_notes(runs):
        say(f"note: {note}")
    for error in results.schema_errors:
        print(f"warning: results.json does not match its schema: {error}", file=sys.stderr)
    if options.report:
        render_report(options.output, say)
    failed = sum(1 for r in runs if not r.ok)
    say(
        f"{'Interrupted' if interrupted else 'Done'}: {len(runs)} runs "
        f"({failed} failed) in {fmt_duration(clock.elapsed)}; "
        f"results in {options.output / 'results.json'}"
    )
    if interrupted:
        return 130
    return 1 if failed else 0


def execute(options: Options, command: str) -> int:
    """Connect, prepare, walk the matrix, summarise; the exit status."""
    (options.output / "runs").mkdir(parents=True, exist_ok=True)
    connection = connect(options)
    options = connection.options
    if options.fit_memory is not None:
        hold = options.hold.duration_s if options.hold is not None else None
        size = options.fit_memory
        say(fitting.describe(len(options.runners), len(options.workloads), size, hold))
    else:
        say(describe_plan(options))
    say(f"Results: {options.output}")
    clock = Clock()
    # The servers' interpreters: virtual environments built (or reused) before any run.
    try:
        built = build(options)
    except ProjectError as exc:
        print(f"bench: error: --project: {exc}", file=sys.stderr)
        return 2
    results = open_results(connection, command, built.runtimes)
    specs = plan(options)
    progress: ProgressView | None = None
    interrupted = refused = False
    try:
        with contextlib.ExitStack() as stack:
            # Entered first, left last: after the upstream and every server were stopped,
            # the ledger stops whatever a cut-short stop left (and says so).
            book = stack.enter_context(supervisor.track())
            stack.callback(report_reaped, book)
            ctx = check_subject(prepare(connection, built, results, stack), results)
            if options.fit_memory is not None:
                progress = make_progress(
                    fitting.budget(len(options.runners), len(options.workloads))
                )
                walk_fits(ctx, results, progress, clock)
            else:
                progress = make_progress(len(specs))
                walk(specs, ctx, results, progress, clock)
            if options.micro:
                results.update(micro=run_micro(ctx, progress.message))
    except KeyboardInterrupt:
        interrupted = True
    except SubjectRefused as exc:
        print(f"bench: {exc}", file=sys.stderr)
        refused = True
    finally:
        if progress is not None:
            progress.close()
        results.finish(interrupted=interrupted)
    if refused:
        return 1
    return summarise(results, options, clock, interrupted)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        options, namespace = parse_options(args)
    except UsageError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    if options is None:
        print(list_text(placement_from(namespace.server_cpus, namespace.loadgen_cpus)))
        return 0
    command = shlex.join(["python", "-m", "runners.bench", *args])
    try:
        with stop_on_signals():
            check_footprints(options)
            return execute(options, command)
    except UsageError as exc:
        # A limit below the idle footprint (measured before anything else starts).
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Before the matrix started or after it ended: runs are on disk already.
        print("Interrupted.", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        # Setup failures (database, upstream): the finished runs are on disk already.
        print(f"bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
