"""What else used the host during a measured window: other programs on the run's CPUs
(``interference``) and a local database (``database``), as run-record parts, and the
load generator's CPUs.

The readings are ``runners.sampling.interference``'s and ``runners.sampling.cpustat``'s;
``WindowUsage`` takes them at the window's edges and turns them into the records
``results.json`` carries.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from runners.results.record import DatabaseUsage, Interference, UpstreamUsage
from runners.sampling import cpustat, interference
from runners.serving.cpus import Placement
from runners.serving.net import http_get


@dataclass
class WindowUsage:
    """The host's counters at one window's edges (``mark`` as it opens and as it closes).

    Where the server runs on this host (``here``), the run's own processes and a local
    database are read too, so that other programs' use of the run's CPUs and the
    database's can be told apart; through an agent the server's CPUs are another
    host's, and only the load generator's CPUs are read."""

    placement: Placement
    here: bool
    database_pid: int | None = None
    upstream_url: str | None = None
    """The upstream service beside the load generator (read at the edges: ``/stats``)."""
    marks: list[interference.Mark] = field(default_factory=list)
    loadgen: list[cpustat.CpuTimes] = field(default_factory=list)
    database_memory: interference.DatabaseMemory | None = None
    upstream_stats: list[tuple[int, float]] = field(default_factory=list)

    def mark(self) -> None:
        if self.upstream_url is not None:
            found = upstream_stats(self.upstream_url)
            if found is not None:
                self.upstream_stats.append(found)
        if self.here:
            self.marks.append(
                interference.mark(self.placement.server, self.placement.loadgen, self.database_pid)
            )
            self.loadgen.append(self.marks[-1].cpus)
        else:
            self.loadgen.append(cpustat.read())

    def close(self) -> None:
        """The closing mark, and the local database's memory as the window ends."""
        self.mark()
        if self.database_pid is not None:
            self.database_memory = interference.database_memory(self.database_pid)

    def loadgen_cpu_percent(self) -> float | None:
        if len(self.loadgen) < 2:
            return None
        return cpustat.busy_percent(self.loadgen[0], self.loadgen[-1], self.placement.loadgen)

    def loadgen_steal_share(self) -> float | None:
        if len(self.loadgen) < 2:
            return None
        return cpustat.steal_share(self.loadgen[0], self.loadgen[-1], self.placement.loadgen)

    def loadgen_busy_seconds(self) -> float | None:
        """Busy CPU seconds of the load generator's CPUs over the window."""
        if len(self.loadgen) < 2:
            return None
        busy, _, _ = cpustat.gained(self.loadgen[0], self.loadgen[-1], self.placement.loadgen)
        return busy / interference.TICKS_PER_S

    def loadgen_total_seconds(self) -> float | None:
        """The load generator's CPUs' time over the window (stolen time left out)."""
        if len(self.loadgen) < 2:
            return None
        _, steal, total = cpustat.gained(self.loadgen[0], self.loadgen[-1], self.placement.loadgen)
        return (total - steal) / interference.TICKS_PER_S

    def upstream(self) -> UpstreamUsage | None:
        """What the upstream service used over the window (None: none watched, or its
        stats could not be read at both edges)."""
        if len(self.upstream_stats) < 2:
            return None
        (requests0, cpu0), (requests1, cpu1) = self.upstream_stats[0], self.upstream_stats[-1]
        cpu, requests = max(0.0, cpu1 - cpu0), max(0, requests1 - requests0)
        busy = self.loadgen_busy_seconds()
        had = self.loadgen_total_seconds()
        return UpstreamUsage(
            cpu_seconds=round(cpu, 4),
            requests=requests,
            cpu_ms_per_request=round(1000 * cpu / requests, 4) if requests else None,
            cpu_percent=round(100.0 * cpu / had, 3) if had else None,
            loadgen_share=round(min(1.0, cpu / busy), 4) if busy else None,
        )

    def interference(self) -> Interference | None:
        if len(self.marks) < 2:
            return None
        return interference_record(self.marks[0], self.marks[-1], self.placement)

    def database(self) -> DatabaseUsage | None:
        if len(self.marks) < 2:
            return None
        return database_record(self.marks[0], self.marks[-1], self.database_memory, self.placement)


def interference_record(
    before: interference.Mark, after: interference.Mark, placement: Placement
) -> Interference | None:
    """Other processes' CPU time on the server's and the load generator's CPUs over the
    window (None: not measurable, e.g. no CPU counters)."""
    found = interference.others(before, after, placement.server, placement.loadgen)
    if found is None:
        return None
    return Interference(
        server_cpu_seconds=round(found.server_cpu_seconds, 3),
        loadgen_cpu_seconds=round(found.loadgen_cpu_seconds, 3),
        share=round(found.share, 4),
        server_share=round(found.server_share, 4),
        loadgen_share=round(found.loadgen_share, 4),
        unpinned_cpu_seconds=round(found.unpinned_cpu_seconds, 3),
        server_steal_share=round(found.server_steal_share, 4),
        loadgen_steal_share=round(found.loadgen_steal_share, 4),
    )


def database_record(
    before: interference.Mark,
    after: interference.Mark,
    memory: interference.DatabaseMemory | None,
    placement: Placement,
) -> DatabaseUsage | None:
    """The local database's figures over the window (None: no local database watched)."""
    if before.database is None or after.database is None:
        return None
    cpus = memory.cpus if memory is not None else None
    return DatabaseUsage(
        cpu_seconds=round(max(0.0, after.database - before.database), 3),
        pss_bytes=memory.pss_bytes if memory is not None else None,
        processes=memory.processes if memory is not None else None,
        cpus=cpus,
        # Not pinned (or pinned over the server's CPUs): the scheduler puts it anywhere.
        shares_server_cpus=cpus is None or bool(set(cpus) & set(placement.server)),
    )


def upstream_stats(url: str) -> tuple[int, float] | None:
    """(delay requests answered, CPU seconds) of the upstream service at ``url``, now."""
    parts = urlsplit(url)
    try:
        status, body = http_get(parts.hostname or "127.0.0.1", parts.port or 80, "/stats", 2.0)
        if status != 200:
            return None
        data = json.loads(body)
        return int(data["requests"]), float(data["cpu_seconds"])
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        return None
