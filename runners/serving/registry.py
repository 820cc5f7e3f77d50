"""Every way the suite serves the app, as small declarative records.

A runner is data: the server, its interface, its concurrency model and its
settings. ``runners.serving.commands`` turns a record plus a concrete worker/thread
count into a command line; ``runners.serving.server`` runs it. Nothing here starts a
process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from runners.vocabulary import Family, GcMode, Interface, Variant

WorkerRule = Literal["2n+1", "n", "1"]


@dataclass(frozen=True)
class Runner:
    """One way of serving the app.

    ``workers`` is a rule evaluated against the CPUs given to the server
    (``2n+1`` pre-fork workers, ``n`` async workers, ``1`` for single-process
    servers); ``threads`` is a per-worker thread count for threaded servers.
    Both can be overridden per run. ``variant`` is the view variant served by
    default (``/sync/...`` or ``/async/...``); ASGI runners can be told to
    serve the sync views to measure the thread hop. ``preload`` means the app
    is imported in the master before the workers are forked. ``options`` are
    extra server options appended verbatim to the generated command line.
    ``app`` replaces the Django app's import target (None: the interface's
    entry point). ``keep_alive``: the server keeps connections alive.
    ``experimental`` marks a runner that changes Django itself (``--list`` and
    the report say so); it is in no default matrix.
    """

    name: str
    family: Family
    server: str
    interface: Interface
    variant: Variant
    workers: WorkerRule
    threads: int | None = None
    preload: bool = False
    gc: GcMode = "default"
    options: tuple[str, ...] = ()
    description: str = ""
    app: str | None = None
    experimental: bool = False
    keep_alive: bool = True
    """Does it keep HTTP/1.1 connections alive? (gunicorn's sync worker closes each
    one; each run records the measured ``connections_per_request``.)"""


def worker_count(rule: WorkerRule, cpus: int) -> int:
    """Worker count for a rule on ``cpus`` CPUs."""
    if rule == "2n+1":
        return 2 * cpus + 1
    if rule == "n":
        return max(1, cpus)
    return 1


def takes_workers(runner: Runner) -> bool:
    """Whether ``--workers`` applies: the runner can run several processes."""
    return runner.workers != "1"


def takes_threads(runner: Runner) -> bool:
    """Whether ``--threads`` applies: the runner serves from a pool of threads."""
    return runner.threads is not None


SWEEP_THREADS = (1, 2, 4, 8)
"""``--sweep``: the thread counts of a threaded runner (at one worker)."""


def _doubling(top: int) -> list[int]:
    """1, 2, 4 ... below ``top``, then ``top``."""
    counts = [1]
    while counts[-1] * 2 <= top:
        counts.append(counts[-1] * 2)
    if counts[-1] != top:
        counts.append(top)
    return counts


def sweep_counts(runner: Runner, cpus: int) -> list[tuple[int | None, int | None]]:
    """``--sweep``: the (workers, threads) a runner runs at on ``cpus`` server CPUs
    (None: the count does not apply to it).

    - pre-fork: workers 1, 2, 4 ... (doubling while below n), n and 2n+1 (the rule's);
    - threaded: threads 1, 2, 4, 8 at one worker (waitress: its one process), then
      at the runner's own thread count workers as for async (the planner fits
      capacity against workers per thread count);
    - async: workers 1, 2, 4 ... (doubling while below n) and n;
    - a single-process server runs once."""
    n = max(1, cpus)
    if takes_threads(runner):
        if not takes_workers(runner):
            return [(None, t) for t in SWEEP_THREADS]
        pairs: list[tuple[int | None, int | None]] = [(1, t) for t in SWEEP_THREADS]
        return pairs + [(w, runner.threads) for w in _doubling(n) if w > 1]
    if not takes_workers(runner):
        return [(None, None)]
    prefork = runner.workers == "2n+1"
    counts = sorted({*_doubling(n), 2, 2 * n + 1}) if prefork else _doubling(n)
    return [(w, None) for w in counts]


SWEEP_RULE = (
    "pre-fork: workers 1, 2, 4 ... (doubling while below n), n and 2n+1; threaded: threads "
    f"{', '.join(map(str, SWEEP_THREADS))} at one worker, and workers as for async at the "
    "runner's own thread count; async: workers 1, 2, 4 ... "
    "(doubling while below n) and n; single-process servers: one run (n: the server CPUs)"
)


_RUNNERS: tuple[Runner, ...] = (
    # Pre-fork WSGI: one request at a time per process.
    Runner(
        name="gunicorn-sync",
        family="prefork",
        server="gunicorn",
        interface="wsgi",
        variant="sync",
        workers="2n+1",
        options=("--worker-class", "sync"),
        keep_alive=False,
        description="gunicorn sync workers, gunicorn's defaults, app imported in each worker",
    ),
    Runner(
        name="gunicorn-sync-preload",
        family="prefork",
        server="gunicorn",
        interface="wsgi",
        variant="sync",
        workers="2n+1",
        preload=True,
        options=("--worker-class", "sync"),
        keep_alive=False,
        description="gunicorn sync workers, --preload: app imported once in the master",
    ),
    Runner(
        name="gunicorn-sync-freeze",
        family="prefork",
        server="gunicorn",
        interface="wsgi",
        variant="sync",
        workers="2n+1",
        preload=True,
        gc="freeze",
        options=("--worker-class", "sync"),
        keep_alive=False,
        description=(
            "gunicorn sync, preload + Instagram's copy-on-write pattern: gc.disable() "
            "in the master, gc.freeze() before fork, gc.enable() in each worker"
        ),
    ),
    Runner(
        name="uwsgi",
        family="prefork",
        server="uwsgi",
        interface="wsgi",
        variant="sync",
        workers="2n+1",
        preload=True,
        keep_alive=False,
        description="uWSGI (pyuwsgi wheel), master + processes, app loaded before fork",
    ),
    # Threaded WSGI.
    Runner(
        name="gunicorn-gthread",
        family="threaded",
        server="gunicorn",
        interface="wsgi",
        variant="sync",
        workers="n",
        threads=4,
        options=("--worker-class", "gthread"),
        description="gunicorn gthread workers: workers x threads",
    ),
    Runner(
        name="waitress",
        family="threaded",
        server="waitress",
        interface="wsgi",
        variant="sync",
        workers="1",
        threads=4,
        description="waitress: one process, a pool of threads",
    ),
    Runner(
        name="granian-wsgi",
        family="threaded",
        server="granian",
        interface="wsgi",
        variant="sync",
        workers="n",
        threads=4,
        description="granian (Rust server), WSGI interface, blocking threads per worker",
    ),
    # Async ASGI.
    Runner(
        name="uvicorn",
        family="async",
        server="uvicorn",
        interface="asgi",
        variant="async",
        workers="n",
        description="uvicorn, uvloop + httptools; --workers are spawned (not forked)",
    ),
    Runner(
        name="gunicorn-uvicorn",
        family="async",
        server="gunicorn",
        interface="asgi",
        variant="async",
        workers="n",
        preload=True,
        options=("--worker-class", "uvicorn_worker.UvicornWorker"),
        description="gunicorn master with uvicorn-worker's UvicornWorker, preload",
    ),
    Runner(
        name="gunicorn-asgi",
        family="async",
        server="gunicorn",
        interface="asgi",
        variant="async",
        workers="n",
        preload=True,
        options=("--worker-class", "asgi", "--asgi-loop", "uvloop"),
        description="gunicorn's own asgi worker class (uvloop), preload",
    ),
    Runner(
        name="granian-asgi",
        family="async",
        server="granian",
        interface="asgi",
        variant="async",
        workers="n",
        options=("--loop", "uvloop"),
        description="granian (Rust server), ASGI interface, uvloop",
    ),
    Runner(
        name="hypercorn",
        family="async",
        server="hypercorn",
        interface="asgi",
        variant="async",
        workers="n",
        options=("--worker-class", "uvloop"),
        description="hypercorn, uvloop workers (spawned)",
    ),
    Runner(
        name="uvicorn-pooled",
        family="async",
        server="uvicorn",
        interface="asgi",
        variant="async",
        workers="n",
        app="runners.serving.servers.pooled_asgi:application",
        experimental=True,
        description=(
            "uvicorn as above, serving through an ASGIHandler that reuses one sync thread "
            "per process instead of one per request (runners/serving/servers/"
            "pooled_handler.py); gives up per-request thread isolation; persistent "
            "database connections"
        ),
    ),
    Runner(
        name="daphne",
        family="async",
        server="daphne",
        interface="asgi",
        variant="async",
        workers="1",
        description="daphne (Twisted), one process",
    ),
)

RUNNERS: dict[str, Runner] = {runner.name: runner for runner in _RUNNERS}


def get_runner(name: str) -> Runner:
    """The runner called ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return RUNNERS[name]
    except KeyError:
        raise KeyError(f"unknown runner {name!r}; known: {', '.join(RUNNERS)}") from None


def format_table(cpus: int, runners: Iterable[Runner] | None = None) -> str:
    """A plain-text table of runners with their settings on ``cpus`` server CPUs.

    Used by ``tox -e serve -- --list`` and ``tox -e bench -- --list``.
    """
    head = ("name", "family", "server", "iface", "variant", "workers", "threads", "preload", "gc")
    rows = [(*head, "keep-alive")]
    chosen = list(RUNNERS.values()) if runners is None else list(runners)
    for r in chosen:
        rows.append(
            (
                r.name,
                r.family,
                r.server,
                r.interface,
                r.variant,
                f"{worker_count(r.workers, cpus)} ({r.workers})",
                "-" if r.threads is None else str(r.threads),
                "yes" if r.preload else "no",
                r.gc,
                "yes" if r.keep_alive else "no (a connection per request)",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for r in chosen:
        extra = f"  [{' '.join(r.options)}]" if r.options else ""
        mark = "EXPERIMENTAL: " if r.experimental else ""
        lines.append(f"{r.name}: {mark}{r.description}{extra}")
    return "\n".join(line.rstrip() for line in lines)
