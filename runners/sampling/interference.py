"""Who else used the run's CPUs during its window, and what a local database used.

``/proc/stat`` says how much time each CPU was busy, whoever ran there
(``runners.sampling.cpustat``); psutil says how much CPU time each of the run's
own processes used. The run's own processes are the driver and everything it
started (its descendants: the server's tree, the Locust processes, the upstream
service, a profiler), each counted on the side its CPU affinity pins it to:
within the server's CPUs, within the load generator's, or on neither (the
driver itself is not pinned). A process's CPU time includes that of its
children it reaped, so a worker that exits inside the window still counts.

Over the window, on each side:

    others = busy time of the side's CPUs - own time pinned there - unpinned time

where the unpinned time (the driver, and the local database's processes when
``--database`` is on this host) is taken off *both* sides, as it may have run on
either: the figure is a lower bound of what other processes used. What remains
is other programs, kernel threads, interrupts that land while a CPU idles, and
the tick rounding (1/100 s per process and read). On a quiet 2-CPU machine it
stays at 0-3 % of a 4 s window per side; another job (mypy) on the same
machine measured 16-21 %, and psutil summed over every other process agreed.

A local PostgreSQL server (the ``--database`` URL's host is this machine) is
found from the backend that answers a connection: its parent is the
postmaster, whose tree is the database server. Its CPU seconds over the window
and its summed PSS at the window's end are recorded beside the server's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from runners.sampling import cpustat

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1", "ip6-localhost"})


def _cpu_seconds(proc: psutil.Process) -> float:
    """User + system time of ``proc`` and of the children it reaped."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class Mark:
    """The CPUs' counters and the CPU time of the run's processes, at one moment."""

    cpus: cpustat.CpuTimes
    server: float
    """CPU seconds of the own processes pinned within the server's CPUs."""
    loadgen: float
    """... within the load generator's CPUs (and not the server's)."""
    unpinned: float
    """... of those pinned to neither side (the driver)."""
    database: float | None = None
    """CPU seconds of the local database server's processes (None: none watched)."""


def own_processes() -> list[psutil.Process]:
    """The driver and every process it started (its live descendants)."""
    me = psutil.Process()
    try:
        return [me, *me.children(recursive=True)]
    except psutil.Error:
        return [me]


def mark(
    server_cpus: Sequence[int], loadgen_cpus: Sequence[int], database_pid: int | None = None
) -> Mark:
    """The counters now: the run's processes by side, the database's, then the CPUs."""
    server_set, loadgen_set = set(server_cpus), set(loadgen_cpus)
    sides = {"server": 0.0, "loadgen": 0.0, "unpinned": 0.0}
    for proc in own_processes():
        try:
            seconds = _cpu_seconds(proc)
            affinity = set(proc.cpu_affinity())
        except psutil.Error:
            continue  # it ended between the listing and the read
        if affinity <= server_set:
            sides["server"] += seconds
        elif affinity <= loadgen_set:
            sides["loadgen"] += seconds
        else:
            sides["unpinned"] += seconds
    database = None
    if database_pid is not None:
        database = sum(_tree_seconds(database_pid))
    return Mark(cpustat.read(), sides["server"], sides["loadgen"], sides["unpinned"], database)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_seconds(pid: int) -> Iterable[float]:
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            yield _cpu_seconds(proc)


@dataclass(frozen=True)
class Others:
    """CPU seconds the run's processes do not explain, per side, over a window."""

    server_cpu_seconds: float
    loadgen_cpu_seconds: float
    server_share: float
    """``server_cpu_seconds`` / (window x server CPUs)."""
    loadgen_share: float
    unpinned_cpu_seconds: float
    """Taken off both sides: the driver's (and the local database's) CPU seconds."""
    window_s: float
    server_steal_share: float = 0.0
    """The share of the server's CPUs' time the hypervisor took (not another process's,
    and not counted as busy: ``runners.sampling.cpustat``)."""
    loadgen_steal_share: float = 0.0

    @property
    def share(self) -> float:
        """The larger side's share: what the flag is decided on."""
        return max(self.server_share, self.loadgen_share)


def _busy_seconds(
    before: cpustat.CpuTimes, after: cpustat.CpuTimes, cpus: set[int]
) -> tuple[float, float]:
    """Busy and elapsed CPU seconds of ``cpus`` between two reads."""
    busy = total = 0
    for cpu in cpus:
        busy += after.busy.get(cpu, 0) - before.busy.get(cpu, 0)
        total += after.total.get(cpu, 0) - before.total.get(cpu, 0)
    return busy / TICKS_PER_S, total / TICKS_PER_S


def others(
    before: Mark, after: Mark, server_cpus: Sequence[int], loadgen_cpus: Sequence[int]
) -> Others | None:
    """What processes outside the run used on its CPUs between two marks (None: no time
    passed). With shared CPUs both sides are their union."""
    server_set, loadgen_set = set(server_cpus), set(loadgen_cpus)
    unpinned = after.unpinned - before.unpinned
    if after.database is not None and before.database is not None:
        unpinned += max(0.0, after.database - before.database)
    own_server = after.server - before.server
    own_loadgen = after.loadgen - before.loadgen
    if server_set & loadgen_set:
        server_set = loadgen_set = server_set | loadgen_set
        own_server = own_loadgen = own_server + own_loadgen

    def side(cpus: set[int], own: float) -> tuple[float, float, float]:
        busy, elapsed = _busy_seconds(before.cpus, after.cpus, cpus)
        seconds = max(0.0, busy - own - unpinned)
        return seconds, (seconds / elapsed if elapsed > 0 else 0.0), elapsed / max(1, len(cpus))

    server_s, server_share, window_s = side(server_set, own_server)
    loadgen_s, loadgen_share, _ = side(loadgen_set, own_loadgen)
    if window_s <= 0:
        return None
    return Others(
        server_cpu_seconds=server_s,
        loadgen_cpu_seconds=loadgen_s,
        server_share=server_share,
        loadgen_share=loadgen_share,
        unpinned_cpu_seconds=max(0.0, unpinned),
        window_s=window_s,
        server_steal_share=cpustat.steal_share(before.cpus, after.cpus, server_set) or 0.0,
        loadgen_steal_share=cpustat.steal_share(before.cpus, after.cpus, loadgen_set) or 0.0,
    )


# --- a PostgreSQL server on this host ---------------------------------------------------------


def is_local(database_url: str) -> bool:
    """The URL's host is this machine (loopback, or a Unix socket: no host)."""
    host = urlsplit(database_url).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.") or host.startswith("/")


def database_server_pid(database_url: str | None) -> int | None:
    """The postmaster of the PostgreSQL server that ``database_url`` reaches, when it
    runs on this host (None for SQLite, a remote host, or one in another PID namespace)."""
    if not database_url or not is_local(database_url):
        return None
    try:
        import psycopg

        with psycopg.connect(database_url, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            # While the connection is open: its backend ends with it.
            backend = psutil.Process(int(row[0])) if row else None
            if backend is None or "postgres" not in backend.name():
                return None
            parent = backend.parent()
    except Exception:  # no database figures: the run goes on
        return None
    if parent is None or "postgres" not in parent.name():
        return None
    return parent.pid


@dataclass(frozen=True)
class DatabaseMemory:
    """The database server's processes at one moment."""

    pss_bytes: int
    processes: int
    cpus: tuple[int, ...]
    """The CPUs its processes may run on (the union of their affinities)."""


def database_memory(pid: int) -> DatabaseMemory | None:
    """Summed PSS of the postmaster's tree (None if it is gone)."""
    pss = count = 0
    cpus: set[int] = set()
    for proc in _tree(pid):
        try:
            pss += proc.memory_full_info().pss
            cpus.update(proc.cpu_affinity())
        except psutil.Error:
            continue
        count += 1
    return DatabaseMemory(pss, count, tuple(sorted(cpus))) if count else None
