"""A ledger of the processes a driver starts, so that the next run can clean up after it.

Servers, the upstream and Locust already die with their driver: the launcher
(``runners/serving/servers/launch.py``) asks the kernel for ``PR_SET_PDEATHSIG``. The
ledger covers what that misses: a process that ignores or outlives SIGTERM,
workers whose master was killed, a driver killed between fork and ``prctl``.

A driver wraps its work in ``track()``: while it runs, ``<dir>/<driver pid>.json``
lists the driver and every process tree it started (``runners/serving/server.py``
and ``runners/load/locust.py`` call ``started``/``stopped``, which do nothing
outside ``track()``); the file is removed when the driver ends normally.
``sweep()``, run by the next driver at start-up, reads the ledgers whose
driver is gone and stops whatever they list that still runs.

A process is only ever killed when it is provably ours: the PID *and* its
start time match the ledger (a reused PID has another start time), or it
belongs to the session of a listed root (every tree is started in a session
of its own, whose id is the root's PID) and started after that root (and
before any newer process that reused the root's PID).

The folder is ``$BENCH_RUNNING_DIR``, by default ``.data/running`` in the repository.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from runners import REPO_ROOT

ENV_VAR = "BENCH_RUNNING_DIR"
TIME_TOLERANCE_S = 0.05
"""Start times are read from /proc with clock-tick resolution."""


def running_dir() -> Path:
    """Where the ledgers live."""
    return Path(os.environ.get(ENV_VAR) or REPO_ROOT / ".data" / "running")


@dataclass(frozen=True)
class Entry:
    """One process (tree) in a ledger."""

    name: str
    pid: int
    create_time: float
    cmdline: list[str]


def _identify(name: str, pid: int, cmdline: Sequence[str] = ()) -> Entry | None:
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        shown = list(cmdline) or proc.cmdline()
    except psutil.Error:
        return None
    return Entry(name=name, pid=pid, create_time=created, cmdline=shown)


def _same_start(a: float, b: float) -> bool:
    return abs(a - b) <= TIME_TOLERANCE_S


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Ledger:
    """The ledger of this process (the driver)."""

    def __init__(self, directory: Path) -> None:
        driver = _identify("driver", os.getpid())
        assert driver is not None
        self.path = directory / f"{os.getpid()}.json"
        self.driver = driver
        self.entries: dict[int, Entry] = {}
        self._lock = threading.Lock()

    def _save(self) -> None:
        doc = {
            "driver": asdict(self.driver),
            "processes": [asdict(e) for e in self.entries.values()],
        }
        _write(self.path, doc)

    def add(self, name: str, pid: int, cmdline: Sequence[str]) -> None:
        entry = _identify(name, pid, cmdline)
        if entry is None:
            return
        with self._lock:
            self.entries[pid] = entry
            self._save()

    def remove(self, pid: int) -> None:
        with self._lock:
            if self.entries.pop(pid, None) is not None:
                self._save()

    def reap(self, grace: float = 3.0) -> list[str]:
        """Stop whatever this ledger still lists (trees whose stop was cut short);
        one description per process stopped."""
        with self._lock:
            entries = list(self.entries.values())
        done: list[str] = []
        for entry in entries:
            procs = members(entry)
            described = {p.pid: f"{entry.name}: {_describe(p)}" for p in procs}
            left = {p.pid for p in _stop(procs, grace)}
            done += [text for pid, text in described.items() if pid not in left]
            if not left:
                self.remove(entry.pid)
        return done

    def close(self) -> None:
        """Forget the ledger; a tree still listed (it left processes) keeps it on disk."""
        with self._lock:
            if self.entries:
                self._save()
            else:
                self.path.unlink(missing_ok=True)


_active: Ledger | None = None


@contextlib.contextmanager
def track(directory: Path | None = None) -> Iterator[Ledger]:
    """Keep this process's ledger while the block runs."""
    global _active
    ledger = Ledger(directory or running_dir())
    ledger._save()
    previous, _active = _active, ledger
    try:
        yield ledger
    finally:
        _active = previous
        ledger.reap()
        ledger.close()


def started(name: str, pid: int, cmdline: Sequence[str] = ()) -> None:
    """Record a process tree this driver started (in a session of its own)."""
    if _active is not None:
        with contextlib.suppress(OSError):
            _active.add(name, pid, cmdline)


def stopped(pid: int) -> None:
    """The tree of ``pid`` was stopped and checked gone."""
    if _active is not None:
        with contextlib.suppress(OSError):
            _active.remove(pid)


# --- the next run: finding and stopping strays --------------------------------------------------


def _alive(entry: Entry) -> bool:
    """Whether the very process of ``entry`` (same PID, same start time) still runs."""
    try:
        proc = psutil.Process(entry.pid)
        return proc.status() != psutil.STATUS_ZOMBIE and _same_start(
            proc.create_time(), entry.create_time
        )
    except psutil.Error:
        return False


def members(entry: Entry) -> list[psutil.Process]:
    """The live processes of ``entry``'s tree: the root if it is the same process,
    and the members of its session that started after it (and before whatever
    process reused the root's PID, if one did)."""
    until = float("inf")
    try:
        current = psutil.Process(entry.pid)
        if not _same_start(current.create_time(), entry.create_time):
            until = current.create_time()
    except psutil.Error:
        pass
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) != entry.pid or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            created = proc.create_time()
        except (OSError, psutil.Error):
            continue
        if entry.create_time - TIME_TOLERANCE_S <= created < until:
            found.append(proc)
    return found


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} ({' '.join(proc.cmdline())[:100]})"
    except psutil.Error:
        return str(proc.pid)


def _stop(procs: list[psutil.Process], grace: float) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL after ``grace``; what is still alive after that."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _, procs = psutil.wait_procs(procs, timeout=wait)
        procs = [p for p in procs if _not_zombie(p)]
        if not procs:
            break
    return procs


def _not_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _load(path: Path) -> tuple[Entry, list[Entry]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    driver = Entry(**doc["driver"])
    return driver, [Entry(**e) for e in doc["processes"]]


def sweep(directory: Path | None = None, grace: float = 3.0) -> list[str]:
    """Stop what the ledgers of dead drivers list; one description per stopped process.

    Ledgers of live drivers are left alone; a ledger is removed once nothing
    it lists runs any more.
    """
    folder = directory or running_dir()
    stopped_: list[str] = []
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return stopped_
    for path in paths:
        try:
            driver, entries = _load(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError, KeyError):
            path.unlink(missing_ok=True)  # unreadable: it cannot name anything to stop
            continue
        if driver.pid == os.getpid() or _alive(driver):
            continue
        left: list[psutil.Process] = []
        for entry in entries:
            procs = members(entry)
            described = {p.pid: f"{entry.name}: {_describe(p)}" for p in procs}
            remaining = _stop(procs, grace)
            alive = {p.pid for p in remaining}
            stopped_ += [text for pid, text in described.items() if pid not in alive]
            left += remaining
        if not left:
            path.unlink(missing_ok=True)
    return stopped_


def sweep_message(directory: Path | None = None) -> str | None:
    """Run ``sweep``; one line saying what it stopped (None if nothing)."""
    found = sweep(directory)
    if not found:
        return None
    return (
        f"stopped {len(found)} stray process(es) left by an earlier run that was killed: "
        + "; ".join(found)
    )
