"""What a process's memory is: ``/proc/PID/smaps`` split into categories.

``smaps_rollup`` (what ``runners.sampling.memory`` samples once a second) says
*how much* memory a process holds; ``smaps`` lists every mapping with the
same figures, so the memory can be split by *what* it is:

``heap``         anonymous memory: ``[heap]`` (malloc's brk arena) and every
                 anonymous mapping that is not a thread stack: obmalloc's
                 arenas, malloc's mmap'd chunks and per-thread arenas, and any
                 allocation made in C or Rust (uvloop, granian, SQLite's cache)
``libraries``    file-backed shared libraries and extension modules (a ``.so``
                 in the file name: ``libc.so.6``, ``_json.cpython-311-...so``)
``interpreter``  the interpreter: the executable (``/proc/PID/exe``) and
                 ``libpython*.so`` when the interpreter is built shared
``stacks``       thread stacks: ``[stack]`` (the main thread) and the
                 anonymous mapping holding each other thread's stack pointer
``files``        every other file-backed mapping: data files, the locale
                 archive, SQLite's ``-shm`` file, memfd
``other``        what the kernel maps (``[vdso]``, ``[vvar]``, ``[vsyscall]``)
                 and shared anonymous memory (``/dev/zero``, SysV shm: uWSGI's
                 shared areas)

For each category: RSS, PSS, private clean/dirty, shared clean/dirty, swap
and the count of mappings. A page is "shared" while another process maps
it too, so copy-on-write decay shows up as bytes moving from
``shared_*`` to ``private_dirty`` in a category.

Finding the other threads' stacks. Since Linux 4.5 ``smaps`` no longer labels
them (``[stack:TID]``): they are ordinary anonymous mappings that glibc's
``pthread_create`` makes (8 MiB under a ``PROT_NONE`` guard page). The guard
layout alone is not proof (malloc's per-thread arenas are also ``rw`` next to
``PROT_NONE``), so the stack pointer is used: ``/proc/PID/task/TID/syscall``
gives ``... sp pc`` for a thread blocked in a system call (reading it needs
the same ptrace access as a debugger: the same user, or root), and the
mapping containing ``sp`` is that thread's stack. A thread that is running at
that instant reads ``running``; it is re-read a few times (1 ms apart) and,
if still running, counted in ``threads_unlocated``: its stack then counts as
``heap``. Limits: a stack that glibc keeps cached after its thread exited,
and the alternate signal stacks, are ``heap``; a stack mapping the kernel
merged with an adjacent anonymous mapping of the same flags would bring
that neighbour into ``stacks`` (``MAP_STACK`` mappings carry
``VM_NOHUGEPAGE`` since Linux 6.7, which keeps them apart from ordinary ones).

Cost: reading ``smaps`` walks every mapping's page tables and formats ~25
lines per mapping (a Django worker has 400-700 mappings), several times the
cost of ``smaps_rollup``, and it holds the process's ``mmap_lock`` for reading
meanwhile (see ``runners.cli.memcheck --breakdown`` for the measured figures).
Read it once near the end of a window, or at a low rate, never at the
sampler's once a second.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

Category = Literal["heap", "libraries", "interpreter", "stacks", "files", "other"]
CATEGORIES: tuple[Category, ...] = ("heap", "libraries", "interpreter", "stacks", "files", "other")
_KERNEL = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]")
_SHARED_ANON = ("/dev/zero", "/SYSV", "[anon_shmem:")
_RETRIES = 10
_HEX_DIGITS = frozenset(b"0123456789abcdef")


@dataclass(frozen=True)
class Usage:
    """Memory figures in bytes (one mapping, or a sum of them)."""

    rss: int = 0
    pss: int = 0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    swap: int = 0
    mappings: int = 0

    @property
    def private(self) -> int:
        """USS: pages only this process maps."""
        return self.private_clean + self.private_dirty

    @property
    def shared(self) -> int:
        """Resident pages some other process maps too."""
        return self.shared_clean + self.shared_dirty

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Usage)))

    def as_dict(self) -> dict[str, int]:
        out = {f.name: getattr(self, f.name) for f in fields(Usage)}
        out["private"] = self.private
        out["shared"] = self.shared
        return out


_SMAPS_FIELDS = {
    b"Rss": "rss",
    b"Pss": "pss",
    b"Shared_Clean": "shared_clean",
    b"Shared_Dirty": "shared_dirty",
    b"Private_Clean": "private_clean",
    b"Private_Dirty": "private_dirty",
    b"Swap": "swap",
}


@dataclass(frozen=True)
class Region:
    """One mapping of ``/proc/PID/smaps``: its header and figures.

    ``path`` is the header's last column: a file, a pseudo-name such as
    ``[heap]``, or ``""`` for anonymous memory.
    """

    start: int
    end: int
    perms: str
    inode: int
    path: str
    usage: Usage

    @property
    def anonymous(self) -> bool:
        return self.path == "" or self.path.startswith("[anon:")

    @property
    def file_backed(self) -> bool:
        """Backed by a file (inode != 0), shared anonymous memory aside."""
        return self.inode != 0 and not self.path.startswith(_SHARED_ANON)

    def contains(self, address: int) -> bool:
        return self.start <= address < self.end


def _regions(data: bytes) -> Iterator[Region]:
    header: list[bytes] | None = None
    values: dict[str, int] = {}

    def region() -> Region:
        assert header is not None
        start, _, end = header[0].partition(b"-")
        path = header[5].decode(errors="replace") if len(header) > 5 else ""
        return Region(
            start=int(start, 16),
            end=int(end, 16),
            perms=header[1].decode(),
            inode=int(header[4]),
            path=path.rstrip("\n"),
            usage=Usage(mappings=1, **values),
        )

    for line in data.splitlines():
        if line[:1] and line[0] in _HEX_DIGITS:  # a header: field names start uppercase
            if header is not None:
                yield region()
            header = line.split(maxsplit=5)
            values = {}
            continue
        key, sep, rest = line.partition(b":")
        name = _SMAPS_FIELDS.get(key)
        if sep and name is not None:
            values[name] = int(rest.split()[0]) * 1024
    if header is not None:
        yield region()


def read_regions(pid: int) -> list[Region]:
    """Every mapping of ``pid`` (``OSError`` if the process is gone or not readable)."""
    with open(f"/proc/{pid}/smaps", "rb") as fh:
        data = fh.read()
    return list(_regions(data))


def _stack_pointer(pid: int, tid: int) -> int | None:
    """The thread's stack pointer while it is blocked (None if running or unreadable)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall", "rb") as fh:
            words = fh.read().split()
    except OSError:
        return None
    if len(words) < 3 or words[0] == b"running":
        return None
    return int(words[-2], 16)


def thread_stack_pointers(pid: int, main: bool = False) -> tuple[dict[int, int], int]:
    """({tid: stack pointer}, threads) of ``pid``'s threads, the main thread aside
    unless ``main`` (its stack is ``[stack]``). Running threads are re-read up to
    ``_RETRIES`` times, 1 ms apart; those still running are missing from the dict."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return {}, 0
    wanted = [tid for tid in tids if main or tid != pid]
    found: dict[int, int] = {}
    for attempt in range(_RETRIES):
        for tid in wanted:
            if tid not in found and (sp := _stack_pointer(pid, tid)) is not None:
                found[tid] = sp
        if len(found) == len(wanted):
            break
        if attempt + 1 < _RETRIES:
            time.sleep(0.001)
    return found, len(tids)


def classify(region: Region, exe: str, stack_regions: frozenset[int]) -> Category:
    """The category of one mapping (``stack_regions``: start addresses of the
    anonymous mappings that hold a thread's stack pointer)."""
    path = region.path
    if path == "[stack]" or region.start in stack_regions:
        return "stacks"
    if path == "[heap]" or region.anonymous:
        return "heap"
    if path.startswith(_KERNEL) or not region.file_backed:
        return "other"
    name = path.removesuffix(" (deleted)")
    base = name.rsplit("/", 1)[-1]
    if name == exe or base.startswith("libpython"):
        return "interpreter"
    if ".so" in base:
        return "libraries"
    return "files"


@dataclass(frozen=True)
class FileUsage:
    """A file's mappings summed (a library maps several segments)."""

    path: str
    category: Category
    usage: Usage


@dataclass(frozen=True)
class SmapsBreakdown:
    """One process's memory by category, read from ``/proc/PID/smaps`` at one instant.

    ``threads``: the process's threads; ``threads_unlocated``: threads other
    than the main one whose stack could not be found (running each time it
    was looked at, or not readable). ``read_seconds``: wall time reading and
    parsing ``smaps`` took (the cost of a breakdown, thread lookup aside).
    ``files``: the file-backed mappings summed per file, largest RSS first.
    ``stacks``: (start, end) of the anonymous mappings found to hold a
    thread's stack.
    """

    pid: int
    categories: dict[Category, Usage]
    threads: int
    threads_unlocated: int
    read_seconds: float
    files: tuple[FileUsage, ...] = field(default=())
    stacks: tuple[tuple[int, int], ...] = field(default=())

    @property
    def total(self) -> Usage:
        return sum(self.categories.values(), Usage())

    def as_dict(self, top_files: int = 10) -> dict[str, object]:
        """The JSON shape: per-category figures plus the largest files."""
        return {
            "pid": self.pid,
            "categories": {name: usage.as_dict() for name, usage in self.categories.items()},
            "total": self.total.as_dict(),
            "threads": self.threads,
            "threads_unlocated": self.threads_unlocated,
            "read_seconds": round(self.read_seconds, 6),
            "files": [
                {"path": f.path, "category": f.category, **f.usage.as_dict()}
                for f in self.files[:top_files]
            ],
        }


def stack_regions(regions: Sequence[Region], stack_pointers: Iterable[int]) -> list[Region]:
    """The anonymous mappings holding one of ``stack_pointers``, one per pointer found."""
    found: list[Region] = []
    for sp in sorted(stack_pointers):
        for region in regions:
            if region.anonymous and region.contains(sp):
                found.append(region)
                break
    return found


def breakdown_of(
    regions: Sequence[Region], exe: str, stacks: Sequence[Region]
) -> tuple[dict[Category, Usage], tuple[FileUsage, ...]]:
    """(categories, files) of ``regions``: the pure part of ``breakdown``."""
    frozen = frozenset(region.start for region in stacks)
    totals: dict[Category, Usage] = {name: Usage() for name in CATEGORIES}
    per_file: dict[str, FileUsage] = {}
    for region in regions:
        category = classify(region, exe, frozen)
        totals[category] += region.usage
        if region.file_backed and category in ("libraries", "interpreter", "files"):
            key = region.path.removesuffix(" (deleted)")
            before = per_file.get(key)
            usage = region.usage if before is None else before.usage + region.usage
            per_file[key] = FileUsage(key, category, usage)
    files = tuple(sorted(per_file.values(), key=lambda f: (-f.usage.rss, f.path)))
    return totals, files


def breakdown(pid: int) -> SmapsBreakdown:
    """Read ``pid``'s mappings and threads now and split its memory by category.

    ``OSError`` (``FileNotFoundError``, ``ProcessLookupError``,
    ``PermissionError``) if the process is gone or not ours to read.
    """
    pointers, threads = thread_stack_pointers(pid)
    began = time.perf_counter()
    regions = read_regions(pid)
    read_seconds = time.perf_counter() - began
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        exe = ""
    stacks = stack_regions(regions, pointers.values())
    categories, files = breakdown_of(regions, exe, stacks)
    return SmapsBreakdown(
        pid=pid,
        categories=categories,
        threads=threads,
        threads_unlocated=max(0, threads - 1 - len(stacks)),
        read_seconds=read_seconds,
        files=files,
        stacks=tuple(sorted({(r.start, r.end) for r in stacks})),
    )


def read_cost(pid: int, repeat: int = 20) -> dict[str, float | int]:
    """What reading ``pid``'s memory costs: median seconds of ``repeat`` reads of
    ``smaps`` (read and parsed) and of ``smaps_rollup``, and the mapping count."""
    smaps_times: list[float] = []
    rollup_times: list[float] = []
    mappings = 0
    for _ in range(repeat):
        began = time.perf_counter()
        mappings = len(read_regions(pid))
        smaps_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            fh.read()
        rollup_times.append(time.perf_counter() - began)
    return {
        "smaps_s": statistics.median(smaps_times),
        "smaps_rollup_s": statistics.median(rollup_times),
        "mappings": mappings,
    }


def format_breakdown(result: SmapsBreakdown, title: str) -> str:
    """A table of one process's categories, in MiB."""
    columns = ("rss", "pss", "private_clean", "private_dirty", "shared_clean", "shared_dirty")
    header = f"  {title:<14}" + "".join(f"{c.replace('_', ' '):>14}" for c in columns)
    lines = [header]
    for name, usage in (*result.categories.items(), ("total", result.total)):
        values = "".join(f"{getattr(usage, c) / 2**20:14.2f}" for c in columns)
        lines.append(f"  {name:<14}{values}")
    lines.append(
        f"  threads {result.threads} (stacks not located: {result.threads_unlocated}), "
        f"smaps read in {result.read_seconds * 1000:.1f} ms"
    )
    return "\n".join(lines)
