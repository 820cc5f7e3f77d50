"""The driver's side of the agent (``--agent http://HOST:PORT``).

``AgentClient`` calls the agent's JSON API with the token. ``AgentClient.lease()``
takes a lease and heartbeats it from a thread (a quarter of the lease apart) until the
block ends, then releases it; every heartbeat also brings back how each server is
doing, so the run's frequent "is the server alive?" checks cost no request.
``RemoteHost`` is the bench's ``ServerHost`` through that lease, ``Remote`` its
``Hosted``: the rest of the run does not know the server is elsewhere.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runners.agent.protocol import TOKEN_ENV, Served, ServeRequest
from runners.hosting import Hosted, HostWindow, WindowFigures
from runners.results.document import Environment
from runners.results.record import PythonInfo
from runners.serving.registry import Runner
from runners.serving.server import RunningServer, ServeConfig
from runners.serving.supervisor import RunnerError
from runners.vocabulary import GcMode, Variant

CALL_TIMEOUT_S = 30.0
SERVE_TIMEOUT_S = 180.0
"""Starting a server: its start-up timeout and the upstream's, with room to spare."""
PREPARE_TIMEOUT_S = 900.0


class AgentError(RuntimeError):
    """The agent refused a request or could not be reached; one line."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def parse_url(text: str) -> tuple[str, int]:
    """(host, port) of ``http://HOST:PORT``; ``ValueError`` otherwise."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in {"", "/"}:
        raise ValueError(f"expected http://HOST:PORT, got {text!r}")
    return parts.hostname, port


def client_token(path: Path | None) -> str:
    """The token from ``path``, else from ``$BENCH_AGENT_TOKEN`` (``ValueError`` if none)."""
    token = path.read_text().strip() if path is not None else os.environ.get(TOKEN_ENV, "")
    if not token.strip():
        raise ValueError(f"no agent token: give --agent-token-file PATH or set ${TOKEN_ENV}")
    return token.strip()


@dataclass(frozen=True)
class AgentClient:
    url: str
    token: str

    @property
    def host(self) -> str:
        return parse_url(self.url)[0]

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        timeout: float = CALL_TIMEOUT_S,
    ) -> dict[str, Any]:
        host, port = parse_url(self.url)
        data = json.dumps(dict(body or {})).encode()
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request(
                method,
                path,
                body=data if method == "POST" else None,
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                },
            )
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AgentError(f"agent {self.url}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        try:
            payload = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            payload = {"error": raw[:200].decode("utf-8", "replace")}
        if response.status != 200:
            raise AgentError(
                f"agent {self.url}{path}: HTTP {response.status}: {payload.get('error')}",
                response.status,
            )
        result: dict[str, Any] = payload
        return result

    def environment(self) -> Environment:
        """The agent host's environment block (also checks the token)."""
        return Environment.from_dict(self.call("GET", "/environment"))

    @contextlib.contextmanager
    def lease(self) -> Iterator[AgentLease]:
        """A lease, heartbeated while the block runs and released after it."""
        got = self.call("POST", "/lease")
        lease = AgentLease(self, str(got["lease"]), float(got["lease_s"]))
        lease.start()
        try:
            yield lease
        finally:
            lease.end()


@dataclass
class AgentLease:
    """A lease on the agent and its heartbeat thread."""

    client: AgentClient
    id: str
    lease_s: float
    statuses: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def call(
        self, path: str, body: Mapping[str, Any] | None = None, timeout: float = CALL_TIMEOUT_S
    ) -> dict[str, Any]:
        return self.client.call("POST", path, {**(body or {}), "lease": self.id}, timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="agent-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        period = max(0.1, self.lease_s / 4)
        while not self._stop.wait(period):
            try:
                got = self.call("/heartbeat", timeout=max(1.0, self.lease_s / 2))
            except AgentError as exc:
                if exc.status == 410:  # the agent ended the lease: its servers are gone
                    self.error = f"the agent ended the lease ({exc})"
                    return
                continue  # a lost heartbeat; the next one may pass within the lease
            self.statuses = dict(got["servers"])

    def end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self.error is None:
            with contextlib.suppress(AgentError):
                self.call("/release")

    def prepare(self, database: str | None, seed: Mapping[str, int]) -> None:
        self.call("/prepare", {"database": database, "seed": dict(seed)}, PREPARE_TIMEOUT_S)


@dataclass(frozen=True)
class RemoteWindow:
    lease: AgentLease
    server_id: str
    sample: bool
    interval: float
    _opened: list[str] = field(default_factory=list)
    _closed: list[WindowFigures] = field(default_factory=list)

    def open(self) -> None:
        got = self.lease.call(
            "/window/open",
            {"server": self.server_id, "sample": self.sample, "interval": self.interval},
        )
        self._opened.append(str(got["window"]))

    def close(self) -> WindowFigures:
        if self._closed:
            return self._closed[0]
        if not self._opened:
            figures = WindowFigures(server_cpu_percent=None)
        else:
            got = self.lease.call(
                "/window/close", {"server": self.server_id, "window": self._opened[0]}
            )
            figures = WindowFigures.from_json(got)
        self._closed.append(figures)
        return figures


@dataclass(frozen=True)
class Remote:
    """A server on the agent's host (a ``Hosted``)."""

    lease: AgentLease
    served: Served
    runner: Runner
    host: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def port(self) -> int:
        return self.served.port

    @property
    def workers(self) -> int:
        return self.served.workers

    @property
    def threads(self) -> int | None:
        return self.served.threads

    @property
    def variant(self) -> Variant:
        return self.served.variant

    @property
    def gc(self) -> GcMode:
        return self.served.gc

    @property
    def argv(self) -> tuple[str, ...]:
        return self.served.argv

    @property
    def startup_seconds(self) -> float:
        return self.served.startup_s

    @property
    def here(self) -> bool:
        return False

    @property
    def local(self) -> RunningServer | None:
        return None

    @property
    def python(self) -> PythonInfo | None:
        return PythonInfo.from_dict(self.served.python)

    @property
    def django(self) -> str | None:
        return self.served.django

    def exit_status(self) -> str | None:
        """From the last heartbeat (no request of its own)."""
        if self.lease.error is not None:
            return self.lease.error
        return self.lease.statuses.get(self.served.id)

    def worker_pids(self) -> set[int]:
        return set(self.lease.call("/workers", {"server": self.served.id})["pids"])

    def window(self, *, sample: bool, interval: float) -> HostWindow:
        return RemoteWindow(self.lease, self.served.id, sample, interval)


@dataclass(frozen=True)
class RemoteHost:
    """The bench's ``ServerHost`` on the agent: the same ``ServeConfig`` becomes a
    ``ServeRequest`` (runner and settings only; the agent places and logs it)."""

    lease: AgentLease
    database: str | None
    with_upstream: bool

    def reserve(self, config: ServeConfig) -> tuple[ServeConfig, str | None]:
        """The agent chooses the port as it starts the server: no URL before that."""
        return config, None

    @contextlib.contextmanager
    def serve(self, config: ServeConfig) -> Iterator[Hosted]:
        request = ServeRequest(
            runner=config.runner.name,
            workers=config.workers,
            threads=config.threads,
            variant=config.variant,
            gc=config.gc,
            middleware=config.middleware,
            database=self.database,
            with_upstream=self.with_upstream,
        )
        try:
            got = self.lease.call("/serve", {"request": request.to_json()}, SERVE_TIMEOUT_S)
        except AgentError as exc:
            raise RunnerError(f"runner {config.runner.name} on the agent: {exc}") from None
        served = Served.from_json(got)
        try:
            yield Remote(self.lease, served, config.runner, self.lease.client.host)
        finally:
            # The server's log comes back with its stop, kept where a local run keeps it.
            got = self.lease.call("/stop", {"server": served.id})
            config.log_path.parent.mkdir(parents=True, exist_ok=True)
            config.log_path.write_text(str(got.get("log") or ""))
