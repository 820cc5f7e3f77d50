"""pyperf micro-benchmarks of what Django itself costs per request.

Load tests measure whole servers. These benchmarks call Django's own handlers
in-process, with no server and no network, so that the price of each request
path can be read apart from the server's:

- ``wsgi-sync``: ``WSGIHandler`` serving a sync view (``/sync/<view>``);
- ``asgi-async``: ``ASGIHandler`` serving an async view (``/async/<view>``);
- ``asgi-sync``: ``ASGIHandler`` serving a sync view (the thread hop Django's
  documentation prices at about a millisecond);

each with the ``minimal`` and the ``default`` middleware profile, for the
``json``, ``fortunes`` (template rendering) and ``feed`` (ORM) views: 18
benchmarks named ``<handler>/<profile>/<view>``, e.g. ``asgi-sync/default/feed``.

Run it as ``python -m runners.micro [pyperf options] [-o FILE]`` (or
``tox -e micro -- ...``). Every pyperf option works as usual: ``--fast``,
``--rigorous``, ``--debug-single-value``, ``-p``/``-n``/``-l``, ``--append``,
``-o``. Without ``-o``/``--append`` the results go to
``reports/<timestamp>/micro.json``. The file is ordinary pyperf JSON:
``python -m pyperf show|stats|hist FILE`` read it and
``python -m pyperf compare_to OLD.json NEW.json`` compares two runs.

pyperf re-executes this module in worker processes (``--worker
--worker-task=N``); a worker builds only benchmark N, with its middleware
profile selected (``BENCH_MIDDLEWARE``) before Django is set up, and checks
that the path answers 200 before the timing starts. The database is prepared
(``python -m apps.manage prepare``) once, by the parent process.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import io
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import pyperf

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_MODULE = "apps.project.settings"

Handler = Literal["wsgi-sync", "asgi-async", "asgi-sync"]
Profile = Literal["minimal", "default"]

HANDLERS: tuple[Handler, ...] = ("wsgi-sync", "asgi-async", "asgi-sync")
PROFILES: tuple[Profile, ...] = ("minimal", "default")

FEED_USER_ID = 1
"""The member whose feed is requested: the seed gives member 1 followees with posts."""

VIEWS: dict[str, str] = {
    "json": "json",
    "fortunes": "fortunes",
    "feed": f"feed/{FEED_USER_ID}",
}
"""Benchmark view name -> URL path under ``/sync/`` or ``/async/``."""

PREPARE_ARGS: tuple[str, ...] = ()
"""Extra arguments of ``python -m apps.manage prepare`` (its defaults are used)."""

SETTINGS_ENVIRON = (
    "DJANGO_SECRET_KEY",
    "BENCH_ALLOWED_HOSTS",
    "BENCH_DATA_DIR",
    "BENCH_UPSTREAM_URL",
    "DATABASE_URL",
    "REDIS_URL",
)
"""Environment read by the settings: pyperf workers inherit these."""

HOST = "localhost"
REQUEST_HEADERS: tuple[tuple[str, str], ...] = (
    ("host", HOST),
    ("user-agent", "runners.micro"),
    ("accept", "*/*"),
)
"""The same headers for both interfaces (what a load-test client sends)."""


@dataclass(frozen=True)
class Spec:
    """One benchmark: a handler, a middleware profile and a view."""

    handler: Handler
    profile: Profile
    view: str

    @property
    def name(self) -> str:
        return f"{self.handler}/{self.profile}/{self.view}"

    @property
    def interface(self) -> Literal["wsgi", "asgi"]:
        return "wsgi" if self.handler.startswith("wsgi") else "asgi"

    @property
    def variant(self) -> Literal["sync", "async"]:
        return "async" if self.handler.endswith("async") else "sync"

    @property
    def path(self) -> str:
        return f"/{self.variant}/{VIEWS[self.view]}"


def all_specs() -> list[Spec]:
    """Every benchmark, in run order: the three handlers side by side per profile and view."""
    return [
        Spec(handler, profile, view)
        for profile in PROFILES
        for view in VIEWS
        for handler in HANDLERS
    ]


def select_specs(patterns: str | None) -> list[Spec]:
    """The benchmarks whose name matches one of the comma-separated glob ``patterns``."""
    specs = all_specs()
    if not patterns:
        return specs
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    return [s for s in specs if any(fnmatch.fnmatchcase(s.name, g) for g in globs)]


# --- Calling the handlers -------------------------------------------------------


class Response(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


WsgiResult = tuple[str, list[tuple[str, str]], list[bytes]]
AsgiResult = list[Mapping[str, Any]]


def wsgi_environ(path: str) -> dict[str, Any]:
    """A PEP 3333 environ for ``GET path``, as a WSGI server would build it."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in REQUEST_HEADERS:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def asgi_scope(path: str) -> dict[str, Any]:
    """An ASGI HTTP scope for ``GET path``, as an ASGI server would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in REQUEST_HEADERS],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def _discard(data: bytes) -> None:
    """The ``write`` callable that ``start_response`` returns (Django never uses it)."""


def wsgi_caller(handler: Callable[..., Iterable[bytes]], path: str) -> Callable[[], WsgiResult]:
    """A zero-argument function doing one ``GET path`` through a WSGI application.

    Like a server: a fresh environ and input stream per request, the body
    iterated to the end, then ``close()`` (which sends ``request_finished``).
    """
    base = wsgi_environ(path)

    def call() -> WsgiResult:
        environ = base.copy()
        environ["wsgi.input"] = io.BytesIO(b"")
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], None]:
            started.append((status, headers))
            return _discard

        result = handler(environ, start_response)
        try:
            chunks = list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started[0]
        return status, headers, chunks

    return call


def wsgi_response(result: WsgiResult) -> Response:
    status, headers, chunks = result
    return Response(int(status.split(" ", 1)[0]), list(headers), b"".join(chunks))


_REQUEST_MESSAGE: Mapping[str, Any] = {"type": "http.request", "body": b"", "more_body": False}


def asgi_caller(
    handler: Callable[..., Awaitable[None]], path: str
) -> Callable[[], Awaitable[AsgiResult]]:
    """A zero-argument coroutine function doing one ``GET path`` through an ASGI application.

    ``receive`` gives the (empty) request body once, then waits like a client
    that stays connected: Django listens for ``http.disconnect`` while the
    view runs and cancels that wait when the response is sent.
    """
    base = asgi_scope(path)

    async def call() -> AsgiResult:
        sent: AsgiResult = []
        pending = [_REQUEST_MESSAGE]

        async def receive() -> Mapping[str, Any]:
            if pending:
                return pending.pop()
            await asyncio.get_running_loop().create_future()
            raise AssertionError("unreachable: the wait above only ends by cancellation")

        async def send(message: Mapping[str, Any]) -> None:
            sent.append(message)

        await handler(base.copy(), receive, send)
        return sent

    return call


def asgi_response(messages: AsgiResult) -> Response:
    if not messages or messages[0].get("type") != "http.response.start":
        raise RuntimeError(f"no http.response.start message: {messages!r}")
    start = messages[0]
    headers = [
        (bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in start["headers"]
    ]
    body = b"".join(m.get("body", b"") for m in messages[1:] if m["type"] == "http.response.body")
    return Response(int(start["status"]), headers, body)


# --- Django in this process ------------------------------------------------------


def setup_django(profile: Profile | None = None, interface: str | None = None) -> None:
    """Set Django up (once).

    ``profile`` selects the middleware profile and ``interface`` (``wsgi`` or
    ``asgi``) the database connection handling, before the settings load, as
    the project's wsgi.py and asgi.py entry points do for a server.
    """
    import django
    from django.apps import apps

    if profile is not None and not apps.ready:
        os.environ["BENCH_MIDDLEWARE"] = profile
    if interface is not None and not apps.ready:
        os.environ["BENCH_INTERFACE"] = interface
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    django.setup(set_prefix=False)


def _use_profile(profile: Profile) -> None:
    """Make ``settings.MIDDLEWARE`` the profile's list (handlers read it when built)."""
    from django.conf import settings

    wanted = list(settings.MIDDLEWARE_PROFILES[profile])
    if list(settings.MIDDLEWARE) != wanted:
        settings.MIDDLEWARE = wanted


class Prepared(NamedTuple):
    """A built benchmark: its function (sync or coroutine) and one checked response."""

    func: Callable[[], Any]
    response: Response


def build(spec: Spec) -> Prepared:
    """Build the handler for ``spec``, do one request and fail loudly unless it answers 200.

    The first request also warms what a server's first request warms (URL
    resolver, cached template loader, database connection).
    """
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    _use_profile(spec.profile)
    func: Callable[[], Any]
    if spec.interface == "wsgi":
        wsgi = wsgi_caller(cast(Callable[..., Iterable[bytes]], WSGIHandler()), spec.path)
        response = wsgi_response(wsgi())
        func = wsgi
    else:
        asgi = asgi_caller(ASGIHandler(), spec.path)
        response = asgi_response(asyncio.run(_awaited(asgi)))
        func = asgi
    if response.status != 200:
        raise RuntimeError(
            f"{spec.name}: GET {spec.path} answered {response.status}, not 200:\n"
            + response.body[:2000].decode("utf-8", "replace")
        )
    return Prepared(func, response)


async def _awaited(func: Callable[[], Awaitable[AsgiResult]]) -> AsgiResult:
    return await func()


def response_metadata(response: Response) -> dict[str, str | int]:
    """What the checked response looked like (shows that the middleware ran)."""
    return {
        "response_status": response.status,
        "response_bytes": len(response.body),
        "response_headers": ", ".join(sorted({name.lower() for name, _ in response.headers})),
    }


def database_vendor() -> str:
    from django.db import connection

    return str(connection.vendor)


def prepare_database(environ: Mapping[str, str]) -> None:
    """Migrate and seed the benchmark database (idempotent), in a child process."""
    command = [sys.executable, "-m", "apps.manage", "prepare", *PREPARE_ARGS]
    print("micro: preparing the database:", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=dict(environ))


# --- Results ---------------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str, str]:
    parts = name.split("/")
    if len(parts) != 3:
        return name, "", ""
    return parts[0], parts[1], parts[2]


def summarize(benchmarks: Iterable[pyperf.Benchmark]) -> list[dict[str, Any]]:
    """One row per benchmark: name, handler, profile, view, mean_s, stdev_s, median_s, values.

    Times are seconds per request; ``stdev_s`` is None when the benchmark has a
    single value (``--debug-single-value``).
    """
    rows: list[dict[str, Any]] = []
    for bench in benchmarks:
        name = bench.get_name()
        meta = bench.get_metadata()
        handler, profile, view = _split_name(name)
        values = bench.get_values()
        rows.append(
            {
                "name": name,
                "handler": meta.get("handler", handler),
                "profile": meta.get("middleware_profile", profile),
                "view": meta.get("view", view),
                "mean_s": bench.mean(),
                "stdev_s": bench.stdev() if len(values) > 1 else None,
                "median_s": bench.median(),
                "values": len(values),
            }
        )
    return rows


def summary(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of :func:`summarize` for a pyperf JSON file (for the HTML report)."""
    suite = pyperf.BenchmarkSuite.load(os.fspath(path))
    return summarize(suite.get_benchmarks())


def overhead(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ASGI paths' extra cost over ``wsgi-sync``, per profile and view, in microseconds.

    One row per (profile, view) that has a ``wsgi-sync`` mean: ``wsgi_sync_us``,
    ``asgi_async_us``, ``asgi_sync_us`` (means) and ``asgi_async_extra_us``,
    ``asgi_sync_extra_us`` (differences; None when a mean is missing).
    """
    means = {(r["handler"], r["profile"], r["view"]): float(r["mean_s"]) for r in rows}
    cells = sorted({(p, v) for (_, p, v) in means}, key=_cell_order)
    table: list[dict[str, Any]] = []
    for profile, view in cells:
        base = means.get(("wsgi-sync", profile, view))
        if base is None:
            continue
        row: dict[str, Any] = {"profile": profile, "view": view, "wsgi_sync_us": base * 1e6}
        for handler in ("asgi-async", "asgi-sync"):
            key = handler.replace("-", "_")
            mean = means.get((handler, profile, view))
            row[f"{key}_us"] = None if mean is None else mean * 1e6
            row[f"{key}_extra_us"] = None if mean is None else (mean - base) * 1e6
        table.append(row)
    return table


def _cell_order(cell: tuple[str, str]) -> tuple[int, int, str]:
    profile, view = cell
    profiles: list[str] = list(PROFILES)
    views = list(VIEWS)
    return (
        profiles.index(profile) if profile in profiles else len(profiles),
        views.index(view) if view in views else len(views),
        view,
    )


def _us(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def format_summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A text table of the means (microseconds per request)."""
    width = max([len("benchmark"), *(len(str(r["name"])) for r in rows)])
    lines = [f"{'benchmark':<{width}}  {'mean us':>10}  {'stdev us':>9}"]
    for r in rows:
        stdev = None if r["stdev_s"] is None else float(r["stdev_s"]) * 1e6
        lines.append(f"{r['name']:<{width}}  {float(r['mean_s']) * 1e6:>10.1f}  {_us(stdev):>9}")
    return lines


def format_overhead(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """A text table of :func:`overhead`."""
    header = (
        f"{'profile':<8} {'view':<9} {'wsgi-sync':>10} {'asgi-async':>11} {'extra':>9} "
        f"{'asgi-sync':>10} {'extra':>9}"
    )
    lines = [header]
    for r in table:
        lines.append(
            f"{r['profile']:<8} {r['view']:<9} {_us(r['wsgi_sync_us']):>10} "
            f"{_us(r['asgi_async_us']):>11} {_us(r['asgi_async_extra_us'], True):>9} "
            f"{_us(r['asgi_sync_us']):>10} {_us(r['asgi_sync_extra_us'], True):>9}"
        )
    return lines


# --- Command line ------------------------------------------------------------------


def default_output(now: float | None = None) -> Path:
    """``reports/<timestamp>/micro.json``: a new run folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return REPO_ROOT / "reports" / stamp / "micro.json"


def command(output: str | os.PathLike[str], pyperf_args: Sequence[str] = ()) -> list[str]:
    """The command line that runs the micro-benchmarks into ``output`` (for ``runners.bench``)."""
    return [sys.executable, "-m", "runners.micro", *pyperf_args, "--output", os.fspath(output)]


def _add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runners.micro options")
    group.add_argument(
        "--benchmarks",
        metavar="GLOBS",
        help="comma-separated glob patterns of benchmark names to run, e.g. "
        "'*/minimal/json,asgi-*/*/feed' (default: all 18)",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder of the SQLite database and secret key "
        "(default: $BENCH_DATA_DIR, else .data/ at the repository root)",
    )
    group.add_argument(
        "--skip-prepare",
        action="store_true",
        help="do not run 'python -m apps.manage prepare' first",
    )
    group.add_argument("--list", action="store_true", help="print the benchmark names and exit")


def _worker_args(cmd: list[str], args: argparse.Namespace) -> None:
    """Pass this module's own options on to pyperf's worker processes."""
    if args.benchmarks:
        cmd.extend(["--benchmarks", args.benchmarks])
    if args.data_dir:
        cmd.extend(["--data-dir", args.data_dir])


def _never() -> None:
    raise AssertionError("pyperf ran a benchmark that this worker did not build")


def _configure_environ(args: argparse.Namespace) -> None:
    """Environment of this process and of the workers pyperf spawns (which get a clean one)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    if args.data_dir:
        os.environ["BENCH_DATA_DIR"] = str(Path(args.data_dir).resolve())
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), *paths] if p)
    if not args.worker:
        inherited = list(args.inherit_environ or [])
        args.inherit_environ = inherited + [n for n in SETTINGS_ENVIRON if n not in inherited]


def main(argv: Sequence[str] | None = None) -> int:
    import django

    runner = pyperf.Runner(program_args=("-m", "runners.micro"), add_cmdline_args=_worker_args)
    parser = runner.argparser
    parser.prog = "python -m runners.micro"
    parser.description = (
        "pyperf micro-benchmarks of Django's request path, in-process: WSGIHandler with a "
        "sync view, ASGIHandler with an async view and ASGIHandler with a sync view, per "
        "middleware profile and view. All pyperf options apply."
    )
    parser.epilog = (
        "Without -o/--append the results go to reports/<timestamp>/micro.json. "
        "Read them with 'python -m pyperf show FILE'; compare two runs with "
        "'python -m pyperf compare_to OLD.json NEW.json --table'."
    )
    _add_options(parser)
    args = runner.parse_args(None if argv is None else list(argv))

    specs = select_specs(args.benchmarks)
    if args.list:
        for spec in specs:
            print(spec.name)
        return 0
    if not specs:
        print(f"micro: no benchmark matches {args.benchmarks!r}", file=sys.stderr)
        return 2
    _configure_environ(args)

    runner.metadata["django_version"] = django.__version__
    runner.metadata["description"] = "Django handler in-process, one GET per loop"

    prepared: dict[int, Prepared] = {}
    if args.worker:
        # pyperf calls each bench_*() in order and runs only the --worker-task'th.
        # A worker started by hand without --worker-task runs them all.
        wanted = range(len(specs)) if args.worker_task is None else [args.worker_task]
        wanted = [i for i in wanted if i < len(specs)]
        # The profile and interface are selected before the settings load, as a
        # server would (under ASGI Django's docs say: no persistent connections).
        setup_django(
            specs[wanted[0]].profile if wanted else None,
            specs[wanted[0]].interface if wanted else None,
        )
        runner.metadata["database"] = database_vendor()
        from django.conf import settings

        runner.metadata["conn_max_age"] = str(settings.DATABASES["default"]["CONN_MAX_AGE"])
        for index in wanted:
            prepared[index] = build(specs[index])
    else:
        if not (args.output or args.append or args.compare_to):
            args.output = str(default_output())
        for target in (args.output, args.append):
            if target:
                Path(target).resolve().parent.mkdir(parents=True, exist_ok=True)
        if not args.skip_prepare:
            prepare_database(os.environ)
        # Fail fast, before any worker starts: every path must answer 200.
        setup_django()
        for spec in specs:
            build(spec)
        if not args.quiet:
            print(f"micro: {len(specs)} benchmarks, Django {django.__version__}", flush=True)

    results: list[pyperf.Benchmark] = []
    for index, spec in enumerate(specs):
        metadata: dict[str, Any] = {
            "handler": spec.handler,
            "interface": spec.interface,
            "view_kind": spec.variant,
            "middleware_profile": spec.profile,
            "view": spec.view,
            "path": spec.path,
            "tags": [spec.handler, spec.profile],
        }
        item = prepared.get(index)
        if item is not None:
            metadata.update(response_metadata(item.response))
        func = item.func if item is not None else _never
        if spec.interface == "wsgi":
            bench = runner.bench_func(spec.name, func, metadata=metadata)
        else:
            bench = runner.bench_async_func(spec.name, func, metadata=metadata)
        if bench is not None and not args.worker:
            results.append(bench)

    if results and not args.worker:
        rows = summarize(results)
        print()
        print("Mean time per request (microseconds):")
        print("\n".join(format_summary(rows)))
        table = overhead(rows)
        if table:
            print()
            print("ASGI cost over WSGI per request (microseconds; extra = ASGI mean - WSGI mean):")
            print("\n".join(format_overhead(table)))
        if args.output:
            print(f"\nmicro: results in {args.output}")
            print(f"  python -m pyperf show {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
