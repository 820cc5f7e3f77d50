"""A probe as the driver asks for it and as the Locust plugin reports it.

The driver (``runners/load/locust.py``) writes a ``ProbeCommand`` to the
plugin's ``--probe-control`` file; the plugin (``loadtests/probes.py``) writes
one ``ProbeResult`` per probe to ``--probe-out``. Between the plugin's controller and
its load-generating processes (one, or Locust's distributed workers) the same records
travel in Locust's custom messages: a ``ScheduledProbe`` out, one ``ProbeResult`` per
process back (merged into the probe's), a pause as a ``ProbeCommand``, and
``ProcessIdle`` / ``WindowEnd`` notes; each is turned into a dict (``to_dict``) and back
(``from_dict``) only at that edge. Standard library only: the plugin imports it inside
Locust (gevent), the driver without Locust.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from runners.vocabulary import DEFAULT_ARRIVAL, Arrival, Load

CommandMode = Literal[Load, "pause"]


@dataclass(frozen=True)
class ProbeCommand:
    """One measured window: ``warmup_s`` of load at the new setting, then ``duration_s``
    (or, ``pause``, none: the load stops until the next command).

    ``open``: requests on a schedule of ``rate`` per second (``arrival``
    constant or poisson), ``users`` connections at most. ``closed``: ``users``
    users sending back to back. ``max_requests`` ends the window early once
    Locust has counted that many; ``reset_stats`` makes Locust's CSV and HTML
    report cover this window only. ``late_s``: a ticket sent this late by an
    idle user counts as the generator's own delay.
    """

    seq: int
    mode: CommandMode
    """``pause``: no window; stop sending and let the requests in flight end."""
    users: int
    duration_s: float
    warmup_s: float = 0.0
    rate: float | None = None
    arrival: Arrival = DEFAULT_ARRIVAL
    drain_s: float = 1.0
    late_s: float = 0.01
    reset_stats: bool = False
    max_requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeCommand:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def write(self, path: Path) -> None:
        """Atomically (the plugin polls the file)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)) + "\n")
        os.replace(tmp, path)


@dataclass(frozen=True)
class ProcessLoad:
    """One load-generating process over the window."""

    index: int
    pid: int
    cpu_seconds: float
    cpu_percent: float | None
    late_fraction: float


@dataclass(frozen=True)
class ProbeResult:
    """What every load-generating process saw in the window, added up.

    Counts are of the requests *intended* inside the window (their ticket in
    an open loop, their send time in a closed one): ``successes`` +
    ``failures`` (``timeouts`` and ``unsent`` among them) = every request of
    the window, however it ended.
    """

    COUNTS: ClassVar[tuple[str, ...]] = (
        "scheduled",
        "dispatched",
        "free_dispatches",
        "late",
        "pool_waits",
        "successes",
        "failures",
        "timeouts",
        "unsent",
        "in_flight",
        "served",
        "connects",
    )
    """The counts each load-generating process reports for the window and the result
    adds up (the fields of the same names)."""

    seq: int
    mode: Load
    rate: float | None
    users: int
    start: float
    end: float
    duration_s: float
    scheduled: int
    dispatched: int
    free_dispatches: int
    late: int
    pool_waits: int
    successes: int
    failures: int
    timeouts: int
    unsent: int
    in_flight: int
    served: int
    """Successful responses that arrived inside the window (the server's throughput)."""
    late_fraction: float
    latency_hdr: str
    loadgen_cpu_seconds: float
    processes_expected: int
    processes: tuple[ProcessLoad, ...] = field(default_factory=tuple)
    halves_hdr: tuple[str, str] = ("", "")
    """``latency_hdr`` split by intended time: the window's first half and second half."""
    connects: int = 0
    """New TCP connections the load generator opened to the server inside the window."""

    @property
    def requests(self) -> int:
        return self.successes + self.failures

    @property
    def busiest_process_percent(self) -> float | None:
        values = [p.cpu_percent for p in self.processes if p.cpu_percent is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["processes"] = tuple(ProcessLoad(**p) for p in data.get("processes", ()))
        values["halves_hdr"] = tuple(data.get("halves_hdr", ("", "")))
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> ProbeResult:
        return cls.from_dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class ScheduledProbe:
    """A probe as the controller sends it to every load-generating process: its command,
    when its window opens and closes and when the processes' results are due (unix
    times), and how many processes share its schedule (each offers ``rate / processes``)."""

    command: ProbeCommand
    start_at: float
    end_at: float
    deadline_at: float
    processes: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "command": self.command.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduledProbe:
        return cls(
            command=ProbeCommand.from_dict(data["command"]),
            start_at=float(data["start_at"]),
            end_at=float(data["end_at"]),
            deadline_at=float(data["deadline_at"]),
            processes=int(data["processes"]),
        )


@dataclass(frozen=True)
class ProcessIdle:
    """A load-generating process after a pause: whether its requests in flight ended."""

    seq: int
    index: int
    idle: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessIdle:
        return cls(seq=int(data["seq"]), index=int(data["index"]), idle=bool(data["idle"]))


@dataclass(frozen=True)
class WindowEnd:
    """The controller ended probe ``seq``'s window early (``max_requests``) at ``at``."""

    seq: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowEnd:
        return cls(seq=int(data["seq"]), at=float(data["at"]))
