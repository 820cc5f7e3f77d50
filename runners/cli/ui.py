"""Serve one runner and drive it by hand from Locust's web UI: ``tox -e ui -- RUNNER``.

``python -m runners.cli.ui RUNNER [--port N] [--web-port N] [--web-host H] [--workload W]
[--processes N] [... -- LOCUST OPTIONS]``

1. prepares the database (migrate + seed, idempotent; ``--seed`` as in
   ``tox -e bench``, ``--no-prepare`` skips it);
2. starts the runner pinned to the server CPUs, and the upstream service on
   the load-generator CPUs when the workload needs it (always when no
   ``--workload`` is given: any workload can be picked in the UI);
3. starts Locust's web UI pinned to the load-generator CPUs, with the
   project's workloads (``loadtests/locustfile.py``) and the server-memory
   plugin (``loadtests/ui_memory.py``) pointed at the server's root PID;
4. prints the URLs and waits; Ctrl-C (or SIGTERM/SIGHUP, however the command
   was started: ``runners/cli/signals.py``) stops Locust and the server and
   checks that no process of either is left.

Every process is started and stopped by the supervisor
(``runners/serving/supervisor.py``) and listed in the ledger of started
processes while it runs, as in ``tox -e bench`` and ``tox -e serve``; what a
killed session left is stopped by the next one. The options are in
``runners/cli/ui_options.py``.

Workloads are Locust user classes, the same ones ``tox -e bench`` runs. With
no ``--workload`` Locust's class picker is on: pick them in the UI (the
picker's header checkbox clears the selection). ``--workload W`` starts
Locust with that user class only. ``--processes N`` runs Locust distributed
on this machine (a master and N workers; the memory tab is on the master);
anything after ``--`` is passed to Locust as is (``--tags``, ``--master``,
``--expect-workers``...). For load from several machines, give ``-- --master
--master-bind-host 0.0.0.0`` here and start workers elsewhere with ``python -m
locust -f loadtests/locustfile.py --worker --master-host THIS_HOST``; serve on
an address they can reach (``--host 0.0.0.0``) and put it in the UI's Host
field. The memory tab stays on the master, which must run on the server's
machine (it reads ``/proc``).

Both the server and the UI bind 127.0.0.1 unless told otherwise (``--host``
for the server, ``--web-host`` for Locust).

``--project PATH`` with one traffic source (``--urls FILE``, ``--access-log FILE`` or
``--locustfile FILE``) serves a user's own Django project as ``tox -e serve --
--project`` does (``runners.project.serving``: its own environment, its data copied or
cloned and removed at the end, no migrate or seed), and Locust's UI drives it with that
traffic: a URL list or an access log through ``TrafficUser`` (``loadtests/trafficfile.py``,
the traffic written next to the logs), or the user's locustfile with the plugin that
paces its tasks (``loadtests/userfile.py``: in the UI, a closed loop); the memory tab as
always.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from loadtests.catalog import WORKLOADS, workload_options
from runners import REPO_ROOT
from runners.cli.args import UsageError, follow_log
from runners.cli.signals import ignore_stop_signals, stop_on_signals
from runners.cli.ui_options import UiOptions, parse_options
from runners.load.locust import TRAFFICFILE, USERFILE
from runners.project.errors import ProjectError
from runners.project.serving import ServedProject, serve_target
from runners.serving import supervisor
from runners.serving.cpus import format_cpus
from runners.serving.net import all_interfaces, check_port_free, http_get, url
from runners.serving.registry import RUNNERS
from runners.serving.server import (
    PrepareError,
    RunningServer,
    ServeConfig,
    prepare_database,
    server_env,
    start,
    stop,
)
from runners.serving.supervisor import Child, RunnerError

UI_MEMORY = REPO_ROOT / "loadtests" / "ui_memory.py"
LOCUSTFILES = (REPO_ROOT / "loadtests" / "locustfile.py", UI_MEMORY)
UI_STARTUP_TIMEOUT_S = 60.0
LOCUST_GRACE_S = 10.0


# --- Locust ------------------------------------------------------------------------------------


def locust_command(
    options: UiOptions, server: RunningServer, traffic_file: Path | None = None
) -> list[str]:
    """``python -m locust`` with the web UI on the server (not yet pinned to CPUs); a
    project's URL list or access log is ``traffic_file`` (``Traffic.write``)."""
    files, workload_args, users = workload(options, server, traffic_file)
    argv = [
        options.python,
        "-m",
        "locust",
        "-f",
        ",".join(str(path) for path in files),
        "--host",
        server.url,
        "--web-host",
        options.web_host,
        "--web-port",
        str(options.web_port),
        *workload_args,
        "--server-pid",
        str(server.pid),
        "--server-name",
        server.runner.name,
        "--server-processes",
        str(server.expected_processes()),
    ]
    if options.processes is not None:
        argv += ["--processes", str(options.processes)]
    return [*argv, *users, *options.locust_args]


def workload(
    options: UiOptions, server: RunningServer, traffic_file: Path | None
) -> tuple[tuple[Path, ...], list[str], list[str]]:
    """Locust's files, their options and the user classes (or the class picker): the
    built-in workloads, a project's traffic file (``TrafficUser``) or its own locustfile
    (its tasks paced by ``loadtests/userfile.py``)."""
    traffic = options.traffic
    if traffic is not None and traffic.source == "locustfile":
        assert options.traffic_path is not None
        return (options.traffic_path, USERFILE, UI_MEMORY), [], list(traffic.user_classes)
    if traffic is not None:
        assert traffic_file is not None
        return (TRAFFICFILE, UI_MEMORY), ["--traffic", str(traffic_file)], ["TrafficUser"]
    args = ["--variant", server.variant, *workload_options(options.upstream_ms, options.seed)]
    if options.workload is None:
        return LOCUSTFILES, args, ["--class-picker"]
    return LOCUSTFILES, args, [WORKLOADS[options.workload].user_class]


def write_traffic(options: UiOptions, log_dir: Path) -> Path | None:
    """A project's URL list or access log as the traffic file ``TrafficUser`` reads, next
    to the logs (None: no such source)."""
    traffic = options.traffic
    if traffic is None or traffic.source == "locustfile":
        return None
    path = log_dir / f"ui-{options.runner}.{traffic.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    traffic.write(path)
    return path


def start_locust(
    options: UiOptions, server: RunningServer, log_path: Path, traffic_file: Path | None = None
) -> Child:
    """Locust's web UI on the load-generator CPUs, through the supervisor (in the ledger)."""
    return supervisor.spawn(
        "locust",
        locust_command(options, server, traffic_file),
        env=server_env({"PYTHONUNBUFFERED": "1"}),
        log_path=log_path,
        cpus=options.placement.loadgen,
    )


def wait_for_ui(child: Child, host: str, port: int, timeout: float) -> None:
    """Until Locust's web UI answers ``GET /`` (``RunnerError`` if Locust exits or is slow)."""

    def probe() -> str | None:
        try:
            status, body = http_get(host, port, "/", timeout=2.0)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if status == 200 and b"templateArgs" in body else f"HTTP {status}"

    last = supervisor.wait_ready(child, probe, timeout, " before its web UI came up", 0.2)
    if last is not None:
        raise child.error(
            f"the web UI did not answer on {host}:{port} within {timeout:g}s ({last})"
        )


# --- the session -------------------------------------------------------------------------------


def banner(
    options: UiOptions, server: RunningServer, locust: Child, served: ServedProject | None = None
) -> str:
    runner = server.runner
    web = url(options.web_host, options.web_port)
    threads = f" x {server.threads} threads" if server.threads else ""
    master = "1 master + " if server.command.master else ""
    views = f", views {server.base_url()}" if served is None else ""
    lines = [
        f"{runner.name} ({runner.family}, {runner.server} {runner.interface}) on {server.url}",
        f"  pid {server.pid}: {master}{server.workers} worker(s){threads}, gc {server.gc}{views}",
        f"  {options.placement.describe()}",
        f"  server log: {server.log_path}",
    ]
    if served is not None:
        lines += served.describe(runner.interface)
    if server.upstream_url:
        lines.append(f"  upstream:   {server.upstream_url}")
    processes = f", {options.processes} Locust worker processes" if options.processes else ""
    listening = f"  (listening on {options.web_host or '*'})"
    lines += [
        "",
        f"Locust web UI: {web}/" + (listening if all_interfaces(options.web_host) else ""),
        f"  {describe_workload(options)}{processes}",
        f"  server memory: the 'Server memory' tab while a test runs; live charts at {web}/memory/",
        f"  locust log: {locust.log_path} (pid {locust.pid})",
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def describe_workload(options: UiOptions) -> str:
    traffic = options.traffic
    if traffic is not None and traffic.source == "locustfile":
        classes = ", ".join(traffic.user_classes)
        return f"traffic:  {options.traffic_path} (user classes {classes}, each task paced)"
    if traffic is not None:
        return (
            f"traffic:  {options.traffic_path} ({traffic.source}: {len(traffic.entries)} "
            "request(s) by weight, TrafficUser)"
        )
    if options.workload is None:
        return "workload: pick user classes in the UI (class picker)"
    return f"workload: {options.workload} ({WORKLOADS[options.workload].user_class})"


def server_config(options: UiOptions, log_path: Path, served: ServedProject | None) -> ServeConfig:
    """The built-in app (with the upstream when a workload may need it), or ``served``
    from its own environment."""
    config = ServeConfig(
        runner=RUNNERS[options.runner],
        log_path=log_path,
        host=options.host,
        port=options.port or None,
        workers=options.workers,
        threads=options.threads,
        variant=options.variant,
        gc=options.gc,
        middleware=options.middleware,
        cpus=options.placement.server,
        python=options.python,
        with_upstream=options.needs_upstream,
        upstream_cpus=options.placement.loadgen,
    )
    if served is None:
        return config
    return dataclasses.replace(config, python=served.env.python, subject=served.subject)


def say(text: str) -> None:
    print(text, flush=True)


def run(options: UiOptions) -> int:
    """The whole session; the exit status."""
    log_dir = options.log_dir
    server_log = log_dir / f"ui-{options.runner}.log"
    locust_log = log_dir / f"ui-{options.runner}.locust.log"
    done = threading.Event()
    follower: threading.Thread | None = None
    server: RunningServer | None = None
    locust: Child | None = None
    served: ServedProject | None = None
    status = 0
    # Left after Locust and the server stopped: a project's work folder and database copy.
    with contextlib.ExitStack() as stack:
        try:
            check_port_free(options.web_host, options.web_port, "--web-port")
            if options.project is not None:
                served = serve_target(options.project, options.python, stack, say)
            elif options.prepare:
                print("preparing the database (migrate + seed)...", flush=True)
                env = {"BENCH_MIDDLEWARE": options.middleware}
                prepare_database(env, python=options.python, **options.seed)
            traffic_file = write_traffic(options, log_dir)
            cpus = format_cpus(options.placement.server)
            print(f"starting {options.runner} on CPUs {cpus}...", flush=True)
            server = start(server_config(options, server_log, served))
            cpus = format_cpus(options.placement.loadgen)
            print(f"starting Locust on CPUs {cpus}...", flush=True)
            locust = start_locust(options, server, locust_log, traffic_file)
            if not options.quiet:
                follower = threading.Thread(target=follow_log, args=(locust_log, done), daemon=True)
                follower.start()
            wait_for_ui(locust, options.web_host, options.web_port, UI_STARTUP_TIMEOUT_S)
            print(banner(options, server, locust, served), flush=True)
            ticks = 0
            while server.alive() and locust.alive():
                time.sleep(0.5)
                ticks += 1
                if ticks % 4 == 0:
                    locust.track()
            if not server.alive():
                print(
                    f"\n{options.runner} exited on its own; see {server.log_path}", file=sys.stderr
                )
            else:
                print(f"\nLocust exited on its own; see {locust_log}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)
        except ProjectError as exc:
            print(f"python -m runners.cli.ui: error: --project: {exc}", file=sys.stderr)
            status = 2
        except (RunnerError, PrepareError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
        finally:
            # A second Ctrl-C (or tox's SIGTERM) must not interrupt the clean-up.
            ignore_stop_signals()
            status = max(status, shutdown(locust, server))
            done.set()
            if follower is not None:
                follower.join(timeout=2.0)
        return status


def shutdown(locust: Child | None, server: RunningServer | None) -> int:
    """Stop Locust and the server (both at once), check nothing is left; the exit status."""
    errors: list[str] = []
    if locust is not None:
        supervisor.terminate(locust)  # Locust and the server stop at the same time
    if server is not None:
        try:
            stop(server)
        except RunnerError as exc:
            errors.append(str(exc))
    if locust is not None:
        try:
            supervisor.stop(locust, LOCUST_GRACE_S)
        except RunnerError as exc:
            errors.append(str(exc))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if server is not None or locust is not None:
        if errors:
            return 1
        print("Locust and the server stopped; no process left.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"python -m runners.cli.ui: error: {exc}", file=sys.stderr)
        return 2
    if options is None:
        return 0
    # A session killed before it could stop its processes left them in its ledger.
    stray = supervisor.strays_message()
    if stray is not None:
        print(stray, flush=True)
    with stop_on_signals(), supervisor.track():
        return run(options)


if __name__ == "__main__":
    sys.exit(main())
