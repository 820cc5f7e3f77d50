"""What a server's cgroup holds, as the platform counts it: usage, the working set, its
parts, the peak, and the OOM kills so far.

A reading (``CgroupReading``) comes from the cgroup's own files, v1 or v2:

- **usage**: v2 ``memory.current``; v1 ``memory.usage_in_bytes`` (anon + page cache +
  kernel memory: since Linux 5.x kernel memory is charged to the memory counter in v1
  too; the v1 figure is batched per CPU, a few hundred KiB fuzzy).
- **working set** = usage - inactive file cache, as cAdvisor computes it and as
  Kubernetes evicts and the dashboards show it (v2 ``memory.stat`` ``inactive_file``,
  v1 ``total_inactive_file``), never below 0.
- **anon, file, shmem, active/inactive file**: ``memory.stat`` (v2 ``anon``, ``file``,
  ``shmem``...; v1 ``total_rss``, ``total_cache``, ``total_shmem``...). ``file``
  includes ``shmem`` in both.
- **kernel memory** where the kernel reports it: v2 ``kernel`` (or the sum of
  ``kernel_stack``, ``pagetables``, ``percpu``, ``sock``, ``slab`` and ``vmalloc`` on
  kernels before it), with ``slab``, ``sock`` and ``pagetables``; v1
  ``memory.kmem.usage_in_bytes`` and ``memory.kmem.tcp.usage_in_bytes`` (socket
  buffers), no split of slab and page tables.
- **OOM kills** since the cgroup was made: v2 ``memory.events`` ``oom_kill``; v1
  ``memory.oom_control`` ``oom_kill`` (Linux 4.13 and later; kernel 6.18 has it). Where
  v1 lacks it, None: ``limit_hits`` (v1 ``memory.failcnt``, v2 ``memory.events``
  ``max``: how often usage hit the limit) is then the only evidence, and is no count of
  kills.

``PeakWatch`` gives the highest usage over a window: v1 ``memory.max_usage_in_bytes``
reset (written 0) as the window opens; v2 ``memory.peak`` reset through its own file
descriptor (Linux 6.12 and later), else the peak since the cgroup was made (``scope``
says which).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from runners.serving import cgroups
from runners.serving.cgroups import Cgroup

PeakScope = Literal["window", "cgroup"]
V2_KERNEL_PARTS = ("kernel_stack", "pagetables", "percpu", "sock", "slab", "vmalloc")
"""What v2 ``memory.stat`` adds up to ``kernel`` on kernels that lack that key."""


@dataclass(frozen=True)
class CgroupReading:
    """One reading of a cgroup's memory, in bytes."""

    usage: int
    working_set: int
    anon: int
    file: int
    active_file: int
    inactive_file: int
    shmem: int
    kernel: int | None = None
    slab: int | None = None
    sock: int | None = None
    pagetables: int | None = None
    oom_kills: int | None = None
    """OOM kills in the cgroup since it was made (None: the kernel does not count them)."""
    limit_hits: int | None = None
    """Times usage hit the limit (v1 ``failcnt``, v2 ``memory.events`` ``max``)."""

    @property
    def page_cache_in_working_set(self) -> int:
        """File pages that count in the working set (active file cache, without shmem)."""
        return max(0, self.file - self.shmem - self.inactive_file)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CgroupReading:
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


_FIELDS = frozenset(CgroupReading.__dataclass_fields__)


def parse_stat(text: str) -> dict[str, int]:
    """``key value`` lines (``memory.stat``, ``memory.events``, ``memory.oom_control``)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def working_set(usage: int, inactive_file: int) -> int:
    """cAdvisor's working set: usage minus the inactive file cache (never below 0)."""
    return max(0, usage - inactive_file)


def reading_v2(stat: Mapping[str, int], current: int, events: Mapping[str, int]) -> CgroupReading:
    """A v2 reading from ``memory.stat``, ``memory.current`` and ``memory.events``."""
    kernel = stat.get("kernel")
    if kernel is None and any(k in stat for k in V2_KERNEL_PARTS):
        kernel = sum(stat.get(k, 0) for k in V2_KERNEL_PARTS)
    inactive = stat.get("inactive_file", 0)
    return CgroupReading(
        usage=current,
        working_set=working_set(current, inactive),
        anon=stat.get("anon", 0),
        file=stat.get("file", 0),
        active_file=stat.get("active_file", 0),
        inactive_file=inactive,
        shmem=stat.get("shmem", 0),
        kernel=kernel,
        slab=stat.get("slab"),
        sock=stat.get("sock"),
        pagetables=stat.get("pagetables"),
        oom_kills=events.get("oom_kill"),
        limit_hits=events.get("max"),
    )


def reading_v1(
    stat: Mapping[str, int],
    usage: int,
    oom_control: Mapping[str, int],
    *,
    kmem: int | None = None,
    kmem_tcp: int | None = None,
    failcnt: int | None = None,
) -> CgroupReading:
    """A v1 reading from ``memory.stat`` (its hierarchical ``total_*`` keys),
    ``memory.usage_in_bytes``, ``memory.oom_control`` and the kmem counters."""

    def total(key: str) -> int:
        return stat.get(f"total_{key}", stat.get(key, 0))

    inactive = total("inactive_file")
    return CgroupReading(
        usage=usage,
        working_set=working_set(usage, inactive),
        anon=total("rss"),
        file=total("cache"),
        active_file=total("active_file"),
        inactive_file=inactive,
        shmem=total("shmem"),
        kernel=kmem,
        sock=kmem_tcp,
        oom_kills=oom_control.get("oom_kill"),
        limit_hits=failcnt,
    )


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _number(path: Path) -> int | None:
    text = _text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class CgroupReader:
    """Reads one cgroup's memory (``read``) and its OOM kills (``oom_kills``)."""

    cgroup: Cgroup

    @property
    def folder(self) -> Path:
        return self.cgroup.memory

    def read(self) -> CgroupReading | None:
        """Now; None when the cgroup is gone."""
        stat = _text(self.folder / "memory.stat")
        if stat is None:
            return None
        if self.cgroup.version == 2:
            current = _number(self.folder / "memory.current")
            events = parse_stat(_text(self.folder / "memory.events") or "")
            return None if current is None else reading_v2(parse_stat(stat), current, events)
        usage = _number(self.folder / "memory.usage_in_bytes")
        if usage is None:
            return None
        return reading_v1(
            parse_stat(stat),
            usage,
            parse_stat(_text(self.folder / "memory.oom_control") or ""),
            kmem=_number(self.folder / "memory.kmem.usage_in_bytes"),
            kmem_tcp=_number(self.folder / "memory.kmem.tcp.usage_in_bytes"),
            failcnt=_number(self.folder / "memory.failcnt"),
        )

    def oom_kills(self) -> int | None:
        """OOM kills since the cgroup was made (None: not counted here, or gone)."""
        return cgroups.oom_kills(self.cgroup)


@dataclass
class PeakWatch:
    """The highest usage of a cgroup over a window: ``start`` as it opens, ``read`` as it
    ends (``scope``: ``window``, or ``cgroup`` where the kernel cannot reset its peak)."""

    cgroup: Cgroup
    scope: PeakScope = "cgroup"
    _fd: int | None = None

    def start(self) -> None:
        folder = self.cgroup.memory
        if self.cgroup.version == 1:
            with contextlib.suppress(OSError):
                (folder / "memory.max_usage_in_bytes").write_text("0")
                self.scope = "window"
            return
        try:
            self._fd = os.open(folder / "memory.peak", os.O_RDWR)
        except OSError:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, b"reset\n")  # Linux 6.12+: this descriptor's peak from now
            self.scope = "window"

    def read(self) -> int | None:
        """The peak (bytes); the descriptor is closed. None when the cgroup is gone."""
        if self.cgroup.version == 1:
            return _number(self.cgroup.memory / "memory.max_usage_in_bytes")
        if self._fd is None:
            return _number(self.cgroup.memory / "memory.peak")
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            text = os.read(self._fd, 64).decode()
            return int(text)
        except (OSError, ValueError):
            return None
        finally:
            os.close(self._fd)
            self._fd = None
