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
The ASGI handlers run on uvloop, the event loop the ASGI runners serve with.

Beside them, what the ASGI cost is made of (``runners.micro.ablation``):

- ``ablation-<part>/minimal/json``: ``ASGIHandler`` with one part removed
  (``runners.micro.handlers``: ``no-executor``, ``sync-signals``,
  ``inline-close``, ``bare``), and ``ablation-asyncio/minimal/json``: the
  unchanged handler on asyncio's own loop instead of uvloop;
- ``db-connect/minimal/db``: opening and closing the database connection,
  which the ASGI handlers pay once per request that queries (``CONN_MAX_AGE``
  is 0 under ASGI: each request's sync work runs on a new thread) and the
  WSGI handler once per process.

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
from typing import Any, Literal, NamedTuple, TypeVar, cast

from runners import REPO_ROOT

SETTINGS_MODULE = "apps.project.settings"

_T = TypeVar("_T")

Handler = Literal[
    "wsgi-sync",
    "asgi-async",
    "asgi-sync",
    "ablation-no-executor",
    "ablation-sync-signals",
    "ablation-inline-close",
    "ablation-bare",
    "ablation-asyncio",
    "db-connect",
]
Profile = Literal["minimal", "default"]
Loop = Literal["asyncio", "uvloop"]

HANDLERS: tuple[Handler, ...] = ("wsgi-sync", "asgi-async", "asgi-sync")
ABLATION_HANDLERS: tuple[Handler, ...] = (
    "ablation-no-executor",
    "ablation-sync-signals",
    "ablation-inline-close",
    "ablation-bare",
    "ablation-asyncio",
)
ABLATION_PROFILE: Profile = "minimal"
ABLATION_VIEW = "json"
CONNECT_VIEW = "db"
SERVER_LOOP: Loop = "uvloop"
"""The event loop of the ASGI benchmarks: the one the ASGI runners serve with."""
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
        return "sync" if self.handler in ("wsgi-sync", "asgi-sync") else "async"

    @property
    def loop(self) -> Loop | None:
        """The event loop an ASGI benchmark runs on (None: WSGI, or no request)."""
        if self.interface == "wsgi" or self.handler == "db-connect":
            return None
        return "asyncio" if self.handler == "ablation-asyncio" else SERVER_LOOP

    @property
    def path(self) -> str:
        return f"/{self.variant}/{VIEWS.get(self.view, self.view)}"


def main_specs() -> list[Spec]:
    """The three handlers side by side per profile and view (18 benchmarks)."""
    return [
        Spec(handler, profile, view)
        for profile in PROFILES
        for view in VIEWS
        for handler in HANDLERS
    ]


def all_specs() -> list[Spec]:
    """Every benchmark, in run order: the main 18, the ablation, the connect cost."""
    return [
        *main_specs(),
        *(Spec(h, ABLATION_PROFILE, ABLATION_VIEW) for h in ABLATION_HANDLERS),
        Spec("db-connect", ABLATION_PROFILE, CONNECT_VIEW),
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


def loop_factory(loop: Loop | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What creates the event loop ``loop`` (None: asyncio's default)."""
    if loop == "uvloop":
        import uvloop

        return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)
    return None


def asgi_handler(handler: Handler) -> Callable[..., Awaitable[None]]:
    """Django's ``ASGIHandler``, or for an ``ablation-*`` handler the variant it names."""
    from django.core.handlers.asgi import ASGIHandler

    from runners.micro.handlers import ABLATIONS, ablated_handler

    part = handler.removeprefix("ablation-")
    for ablation in ABLATIONS:
        if part == ablation:
            return cast(Callable[..., Awaitable[None]], ablated_handler(ablation))
    return cast(Callable[..., Awaitable[None]], ASGIHandler())


def connect_and_close() -> None:
    """Open the default database connection and close it (what CONN_MAX_AGE=0 pays per request)."""
    from django.db import connection

    connection.connect()
    connection.close()


def run_async(func: Callable[[], Awaitable[_T]], loop: Loop | None) -> _T:
    """``await func()`` on a new event loop of kind ``loop``."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(_awaited(func))


def build(spec: Spec) -> Prepared:
    """Build the handler for ``spec``, do one request and fail loudly unless it answers 200.

    The first request also warms what a server's first request warms (URL
    resolver, cached template loader, database connection).
    """
    from django.core.handlers.wsgi import WSGIHandler

    _use_profile(spec.profile)
    func: Callable[[], Any]
    if spec.handler == "db-connect":
        connect_and_close()
        return Prepared(connect_and_close, Response(200, [], b"connected"))
    if spec.interface == "wsgi":
        wsgi = wsgi_caller(cast(Callable[..., Iterable[bytes]], WSGIHandler()), spec.path)
        response = wsgi_response(wsgi())
        func = wsgi
    else:
        asgi = asgi_caller(asgi_handler(spec.handler), spec.path)
        response = asgi_response(run_async(asgi, spec.loop))
        func = asgi
    if response.status != 200:
        raise RuntimeError(
            f"{spec.name}: GET {spec.path} answered {response.status}, not 200:\n"
            + response.body[:2000].decode("utf-8", "replace")
        )
    return Prepared(func, response)


async def _awaited(func: Callable[[], Awaitable[_T]]) -> _T:
    return await func()


def response_metadata(response: Response) -> dict[str, str | int]:
    """What the checked response looked like (shows that the middleware ran)."""
    meta: dict[str, str | int] = {
        "response_status": response.status,
        "response_bytes": len(response.body),
    }
    if response.headers:  # pyperf refuses empty metadata (db-connect has no response)
        meta["response_headers"] = ", ".join(sorted({n.lower() for n, _ in response.headers}))
    return meta


def database_vendor() -> str:
    from django.db import connection

    return str(connection.vendor)


def prepare_database(environ: Mapping[str, str]) -> None:
    """Migrate and seed the benchmark database (idempotent), in a child process."""
    command = [sys.executable, "-m", "apps.manage", "prepare", *PREPARE_ARGS]
    print("micro: preparing the database:", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=dict(environ))


def default_output(now: float | None = None) -> Path:
    """``reports/<timestamp>/micro.json``: a new run folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return REPO_ROOT / "reports" / stamp / "micro.json"


def command(output: str | os.PathLike[str], pyperf_args: Sequence[str] = ()) -> list[str]:
    """The command line that runs the micro-benchmarks into ``output`` (for ``runners.bench``)."""
    return [sys.executable, "-m", "runners.micro", *pyperf_args, "--output", os.fspath(output)]
