"""Every server in a cgroup of its own: made before it starts, removed after it stops.

A container platform charges, limits and OOM-kills a pod by its cgroup, not by PSS. So
``runners.serving.server.start`` makes a cgroup for each server (``make``) under the
driver's own cgroup (read from ``/proc/self/cgroup``, so nothing escapes a limit the
driver itself runs under), optionally with a memory limit and a CFS CPU quota
(``Limits``), and the launcher (``runners/serving/servers/launch.py``) writes its own
PID into the cgroup before it execs the server: the server's root and everything it
forks or spawns are inside from their first instruction. ``remove`` (after the server
stopped, Ctrl-C included) kills what is still inside (only processes in the cgroup are
ever signalled) and removes it.

cgroup v2 is used where its memory controller is enabled for our cgroup's children;
else cgroup v1's ``memory`` hierarchy (and ``cpu`` for a quota). ``support()`` says
which, or why none can be made (not root, no memory controller): then servers run
without one and the driver measures PSS only.

A driver killed with ``kill -9`` cannot remove its cgroups: each one is listed in the
driver's ledger (``runners.serving.ledger.acquired``, kind ``cgroup``, one resource per
directory), and the next driver's ``supervisor.stop_strays`` removes it through the
cleaner registered here.

Reading what a cgroup holds (usage, working set, OOM kills) is
``runners.sampling.cgroupmem``'s.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import psutil

from runners.serving import ledger

KIND = "cgroup"
"""The ledger's resource kind."""
PREFIX = "django-bench-"
"""Every cgroup the suite makes is named ``django-bench-<driver pid>-<n>-<runner>``; the
cleaner removes nothing else."""
CFS_PERIOD_US = 100_000
"""The CFS period of a CPU quota, as Kubernetes sets it (100 ms)."""
REMOVE_TIMEOUT_S = 5.0

Version = Literal[1, 2]


class CgroupError(RuntimeError):
    """A cgroup could not be made, limited or removed."""


@dataclass(frozen=True)
class Limits:
    """What a pod's resources section would say: a memory limit (bytes) and a CPU
    limit (cores, a CFS quota); None: unlimited."""

    memory_bytes: int | None = None
    cpu_cores: float | None = None

    @property
    def cpus(self) -> int | None:
        """The CPUs a worker rule reads under the quota: ``ceil(cores)`` (None: no quota)."""
        return None if self.cpu_cores is None else max(1, math.ceil(self.cpu_cores))


NO_LIMITS = Limits()


@dataclass(frozen=True)
class Hierarchy:
    """Where this process's servers' cgroups go: under our own cgroup of each
    controller (v2: one directory for both)."""

    version: Version
    memory: Path
    cpu: Path | None
    """Where a CPU quota can be set (None: no cpu controller)."""


@dataclass(frozen=True)
class Support:
    """Whether servers get cgroups here, and why not."""

    hierarchy: Hierarchy | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.hierarchy is not None


@dataclass(frozen=True)
class Cgroup:
    """One server's cgroup. ``memory`` holds the memory controller's files; ``cpu`` the
    quota's (v2: the same directory; v1 without a quota: None)."""

    version: Version
    memory: Path
    cpu: Path | None
    limits: Limits = NO_LIMITS

    @property
    def dirs(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(d for d in (self.memory, self.cpu) if d is not None))

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """Where the launcher writes its PID (one per hierarchy)."""
        return tuple(d / "cgroup.procs" for d in self.dirs)

    def members(self) -> set[int]:
        """The processes in it now."""
        return set().union(*(_pids(d) for d in self.dirs))


def oom_kills(cgroup: Cgroup) -> int | None:
    """OOM kills in the cgroup since it was made: v2 ``memory.events`` ``oom_kill``, v1
    ``memory.oom_control`` ``oom_kill`` (None: not counted by this kernel, or gone)."""
    name = "memory.events" if cgroup.version == 2 else "memory.oom_control"
    try:
        text = (cgroup.memory / name).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


# --- where our cgroups are ----------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A cgroup filesystem: its mount point, the cgroup path mounted there, its type
    and (v1) its controllers."""

    point: Path
    root: str
    fstype: str
    controllers: frozenset[str]


def mounts(mountinfo: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts of a ``/proc/self/mountinfo`` text."""
    found = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        point = Path(fields[4].replace("\\040", " "))
        options = frozenset(rest[2].split(","))
        found.append(Mount(point, fields[3], rest[0], options))
    return found


def own_paths(proc_cgroup: str) -> dict[str, str]:
    """Our cgroup per controller from a ``/proc/self/cgroup`` text (``""``: the v2 one)."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _inside(mount: Mount, path: str) -> Path | None:
    """The directory of cgroup ``path`` under ``mount`` (None: not visible there)."""
    root = mount.root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    folder = mount.point / path[len(root) :].lstrip("/")
    return folder if folder.is_dir() else None


def _controllers(folder: Path, name: str) -> set[str]:
    try:
        return set((folder / name).read_text().split())
    except OSError:
        return set()


def _v2(mount: Mount, own: str) -> tuple[Hierarchy | None, str]:
    folder = _inside(mount, own)
    if folder is None:
        return None, f"cgroup v2: our cgroup {own} is not under {mount.point}"
    available = _controllers(folder, "cgroup.controllers")
    if "memory" not in available:
        return None, f"cgroup v2 at {mount.point}: no memory controller for {own}"
    enabled = _controllers(folder, "cgroup.subtree_control")
    wanted = [c for c in ("memory", "cpu") if c in available and c not in enabled]
    if wanted:
        try:
            (folder / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        except OSError as exc:
            return None, (
                f"cgroup v2: cannot enable the memory controller for the children of {folder} "
                f"({exc.strerror or exc})"
            )
        enabled = _controllers(folder, "cgroup.subtree_control")
    if "memory" not in enabled:
        return None, f"cgroup v2: the memory controller is not enabled under {folder}"
    if not os.access(folder, os.W_OK):
        return None, f"cgroup v2: not allowed to create cgroups in {folder} (not root?)"
    return Hierarchy(2, folder, folder if "cpu" in enabled else None), ""


def _v1(found: Sequence[Mount], own: dict[str, str]) -> tuple[Hierarchy | None, str]:
    folders: dict[str, Path | None] = {}
    for controller in ("memory", "cpu"):
        mount = next(
            (m for m in found if m.fstype == "cgroup" and controller in m.controllers), None
        )
        path = own.get(controller)
        folders[controller] = None if mount is None or path is None else _inside(mount, path)
    memory = folders["memory"]
    if memory is None:
        return None, "no cgroup v2 memory controller and no cgroup v1 memory hierarchy"
    return Hierarchy(1, memory, folders["cpu"]), ""


def detect(proc_cgroup: str, mountinfo: str) -> Support:
    """Where servers' cgroups can go, from ``/proc/self/cgroup`` and mountinfo texts:
    cgroup v2 where its memory controller is there (and can be enabled for our
    children), else cgroup v1; the reason when neither can be used."""
    found = mounts(mountinfo)
    own = own_paths(proc_cgroup)
    reasons = []
    unified = next((m for m in found if m.fstype == "cgroup2"), None)
    if unified is not None and "" in own:
        hierarchy, why = _v2(unified, own[""])
        if hierarchy is not None:
            return Support(hierarchy)
        reasons.append(why)
    hierarchy, why = _v1(found, own)
    if hierarchy is not None:
        if not os.access(hierarchy.memory, os.W_OK):
            return Support(None, f"not allowed to create cgroups in {hierarchy.memory} (not root?)")
        return Support(hierarchy)
    reasons.append(why)
    return Support(None, "; ".join(dict.fromkeys(reasons)))


@cache
def support() -> Support:
    """This process's ``detect``, once."""
    try:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError as exc:
        return Support(None, f"cannot read /proc/self/cgroup or mountinfo: {exc}")
    return detect(proc_cgroup, mountinfo)


# --- making and removing ------------------------------------------------------------------

_counter = itertools.count(1)


def _name(label: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:40]
    return f"{PREFIX}{os.getpid()}-{next(_counter)}-{safe}"


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from None


def _limit(cgroup: Cgroup) -> None:
    limits = cgroup.limits
    if limits.cpu_cores is not None:
        if cgroup.cpu is None:
            raise CgroupError("a CPU limit needs the cpu controller, which is not available")
        quota = max(1000, round(limits.cpu_cores * CFS_PERIOD_US))
        if cgroup.version == 2:
            _write(cgroup.cpu / "cpu.max", f"{quota} {CFS_PERIOD_US}")
        else:
            _write(cgroup.cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(cgroup.cpu / "cpu.cfs_quota_us", str(quota))
    if limits.memory_bytes is not None:
        if cgroup.version == 2:
            _write(cgroup.memory / "memory.max", str(limits.memory_bytes))
            # As Kubernetes runs a pod: no swap (a host without swap has no such file).
            with contextlib.suppress(CgroupError):
                _write(cgroup.memory / "memory.swap.max", "0")
        else:
            _write(cgroup.memory / "memory.limit_in_bytes", str(limits.memory_bytes))


def make(label: str, limits: Limits = NO_LIMITS, where: Support | None = None) -> Cgroup:
    """A new cgroup for a server named after ``label``, with ``limits``, listed in the
    ledger; ``CgroupError`` (nothing left) when it cannot be made or limited."""
    found = where or support()
    hierarchy = found.hierarchy
    if hierarchy is None:
        raise CgroupError(f"no cgroup can be made here: {found.reason}")
    name = _name(label)
    # v2: one directory holds both controllers; v1: a cpu cgroup only for a quota.
    wants_cpu = hierarchy.version == 2 or limits.cpu_cores is not None
    cpu_parent = hierarchy.cpu if wants_cpu else None
    cgroup = Cgroup(
        hierarchy.version,
        hierarchy.memory / name,
        None if cpu_parent is None else cpu_parent / name,
        limits,
    )
    made: list[Path] = []
    try:
        for folder in cgroup.dirs:
            # Listed before it exists: a driver killed in between leaves nothing unlisted.
            ledger.acquired(ledger.Resource(KIND, str(folder)))
            try:
                folder.mkdir()
            except OSError as exc:
                raise CgroupError(f"cannot create {folder}: {exc.strerror or exc}") from None
            made.append(folder)
        _limit(cgroup)
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        for folder in cgroup.dirs:
            ledger.released(ledger.Resource(KIND, str(folder)))
        raise
    return cgroup


def _pids(folder: Path) -> set[int]:
    try:
        text = (folder / "cgroup.procs").read_text()
    except OSError:
        return set()
    return {int(line) for line in text.split() if line.isdigit()}


def kill_members(folders: Iterable[Path]) -> int:
    """SIGKILL every process in ``folders`` (cgroup directories); how many there were.
    Only processes in the cgroup are signalled."""
    killed = 0
    for folder in folders:
        if (folder / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                killed += len(_pids(folder))
                (folder / "cgroup.kill").write_text("1")
                continue
        for pid in _pids(folder):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _rmdir(folder: Path, timeout: float) -> bool:
    """Remove an empty cgroup directory, waiting up to ``timeout`` for its members to go
    (killed ones vanish once reaped); False when it is still busy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def remove(cgroup: Cgroup, timeout: float = REMOVE_TIMEOUT_S) -> int:
    """Kill what is still in the cgroup (nothing, after a clean stop), remove its
    directories and take them off the ledger; how many processes were killed.
    ``CgroupError`` when a directory stays busy."""
    killed = kill_members(cgroup.dirs)
    busy = [d for d in cgroup.dirs if not _rmdir(d, timeout)]
    for folder in cgroup.dirs:
        if folder not in busy:
            ledger.released(ledger.Resource(KIND, str(folder)))
    if busy:
        raise CgroupError(f"cgroup {busy[0]} could not be removed (still busy after {timeout:g}s)")
    return killed


def clean(ident: str) -> str | None:
    """The ledger's cleaner: remove a cgroup a killed driver left (its processes
    killed first); None when it is gone already. Refuses a path the suite never makes."""
    folder = Path(ident)
    if not folder.name.startswith(PREFIX) or not folder.is_absolute():
        raise RuntimeError(f"{ident}: not a cgroup of the suite")
    if not folder.exists():
        return None
    if not (folder / "cgroup.procs").exists():
        raise RuntimeError(f"{ident}: not a cgroup")
    killed = kill_members([folder])
    if not _rmdir(folder, REMOVE_TIMEOUT_S):
        raise RuntimeError(f"{ident}: still busy")
    return f"removed {folder}" + (f" (killed {killed} process(es) in it)" if killed else "")


def leftovers(parent: Path) -> list[Path]:
    """The suite's cgroups directly under ``parent`` (tests check that none is left)."""
    try:
        return sorted(p for p in parent.iterdir() if p.name.startswith(PREFIX) and p.is_dir())
    except OSError:
        return []


def maker(folder: Path) -> int | None:
    """The PID of the driver that made the suite's cgroup ``folder`` (its name says)."""
    head = folder.name.removeprefix(PREFIX).split("-", 1)[0]
    return int(head) if folder.name.startswith(PREFIX) and head.isdigit() else None


def sweep_orphans(where: Support | None = None) -> list[str]:
    """Remove the suite's cgroups whose maker is dead though no ledger here lists them: a
    driver of another clone killed with ``kill -9``, or one whose ledger folder is gone.
    A live maker's cgroups are left alone. One description per cgroup removed."""
    hierarchy = (where or support()).hierarchy
    if hierarchy is None:
        return []
    parents = {hierarchy.memory, *([hierarchy.cpu] if hierarchy.cpu else [])}
    done: list[str] = []
    for parent in parents:
        for folder in leftovers(parent):
            pid = maker(folder)
            if pid is None or pid == os.getpid() or psutil.pid_exists(pid):
                continue
            with contextlib.suppress(RuntimeError):
                found = clean(str(folder))
                if found:
                    done.append(f"{KIND}: {found} (its driver {pid} is gone)")
    return done


ledger.register_cleaner(KIND, clean)
ledger.register_sweeper(sweep_orphans)
