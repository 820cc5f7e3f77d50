"""A server's process tree, read from ``/proc``: who belongs to it, which of its members
are helpers, and the CPU it has used.

``/proc/PID/stat`` gives each process's parent (this kernel has no
``/proc/PID/task/TID/children``), its state (zombies are left out) and its CPU
times. The supervisor follows a server's tree with it (``tree_pids``), the server's
start waits for its processes to appear, and the memory sampler
(``runners.sampling.memory``) walks it once a second.

Helpers are processes that serve nothing, such as ``multiprocessing``'s resource
tracker that uvicorn's and hypercorn's spawning masters start, and any deeper
descendant: they are memory and CPU the server costs, but not workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
HELPER_MARKERS = (
    b"multiprocessing.resource_tracker",
    b"multiprocessing.forkserver",
    b"multiprocessing.semaphore_tracker",
)


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    state: str
    cpu_seconds: float
    children_cpu_seconds: float


def read_proc(path: str, size: int = 4096) -> bytes | None:
    """The start of a /proc file (raw ``os`` calls: this runs ~100 times a sample)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    try:
        return os.read(fd, size)
    except (ProcessLookupError, PermissionError):
        return None
    finally:
        os.close(fd)


def read_stat(pid: int) -> ProcStat | None:
    data = read_proc(f"/proc/{pid}/stat", 1024)
    if not data:
        return None
    # The command name (field 2) is in parentheses and may contain anything.
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        state=fields[0].decode(),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLK_TCK,
        children_cpu_seconds=(int(fields[13]) + int(fields[14])) / CLK_TCK,
    )


def is_helper(pid: int) -> bool:
    cmdline = read_proc(f"/proc/{pid}/cmdline") or b""
    return any(marker in cmdline for marker in HELPER_MARKERS)


def all_stats() -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = read_stat(int(entry.name))
                if stat is not None:
                    stats[stat.pid] = stat
    return stats


def known_stats(pids: Sequence[int]) -> dict[int, ProcStat] | None:
    """Stats of ``pids`` only, or None when one of them is gone (the tree changed)."""
    stats: dict[int, ProcStat] = {}
    for pid in pids:
        stat = read_stat(pid)
        if stat is None or stat.state == "Z":
            return None
        stats[pid] = stat
    return stats


def proc_tree(root_pid: int, known: Sequence[int] = ()) -> list[tuple[ProcStat, int]]:
    """(stat, depth) of the root and every live descendant, root first.

    Finding the tree means reading every ``/proc/*/stat`` (most of a sample's
    cost). With ``known`` (the pids of the previous sample, root first) only
    those are read; if one of them has gone, the whole of /proc is scanned.
    A caller passing ``known`` must rescan now and then to see new processes.
    """
    stats = (known_stats(known) if known and known[0] == root_pid else None) or all_stats()
    root = stats.get(root_pid)
    if root is None or root.state == "Z":
        raise ProcessLookupError(f"process {root_pid} is gone")
    children: dict[int, list[ProcStat]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat)
    tree = [(root, 0)]
    i = 0
    while i < len(tree):
        parent, depth = tree[i]
        tree.extend((child, depth + 1) for child in children.get(parent.pid, ()))
        i += 1
    return [(stat, depth) for stat, depth in tree if stat.state != "Z"]


def tree_pids(root_pid: int) -> list[int]:
    """The root and all its live descendants (``ProcessLookupError`` if the root is gone)."""
    return [stat.pid for stat, _ in proc_tree(root_pid)]


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of the tree: live processes and reaped children."""
    return sum(stat.cpu_seconds + stat.children_cpu_seconds for stat, _ in proc_tree(root_pid))


def helper_pids(tree: Sequence[tuple[ProcStat, int]]) -> set[int]:
    """The members of ``tree`` (from ``proc_tree``) that serve nothing."""
    return {s.pid for s, depth in tree if depth > 1 or (depth == 1 and is_helper(s.pid))}


def server_process_count(root_pid: int) -> int:
    """The tree's master and workers, helpers left out (0 when the root is gone)."""
    try:
        tree = proc_tree(root_pid)
    except ProcessLookupError:
        return 0
    return len(tree) - len(helper_pids(tree))
