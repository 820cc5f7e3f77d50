"""Memory and CPU accounting of a server's process tree.

Every process of the tree (the root and all its descendants; the load
generator and the upstream are not in it) is read from ``/proc`` directly:

- ``/proc/PID/smaps_rollup``: ``Rss``, ``Pss`` and USS (``Private_Clean +
  Private_Dirty + Private_Hugetlb``, as psutil computes it), all from the same
  page-table walk, so ``USS <= PSS <= RSS`` holds per process. Shared is
  ``RSS - USS``. This is what ``psutil.Process.memory_full_info()`` reads too,
  minus its extra ``statm`` read and object overhead. Its ``Pss_Anon``, ``Pss_File``
  and ``Pss_Shmem`` split PSS by backing, so that it can be set beside the cgroup's
  anon, file and shmem (``runners.sampling.cgroupmem``).
- the tree itself (parents, states, CPU times, helpers) from ``/proc/PID/stat``,
  walked by ``runners.serving.proctree``.
- with a ``CgroupReader``, the server's cgroup at the same instant (``TreeSample.cgroup``):
  usage, working set, its parts and the OOM kills so far.

Summed RSS double-counts the copy-on-write pages forked workers share; summed
PSS charges each shared page to its sharers in equal parts, so it is the real
footprint and the denominator of throughput per GiB (``1 GiB = 2**30``).

Roles: the root is ``master`` when it has children that serve (gunicorn,
uWSGI, granian, hypercorn, uvicorn with more than one worker) and ``worker``
when it serves itself (waitress, daphne, uvicorn with one worker). Its
children are ``worker``. Helper processes that serve nothing, such as
``multiprocessing``'s resource tracker that uvicorn's and hypercorn's spawning
masters start, and any deeper descendant, are reported with role ``master``
(they are supervision overhead) and ``helper: true``: they count in every
sum (they are memory the server costs) but not as workers.

CPU: a process's ``cpu_seconds`` is its own user + system time. A tree's
``cpu_seconds`` also adds the children times (``cutime + cstime``) of its
members, which hold the CPU of workers that have exited and been reaped, so
the difference between two samples is the CPU the server used in between.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from runners.sampling.cgroupmem import CgroupReader, CgroupReading
from runners.serving.proctree import helper_pids, proc_tree, read_proc
from runners.vocabulary import Role


@dataclass(frozen=True)
class ProcessMemory:
    """One process at one instant. Bytes; ``cpu_seconds`` since it started."""

    pid: int
    role: Role
    rss: int
    pss: int
    uss: int
    cpu_seconds: float
    helper: bool = False
    pss_anon: int = 0
    pss_file: int = 0
    pss_shmem: int = 0

    @property
    def shared(self) -> int:
        """Resident pages shared with some other process (``rss - uss``)."""
        return self.rss - self.uss


@dataclass(frozen=True)
class TreeSample:
    """Every process of a tree at one instant; ``t`` in seconds since ``t0``."""

    t: float
    processes: tuple[ProcessMemory, ...]
    reaped_cpu_seconds: float = 0.0
    cgroup: CgroupReading | None = None
    """The server's cgroup at the same instant (None: no cgroup)."""

    @property
    def rss(self) -> int:
        return sum(p.rss for p in self.processes)

    @property
    def pss(self) -> int:
        return sum(p.pss for p in self.processes)

    @property
    def uss(self) -> int:
        return sum(p.uss for p in self.processes)

    def pss_part(self, part: str) -> int:
        """Summed ``pss_anon``, ``pss_file`` or ``pss_shmem``."""
        return sum(int(getattr(p, f"pss_{part}")) for p in self.processes)

    @property
    def shared(self) -> int:
        return sum(p.shared for p in self.processes)

    @property
    def cpu_seconds(self) -> float:
        """User + system CPU of the live processes plus that of reaped children."""
        return sum(p.cpu_seconds for p in self.processes) + self.reaped_cpu_seconds

    @property
    def workers(self) -> tuple[ProcessMemory, ...]:
        return tuple(p for p in self.processes if p.role == "worker" and not p.helper)

    @property
    def server_processes(self) -> tuple[ProcessMemory, ...]:
        """Master and workers, without helpers."""
        return tuple(p for p in self.processes if not p.helper)

    def to_json(self) -> dict[str, Any]:
        """The whole sample, for the agent's answers (``from_json`` reads it back)."""
        out: dict[str, Any] = {
            "t": self.t,
            "reaped": self.reaped_cpu_seconds,
            "processes": [asdict(p) for p in self.processes],
        }
        if self.cgroup is not None:
            out["cgroup"] = self.cgroup.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TreeSample:
        cgroup = data.get("cgroup")
        return cls(
            t=float(data["t"]),
            processes=tuple(ProcessMemory(**p) for p in data["processes"]),
            reaped_cpu_seconds=float(data["reaped"]),
            cgroup=CgroupReading.from_json(cgroup) if cgroup else None,
        )


def read_smaps_rollup(pid: int) -> dict[str, int]:
    """Every field of ``/proc/PID/smaps_rollup``, in bytes (``OSError`` if it is gone)."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
        for line in fh:
            key, sep, rest = line.partition(b":")
            if sep and rest.strip().endswith(b"kB"):
                values[key.decode()] = int(rest.split()[0]) * 1024
    return values


_PSS_PARTS = {b"Pss_Anon:": "pss_anon", b"Pss_File:": "pss_file", b"Pss_Shmem:": "pss_shmem"}


def _memory(pid: int) -> dict[str, int] | None:
    """rss, pss, uss and the PSS parts of ``pid``; None if it vanished (or is a zombie)."""
    data = read_proc(f"/proc/{pid}/smaps_rollup")
    if not data:
        return None
    found = {"rss": 0, "pss": 0, "uss": 0}
    for line in data.splitlines():
        if line.startswith(b"Private_"):
            found["uss"] += int(line.split()[1]) * 1024
        elif line.startswith(b"Pss"):
            key, _, rest = line.partition(b" ")
            name = "pss" if key == b"Pss:" else _PSS_PARTS.get(key)
            if name is not None:
                found[name] = int(rest.split()[0]) * 1024
        elif line.startswith(b"Rss:"):
            found["rss"] = int(line.split()[1]) * 1024
    if found["rss"] == 0:  # a zombie or a kernel thread: nothing mapped
        return None
    return found


def sample_tree(root_pid: int, t0: float | None = None, known: Sequence[int] = ()) -> TreeSample:
    """Memory and CPU of the root and all its descendants, now.

    ``t`` is ``time.monotonic() - t0`` (0 without ``t0``). A process that
    vanishes mid-sample is skipped; ``ProcessLookupError`` if the root is gone.
    ``known``: the pids of a previous sample, to skip the scan of /proc (see
    ``runners.serving.proctree.proc_tree``).
    """
    now = time.monotonic()
    tree = proc_tree(root_pid, known)
    helpers = helper_pids(tree)
    serving_children = any(depth == 1 and s.pid not in helpers for s, depth in tree)
    processes: list[ProcessMemory] = []
    reaped = 0.0
    for stat, depth in tree:
        mem = _memory(stat.pid)
        if mem is None:
            continue
        if depth == 0:
            role: Role = "master" if serving_children else "worker"
            helper = False
        else:
            helper = stat.pid in helpers
            role = "master" if helper else "worker"
        processes.append(
            ProcessMemory(stat.pid, role, cpu_seconds=stat.cpu_seconds, helper=helper, **mem)
        )
        reaped += stat.children_cpu_seconds
    if not processes:
        raise ProcessLookupError(f"process {root_pid} is gone")
    return TreeSample(
        t=0.0 if t0 is None else now - t0,
        processes=tuple(processes),
        reaped_cpu_seconds=reaped,
    )


@dataclass
class Sampler:
    """Samples a process tree in a background thread, about once per ``interval``.

    ``start()`` takes a first sample at once, ``stop()`` a last one and returns
    them all; ``t`` counts from ``start()``. If the root dies, sampling stops
    and ``error`` says so. ``cpu_percent_of_sampler`` is the CPU the sampling
    thread itself used, in percent of one core, over its lifetime. With ``cgroup``,
    every sample also reads the server's cgroup.
    """

    root_pid: int
    interval: float = 1.0
    cgroup: CgroupReader | None = None
    #: Scan all of /proc for new processes every this many samples (and
    #: whenever a known process has gone); in between only the known tree is read.
    rescan_every: int = 5
    error: str | None = field(default=None, init=False)
    _samples: list[TreeSample] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _t0: float = field(default=0.0, init=False, repr=False)
    _busy: float = field(default=0.0, init=False, repr=False)
    _elapsed: float = field(default=0.0, init=False, repr=False)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._t0 = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name=f"sampler-{self.root_pid}", daemon=True
        )
        self._thread.start()

    def stop(self) -> list[TreeSample]:
        if self._thread is None:
            raise RuntimeError("sampler not started")
        self._stop.set()
        self._thread.join()
        return self.samples

    @property
    def samples(self) -> list[TreeSample]:
        """A copy of the samples so far (usable while running)."""
        with self._lock:
            return list(self._samples)

    def latest(self) -> TreeSample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    @property
    def cpu_percent_of_sampler(self) -> float:
        """CPU used by the sampling thread, percent of one core."""
        elapsed = self._elapsed or (time.monotonic() - self._t0 if self._t0 else 0.0)
        return 100.0 * self._busy / elapsed if elapsed > 0 else 0.0

    def _take(self) -> bool:
        before = time.thread_time()
        known: tuple[int, ...] = ()
        with self._lock:
            if self._samples and len(self._samples) % self.rescan_every:
                known = tuple(p.pid for p in self._samples[-1].processes)
        try:
            sample = sample_tree(self.root_pid, self._t0, known)
            if self.cgroup is not None:
                sample = dataclasses.replace(sample, cgroup=self.cgroup.read())
        except ProcessLookupError as exc:
            self.error = f"sampling stopped: {exc}"
            return False
        finally:
            self._busy += time.thread_time() - before
        with self._lock:
            self._samples.append(sample)
        return True

    def _run(self) -> None:
        tick = 0
        try:
            if not self._take():
                return
            while True:
                tick += 1
                delay = self._t0 + tick * self.interval - time.monotonic()
                if self._stop.wait(max(0.0, delay)):
                    self._take()
                    return
                if not self._take():
                    return
        finally:
            self._elapsed = time.monotonic() - self._t0
