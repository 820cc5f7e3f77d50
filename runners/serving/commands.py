"""Runner + concrete settings -> the server's command line and environment.

One function, ``command``, dispatching on ``runner.server``. Every server runs
as ``<python> -m <module>`` (uWSGI: ``<python> -c`` calling the pyuwsgi
wheel's entry point, which has no ``__main__``) so the interpreter can be
switched. Access logs are off everywhere (gunicorn, granian, hypercorn and
waitress have none by default; uvicorn, daphne and uWSGI are told so).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from runners.serving.registry import Runner
from runners.serving.subject import BUILTIN, Subject
from runners.vocabulary import GcMode

UWSGI_APP = "runners.serving.servers.uwsgi_app:application"
GUNICORN_CONFIG = "python:runners.serving.servers.gunicorn_conf"
# pyuwsgi has no __main__ module; this is its console script's body.
PYUWSGI_MAIN = "import sys; from pyuwsgi import run; sys.exit(run())"

# Servers that fork their workers from a master that can import the app first:
# the only ones where a garbage-collector mode other than "default" applies.
GC_SERVERS = frozenset({"gunicorn", "uwsgi"})
# Servers that run one process whatever the CPU count.
SINGLE_PROCESS_SERVERS = frozenset({"waitress", "daphne"})


@dataclass(frozen=True)
class Settings:
    """The concrete values a runner's rules resolve to for one run."""

    host: str
    port: int
    workers: int
    threads: int | None
    gc: GcMode = "default"
    python: str = sys.executable
    app: str | None = None  # import target replacing the Django app (tests, probes)
    subject: Subject = BUILTIN
    """The Django app served: its WSGI or ASGI callable is the server's import target."""


@dataclass(frozen=True)
class ServerCommand:
    """What to execute: argv, the extra environment, and the process layout.

    ``master`` is True when the root process supervises workers and serves no
    request itself (so the tree holds ``workers + 1`` server processes).
    """

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    master: bool = True


def check(runner: Runner, settings: Settings) -> None:
    """``ValueError`` for settings the runner's server cannot honour."""
    if settings.workers < 1:
        raise ValueError(f"{runner.name}: workers must be >= 1, got {settings.workers}")
    if settings.threads is not None and settings.threads < 1:
        raise ValueError(f"{runner.name}: threads must be >= 1, got {settings.threads}")
    if runner.server in SINGLE_PROCESS_SERVERS and settings.workers != 1:
        raise ValueError(f"{runner.name}: {runner.server} runs a single process (workers=1)")
    if settings.threads is not None and (
        runner.interface == "asgi" or runner.server in {"daphne", "hypercorn", "uvicorn"}
    ):
        raise ValueError(f"{runner.name}: an ASGI server has no thread setting")
    if settings.gc != "default" and runner.server not in GC_SERVERS:
        raise ValueError(
            f"{runner.name}: --gc {settings.gc} needs a pre-fork server that imports the "
            f"app in its master ({', '.join(sorted(GC_SERVERS))}), not {runner.server}"
        )
    if runner.preload and runner.server not in GC_SERVERS:
        raise ValueError(f"{runner.name}: {runner.server} cannot preload the app")


def command(runner: Runner, settings: Settings) -> ServerCommand:
    """The command line that serves the app with ``runner`` and ``settings``."""
    check(runner, settings)
    s = settings
    app = s.app or runner.app or s.subject.app(runner.interface)
    env: dict[str, str] = {"BENCH_GC": s.gc}
    match runner.server:
        case "gunicorn":
            argv = [s.python, "-m", "gunicorn", "--config", GUNICORN_CONFIG]
            # gunicorn 24+ opens a control socket at one fixed path per user:
            # concurrent servers would fight over it.
            argv.append("--no-control-socket")
            argv += ["--bind", f"{_host(s.host)}:{s.port}", "--workers", str(s.workers)]
            if s.threads is not None:
                argv += ["--threads", str(s.threads)]
            if runner.preload:
                argv.append("--preload")
            return ServerCommand((*argv, *runner.options, app), env, master=True)
        case "uwsgi":
            if runner.interface != "wsgi":
                raise ValueError(f"{runner.name}: uWSGI runners serve WSGI")
            env["BENCH_WSGI_APP"] = app  # imported by the uwsgi_app wrapper
            argv = [s.python, "-c", PYUWSGI_MAIN, "--strict", "--master"]
            argv += ["--processes", str(s.workers)]
            if s.threads is not None:
                argv += ["--threads", str(s.threads), "--enable-threads"]
            # --http-socket closes every connection (without "Connection: close").
            # --http11-socket keeps them alive, but a uWSGI worker then serves one
            # connection until the client closes it: with more clients than workers
            # the others wait (measured: timeouts from 4 Locust users on 3 workers,
            # thousands in an open loop), so it is not used. Nor is the HTTP router
            # (--http ADDR --http-keepalive): it keeps connections and shares the
            # workers, but its process cannot be told from a worker in /proc under
            # pyuwsgi, and it cost a third of json's throughput on one core (measured
            # with wrk -c32: 3,236 against 4,800 req/s). Every response of the
            # app and of the test apps has a Content-Length, as --http11-socket needs.
            argv += ["--http-socket", f"{_host(s.host)}:{s.port}", "--module", UWSGI_APP]
            if not runner.preload:
                argv.append("--lazy-apps")
            # --die-on-term: uWSGI 2.0 reloads on SIGTERM otherwise.
            argv += ["--need-app", "--die-on-term", "--no-orphans", "--disable-logging"]
            argv.append("--py-call-osafterfork")
            return ServerCommand((*argv, *runner.options), env, master=True)
        case "waitress":
            argv = [s.python, "-m", "waitress", f"--listen={_host(s.host)}:{s.port}"]
            if s.threads is not None:
                argv.append(f"--threads={s.threads}")
            return ServerCommand((*argv, *runner.options, app), env, master=False)
        case "granian":
            argv = [s.python, "-m", "granian", "--interface", runner.interface]
            argv += ["--host", s.host, "--port", str(s.port), "--workers", str(s.workers)]
            if s.threads is not None:
                argv += ["--blocking-threads", str(s.threads)]
            return ServerCommand((*argv, *runner.options, app), env, master=True)
        case "uvicorn":
            argv = [s.python, "-m", "uvicorn", "--host", s.host, "--port", str(s.port)]
            argv += ["--workers", str(s.workers), "--loop", "uvloop", "--http", "httptools"]
            argv.append("--no-access-log")
            # One worker: uvicorn serves in the root process, no supervisor.
            return ServerCommand((*argv, *runner.options, app), env, master=s.workers > 1)
        case "hypercorn":
            argv = [s.python, "-m", "hypercorn", "--bind", f"{_host(s.host)}:{s.port}"]
            argv += ["--workers", str(s.workers)]
            return ServerCommand((*argv, *runner.options, app), env, master=True)
        case "daphne":
            argv = [s.python, "-m", "daphne", "--bind", s.host, "--port", str(s.port)]
            argv += ["--verbosity", "0"]  # 0: warnings and errors, no access log
            return ServerCommand((*argv, *runner.options, app), env, master=False)
        case other:
            raise ValueError(f"{runner.name}: unknown server {other!r}")


def _host(host: str) -> str:
    """``host`` as the host part of ``host:port`` (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
