"""The agent: serves the app's runners on the server's own host for a driver elsewhere
(``tox -e agent``).

A small JSON API over ``http.server`` (``ThreadingHTTPServer``). Every request carries
``Authorization: Bearer TOKEN``, compared in constant time (``hmac.compare_digest``);
a missing or wrong token is 401 before the body is even read, and nothing starts.

A driver first takes a *lease* and heartbeats it; every server it starts belongs to
the lease. When the heartbeats stop for longer than the lease (the driver was killed,
or its host vanished), the agent stops the lease's servers and checks none of their
processes is left. Requests name a known runner and validated settings
(``runners.agent.protocol``), never a command line; the agent builds the
``ServeConfig`` itself, pinned to its ``--server-cpus``, with the same records and
the same supervisor as ``tox -e serve`` and the bench's local serving.

Endpoints (all POST with a JSON body but ``GET /environment``):
``/lease``, ``/heartbeat``, ``/release``, ``/prepare``, ``/serve``, ``/stop``,
``/workers``, ``/window/open``, ``/window/close``.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

from runners import REPO_ROOT
from runners.agent.protocol import (
    DEFAULT_LEASE_S,
    DEFAULT_PORT,
    MAX_BODY,
    TOKEN_ENV,
    PrepareRequest,
    ProtocolError,
    Served,
    ServeRequest,
)
from runners.cli.args import Parser, UsageError
from runners.cli.signals import ignore_stop_signals, stop_on_signals
from runners.hosting import LocalHostWindow
from runners.results import environment as env_capture
from runners.results.document import CpuPlacement
from runners.sampling.memory import sample_tree
from runners.serving import preflight, supervisor
from runners.serving.cpus import Placement, placement_from
from runners.serving.registry import RUNNERS
from runners.serving.server import (
    PrepareError,
    RunningServer,
    ServeConfig,
    prepare_database,
    start,
    stop,
)
from runners.serving.supervisor import RunnerError, log_tail

DEFAULT_LOG_DIR = REPO_ROOT / ".data" / "agent"
LOG_RETURN_LINES = 400
"""The end of a server's log the agent sends back when it stops the server."""
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 10.0


class Gone(Exception):
    """The lease is unknown or has expired (HTTP 410)."""


class NotFound(Exception):
    """No such server or window (HTTP 404)."""


def read_token(path: Path | None) -> str:
    """The shared secret: the file's first line, else ``$BENCH_AGENT_TOKEN``
    (``ValueError`` when there is none, or it is too short to be a secret)."""
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(f"no token: give --token-file PATH or set ${TOKEN_ENV}")
    if len(token) < 16:
        raise ValueError("the token is shorter than 16 characters")
    return token


@dataclass
class Slot:
    """A server the agent runs for a lease, and its open windows."""

    served: Served
    server: RunningServer
    windows: dict[str, LocalHostWindow] = field(default_factory=dict)


@dataclass
class DriverLease:
    id: str
    lease_s: float
    last: float
    slots: dict[str, Slot] = field(default_factory=dict)

    def expired(self, now: float) -> bool:
        return now - self.last > self.lease_s


class Agent:
    """The agent's state: its placement, token, leases and their servers.

    Servers start and stop on one long-lived thread (``_ops``): their parent-death
    signal is tied to the thread that started them, and the HTTP threads are short.
    """

    def __init__(
        self,
        token: str,
        placement: Placement,
        *,
        server_host: str = "127.0.0.1",
        lease_s: float = DEFAULT_LEASE_S,
        log_dir: Path = DEFAULT_LOG_DIR,
        say: Callable[[str], None] = print,
    ) -> None:
        self.token = token.encode()
        self.placement = placement
        self.server_host = server_host
        self.lease_s = lease_s
        self.log_dir = log_dir
        self.say = say
        self.database: str | None = None
        self.seed: dict[str, int] = {}
        self.leases: dict[str, DriverLease] = {}
        self.lock = threading.Lock()
        self._ops = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-ops")
        self._closed = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="agent-lease", daemon=True)
        self._reaper.start()

    # --- authentication

    def authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        return scheme == "Bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    # --- leases

    def lease(self, lease_id: object) -> DriverLease:
        with self.lock:
            found = self.leases.get(str(lease_id))
            if found is None or found.expired(time.monotonic()):
                raise Gone(f"lease {lease_id!r} is unknown or has expired")
            return found

    def slot(self, lease: DriverLease, server_id: object) -> Slot:
        found = lease.slots.get(str(server_id))
        if found is None:
            raise NotFound(f"no server {server_id!r} in this lease")
        return found

    def _reap(self) -> None:
        """Stop the servers of every lease whose heartbeats stopped."""
        while not self._closed.wait(0.2):
            now = time.monotonic()
            with self.lock:
                expired = [lease for lease in self.leases.values() if lease.expired(now)]
                for lease in expired:
                    del self.leases[lease.id]
            for lease in expired:
                self.say(f"lease {lease.id}: no heartbeat for {self.lease_s:g} s; stopping")
                self._stop_all(lease)

    def _stop_all(self, lease: DriverLease) -> None:
        for slot_id in list(lease.slots):
            with contextlib.suppress(RunnerError, NotFound):
                self._stop(lease, slot_id)

    def _stop(self, lease: DriverLease, server_id: str) -> str:
        slot = lease.slots.pop(server_id, None)
        if slot is None:
            raise NotFound(f"no server {server_id!r} in this lease")
        for window in slot.windows.values():
            window.close()
        self._ops.submit(stop, slot.server).result()
        self.say(f"lease {lease.id}: stopped {slot.served.id} ({slot.server.runner.name})")
        return log_tail(slot.server.log_path, LOG_RETURN_LINES)

    def close(self) -> None:
        """Stop every server of every lease (the agent is shutting down)."""
        self._closed.set()
        with self.lock:
            leases = list(self.leases.values())
            self.leases.clear()
        for lease in leases:
            self._stop_all(lease)
        self._ops.shutdown(wait=True)

    # --- the endpoints

    def environment(self) -> dict[str, Any]:
        env = env_capture.capture(
            placement=CpuPlacement(
                server_cpus=self.placement.server,
                loadgen_cpus=self.placement.loadgen,
                shared=self.placement.shared,
            ),
            database_url=self.database,
            redis_url=os.environ.get("REDIS_URL"),
            seed=self.seed,
        )
        return env.to_dict()

    def new_lease(self) -> dict[str, Any]:
        lease = DriverLease(secrets.token_hex(8), self.lease_s, time.monotonic())
        with self.lock:
            self.leases[lease.id] = lease
        self.say(f"lease {lease.id}: taken ({self.lease_s:g} s without heartbeat ends it)")
        return {"lease": lease.id, "lease_s": self.lease_s}

    def heartbeat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        lease = self.lease(body.get("lease"))
        lease.last = time.monotonic()
        return {sid: slot.server.exit_status() for sid, slot in lease.slots.items()}

    def release(self, body: Mapping[str, Any]) -> dict[str, Any]:
        lease = self.lease(body.get("lease"))
        with self.lock:
            self.leases.pop(lease.id, None)
        self._stop_all(lease)
        self.say(f"lease {lease.id}: released")
        return {}

    def prepare(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.lease(body.get("lease"))
        request = PrepareRequest.from_json(body)
        if request.database is not None:
            problem = preflight.database_problem(request.database)
            if problem is not None:
                raise ProtocolError(f"database {preflight.redact(request.database)}: {problem}")
        self.say(f"preparing the database ({env_capture.database_label(request.database)})...")
        prepare_database(
            {"DATABASE_URL": request.database or ""}, sys.executable, 600.0, **(request.seed or {})
        )
        self.database, self.seed = request.database, dict(request.seed or {})
        return {}

    def serve(self, body: Mapping[str, Any]) -> dict[str, Any]:
        lease = self.lease(body.get("lease"))
        request = ServeRequest.from_json(body.get("request") or {})
        request.check(len(self.placement.server))
        server_id = secrets.token_hex(4)
        config = ServeConfig(
            runner=RUNNERS[request.runner],
            log_path=self.log_dir / f"{server_id}-{request.runner}.log",
            host=self.server_host,
            workers=request.workers,
            threads=request.threads,
            variant=request.variant,
            gc=request.gc,
            middleware=request.middleware,
            cpus=self.placement.server,
            env={"DATABASE_URL": request.database or ""},
            with_upstream=request.with_upstream,
            upstream_cpus=self.placement.loadgen,
        )
        server = self._ops.submit(start, config).result()
        served = Served(
            id=server_id,
            port=server.port,
            pid=server.pid,
            workers=server.workers,
            threads=server.threads,
            variant=server.variant,
            gc=server.gc,
            argv=tuple(server.command.argv),
            startup_s=round(server.startup_seconds, 3),
            python=env_capture.python_info().to_dict(),
            django=metadata.version("django"),
        )
        with self.lock:
            alive = lease.id in self.leases
            if alive:
                lease.slots[server_id] = Slot(served, server)
        if not alive:  # the lease ended while the server started
            self._ops.submit(stop, server).result()
            raise Gone(f"lease {lease.id} ended while {request.runner} started")
        self.say(f"lease {lease.id}: {request.runner} serving as {server_id} on {server.url}")
        return served.to_json()

    def stop(self, body: Mapping[str, Any]) -> dict[str, Any]:
        lease = self.lease(body.get("lease"))
        return {"log": self._stop(lease, str(body.get("server")))}

    def workers(self, body: Mapping[str, Any]) -> dict[str, Any]:
        slot = self.slot(self.lease(body.get("lease")), body.get("server"))
        try:
            pids = sorted(p.pid for p in sample_tree(slot.server.pid).workers)
        except ProcessLookupError:
            pids = []
        return {"pids": pids}

    def window_open(self, body: Mapping[str, Any]) -> dict[str, Any]:
        slot = self.slot(self.lease(body.get("lease")), body.get("server"))
        interval = body.get("interval", 1.0)
        if not isinstance(interval, int | float) or not (
            MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S
        ):
            raise ProtocolError(f"interval: expected {MIN_INTERVAL_S}..{MAX_INTERVAL_S} s")
        window = LocalHostWindow(
            slot.server.pid,
            self.placement.server,
            bool(body.get("sample")),
            float(interval),
            slot.server.cgroup,
        )
        window_id = secrets.token_hex(4)
        window.open()
        slot.windows[window_id] = window
        return {"window": window_id}

    def window_close(self, body: Mapping[str, Any]) -> dict[str, Any]:
        slot = self.slot(self.lease(body.get("lease")), body.get("server"))
        window = slot.windows.pop(str(body.get("window")), None)
        if window is None:
            raise NotFound("no such window")
        return window.close().to_json()


ROUTES: dict[tuple[str, str], Callable[[Agent, Mapping[str, Any]], dict[str, Any]]] = {
    ("POST", "/lease"): lambda agent, _body: agent.new_lease(),
    ("POST", "/heartbeat"): lambda agent, body: {"servers": agent.heartbeat(body)},
    ("POST", "/release"): Agent.release,
    ("POST", "/prepare"): Agent.prepare,
    ("POST", "/serve"): Agent.serve,
    ("POST", "/stop"): Agent.stop,
    ("POST", "/workers"): Agent.workers,
    ("POST", "/window/open"): Agent.window_open,
    ("POST", "/window/close"): Agent.window_close,
    ("GET", "/environment"): lambda agent, _body: agent.environment(),
}


class Handler(BaseHTTPRequestHandler):
    server: AgentHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per heartbeat would drown what matters

    def _reply(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        agent = self.server.agent
        if not agent.authorized(self.headers.get("Authorization")):
            self.close_connection = True
            self._reply(401, {"error": "a valid token is required (Authorization: Bearer)"})
            return
        route = ROUTES.get((method, self.path))
        if route is None:
            self.close_connection = True
            self._reply(404, {"error": f"no {method} {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY:
                raise ProtocolError(f"a body of {length} bytes")
            raw = self.rfile.read(length) if length else b"{}"
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ProtocolError("the body is not a JSON object")
            self._reply(200, route(agent, body))
        except (ProtocolError, json.JSONDecodeError, ValueError) as exc:
            self._reply(400, {"error": str(exc).splitlines()[0]})
        except Gone as exc:
            self._reply(410, {"error": str(exc)})
        except NotFound as exc:
            self._reply(404, {"error": str(exc)})
        except (RunnerError, PrepareError) as exc:
            self._reply(500, {"error": str(exc)})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class AgentHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], agent: Agent) -> None:
        self.agent = agent
        super().__init__(address, Handler)


# --- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m runners.agent",
        description="Serve the app's runners on this host for a bench driver elsewhere "
        "(tox -e bench -- --agent http://HOST:PORT).",
    )
    p.add_argument(
        "--bind",
        default="127.0.0.1",
        help="the agent's address (default 127.0.0.1: this machine only; give this "
        "host's address for a driver elsewhere)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default {DEFAULT_PORT})")
    p.add_argument(
        "--token-file",
        type=Path,
        help=f"a file holding the shared secret (default: ${TOKEN_ENV})",
    )
    p.add_argument(
        "--server-cpus", help="CPUs of the servers (default: the first half of this host's)"
    )
    p.add_argument(
        "--server-host",
        help="where the servers listen (default: --bind); the driver's load must reach it",
    )
    p.add_argument(
        "--lease",
        type=float,
        default=DEFAULT_LEASE_S,
        metavar="S",
        help=f"stop a driver's servers after S seconds without its heartbeat (default "
        f"{DEFAULT_LEASE_S:g})",
    )
    p.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR, help="the servers' logs")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        token = read_token(args.token_file)
        placement = placement_from(args.server_cpus, None)
        if not 0 < args.lease <= 3600:
            raise UsageError(f"--lease {args.lease:g}: expected 0 < S <= 3600")
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port}: not a port")
    except ValueError as exc:  # UsageError too
        print(f"agent: error: {exc}", file=sys.stderr)
        return 2
    stray = supervisor.strays_message()
    if stray is not None:
        print(stray, flush=True)

    def say(text: str) -> None:
        print(f"agent: {text}", flush=True)

    with stop_on_signals(), supervisor.track():
        agent = Agent(
            token,
            placement,
            server_host=args.server_host or args.bind,
            lease_s=args.lease,
            log_dir=args.log_dir,
            say=say,
        )
        try:
            httpd = AgentHTTPServer((args.bind, args.port), agent)
        except OSError as exc:
            agent.close()
            print(f"agent: error: cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
            return 2
        host, port = httpd.server_address[:2]
        say(f"listening on http://{host!s}:{port} ({placement.describe()}; lease {args.lease:g} s)")
        try:
            httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            say("stopping...")
        finally:
            ignore_stop_signals()
            httpd.server_close()
            agent.close()
            say("stopped; no server left.")
    return 0
