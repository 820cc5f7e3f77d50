"""Where a run's server lives, as the measurement sees it: one seam, two sides.

``Hosted`` is the server of one run: its settings, how it is doing, its workers, and
``window``, which measures the server's host over a window (the busy share of the
server's CPUs from ``/proc/stat``, and, when asked, memory samples of the server's
tree). ``Local`` is serving on this machine (``runners.serving.server``);
``runners.agent.client.Remote`` is the same through the agent on the server's own
host. The rest of the run (Locust, the capacity search, the record) is the same for
both.

Below both the driver (``runners.bench``) and the agent (``runners.agent``): the
agent's server measures its windows with ``LocalHostWindow`` and sends back their
``WindowFigures``; the driver's client reads them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from runners.results.record import PythonInfo
from runners.sampling import cpustat
from runners.sampling.cgroupmem import CgroupReader, PeakScope, PeakWatch
from runners.sampling.memory import Sampler, TreeSample, sample_tree
from runners.serving.cgroups import Cgroup
from runners.serving.net import free_port, url
from runners.serving.registry import Runner
from runners.serving.server import RunningServer, ServeConfig, serve
from runners.vocabulary import GcMode, Variant


@dataclass(frozen=True)
class CgroupWindow:
    """The server's cgroup over one window: its version and limits, the kernel's peak of
    usage (``peak_scope``: over the window, or since the cgroup was made), the OOM kills
    in the window and since the cgroup was made (None: not counted by this kernel)."""

    version: int
    memory_limit_bytes: int | None
    cpu_limit_cores: float | None
    peak_bytes: int | None
    peak_scope: PeakScope
    oom_kills: int | None
    oom_kills_total: int | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CgroupWindow:
        return cls(**data)


@dataclass(frozen=True)
class WindowFigures:
    """What the server's host saw over one window: its CPUs' busy share, the memory
    samples of the server's tree (when asked), the sampler's own cost, the sampler's
    error if the server's root went away, and the server's cgroup (None: none)."""

    server_cpu_percent: float | None
    samples: tuple[TreeSample, ...] = ()
    sampler_cpu_percent: float = 0.0
    error: str | None = None
    cgroup: CgroupWindow | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "server_cpu_percent": self.server_cpu_percent,
            "samples": [s.to_json() for s in self.samples],
            "sampler_cpu_percent": self.sampler_cpu_percent,
            "error": self.error,
            "cgroup": None if self.cgroup is None else self.cgroup.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WindowFigures:
        cgroup = data.get("cgroup")
        return cls(
            server_cpu_percent=data["server_cpu_percent"],
            samples=tuple(TreeSample.from_json(s) for s in data["samples"]),
            sampler_cpu_percent=float(data["sampler_cpu_percent"]),
            error=data["error"],
            cgroup=CgroupWindow.from_json(cgroup) if cgroup else None,
        )


class HostWindow(Protocol):
    """One window on the server's host: ``open`` as it starts, ``close`` as it ends."""

    def open(self) -> None: ...

    def close(self) -> WindowFigures: ...


class Hosted(Protocol):
    """The server of one run, local or on the agent's host."""

    @property
    def runner(self) -> Runner: ...
    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def threads(self) -> int | None: ...
    @property
    def variant(self) -> Variant: ...
    @property
    def gc(self) -> GcMode: ...
    @property
    def argv(self) -> tuple[str, ...]: ...
    @property
    def startup_seconds(self) -> float: ...
    @property
    def here(self) -> bool:
        """The server runs on this host (not through the agent): its CPUs, who else used
        them and a local database can be read here."""

    @property
    def local(self) -> RunningServer | None:
        """The server process on this machine (profilers need it); None when remote."""

    @property
    def python(self) -> PythonInfo | None:
        """The server's interpreter when it is not the run's own (remote), else None."""

    @property
    def django(self) -> str | None:
        """The server's Django when it is not the run's own (remote), else None."""

    def exit_status(self) -> str | None:
        """How the server's root ended, or None while it runs."""

    def worker_pids(self) -> set[int]:
        """Its worker processes now (empty if it is gone)."""

    def window(self, *, sample: bool, interval: float) -> HostWindow: ...


@dataclass
class CgroupWatch:
    """A window's view of the server's cgroup: the OOM kills and the kernel's peak
    between ``open`` and ``close``."""

    cgroup: Cgroup
    _oom_before: int | None = None
    _peak: PeakWatch | None = None

    @property
    def reader(self) -> CgroupReader:
        return CgroupReader(self.cgroup)

    def open(self) -> None:
        self._oom_before = self.reader.oom_kills()
        self._peak = PeakWatch(self.cgroup)
        self._peak.start()

    def close(self) -> CgroupWindow:
        total = self.reader.oom_kills()
        before = self._oom_before
        peak = self._peak.read() if self._peak is not None else None
        return CgroupWindow(
            version=self.cgroup.version,
            memory_limit_bytes=self.cgroup.limits.memory_bytes,
            cpu_limit_cores=self.cgroup.limits.cpu_cores,
            peak_bytes=peak,
            peak_scope=self._peak.scope if self._peak is not None else "cgroup",
            oom_kills=None if total is None or before is None else total - before,
            oom_kills_total=total,
        )


@dataclass
class LocalHostWindow:
    """The server's CPUs from ``/proc/stat``, its cgroup's OOM kills and peak, and, with
    ``sample``, a ``Sampler`` (reading the cgroup at every sample too)."""

    root_pid: int
    cpus: tuple[int, ...]
    sample: bool
    interval: float
    cgroup: Cgroup | None = None
    _sampler: Sampler | None = None
    _before: cpustat.CpuTimes | None = None
    _watch: CgroupWatch | None = None
    _figures: WindowFigures | None = field(default=None, repr=False)

    def open(self) -> None:
        self._before = cpustat.read()
        if self.cgroup is not None:
            self._watch = CgroupWatch(self.cgroup)
            self._watch.open()
        if self.sample:
            reader = self._watch.reader if self._watch is not None else None
            self._sampler = Sampler(self.root_pid, interval=self.interval, cgroup=reader)
            self._sampler.start()

    def close(self) -> WindowFigures:
        """Idempotent: the first close's figures (the sampler never outlives it)."""
        if self._figures is not None:
            return self._figures
        after = cpustat.read()
        sampler = self._sampler
        samples = tuple(sampler.stop()) if sampler is not None else ()
        before = self._before or after
        self._figures = WindowFigures(
            server_cpu_percent=cpustat.busy_percent(before, after, self.cpus),
            samples=samples,
            sampler_cpu_percent=sampler.cpu_percent_of_sampler if sampler is not None else 0.0,
            error=sampler.error if sampler is not None else None,
            cgroup=self._watch.close() if self._watch is not None else None,
        )
        return self._figures


@dataclass
class Local:
    """A server started here (``runners.serving.server.serve``)."""

    server: RunningServer
    cpus: tuple[int, ...]

    @property
    def runner(self) -> Runner:
        return self.server.runner

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.config.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def workers(self) -> int:
        return self.server.workers

    @property
    def threads(self) -> int | None:
        return self.server.threads

    @property
    def variant(self) -> Variant:
        return self.server.variant

    @property
    def gc(self) -> GcMode:
        return self.server.gc

    @property
    def argv(self) -> tuple[str, ...]:
        return tuple(self.server.command.argv)

    @property
    def startup_seconds(self) -> float:
        return self.server.startup_seconds

    @property
    def here(self) -> bool:
        return True

    @property
    def local(self) -> RunningServer | None:
        return self.server

    @property
    def python(self) -> PythonInfo | None:
        return None

    @property
    def django(self) -> str | None:
        return None

    def exit_status(self) -> str | None:
        return self.server.exit_status()

    def worker_pids(self) -> set[int]:
        try:
            return {p.pid for p in sample_tree(self.server.pid).workers}
        except ProcessLookupError:
            return set()

    def window(self, *, sample: bool, interval: float) -> HostWindow:
        return LocalHostWindow(self.server.pid, self.cpus, sample, interval, self.server.cgroup)


class ServerHost(Protocol):
    """Where the runs' servers are started: here (``LocalHost``) or through the agent."""

    def reserve(self, config: ServeConfig) -> tuple[ServeConfig, str | None]:
        """``config`` with what can be fixed before the server starts, and the server's URL
        when it is known before then (None: only once it serves), so that the load
        generator can start beside the server."""

    def serve(self, config: ServeConfig) -> AbstractContextManager[Hosted]:
        """Start the server of ``config``, stop it (and check none of it is left) on exit."""


@dataclass(frozen=True)
class LocalHost:
    """Serving on this machine, pinned to ``config.cpus``."""

    def reserve(self, config: ServeConfig) -> tuple[ServeConfig, str | None]:
        """A free port chosen now (the server binds it as it starts)."""
        port = config.port or free_port(config.host)
        return dataclasses.replace(config, port=port), url(config.host, port)

    @contextlib.contextmanager
    def serve(self, config: ServeConfig) -> Iterator[Hosted]:
        with serve(config) as server:
            yield Local(server, tuple(config.cpus or ()))
