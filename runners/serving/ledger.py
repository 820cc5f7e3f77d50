"""A ledger of the processes a driver starts, so that the next run can clean up after it.

Servers, the upstream and Locust already die with their driver: the launcher
(``runners/serving/servers/launch.py``) asks the kernel for ``PR_SET_PDEATHSIG``. The
ledger covers what that misses: a process that ignores or outlives SIGTERM,
workers whose master was killed, a driver killed between fork and ``prctl``.

This module only keeps the books; the supervisor (``runners/serving/supervisor.py``)
writes them and acts on them. While a driver runs inside ``supervisor.track()``,
``<dir>/<driver pid>.json`` lists the driver and every process tree it started
(``supervisor.spawn`` calls ``started``, ``supervisor.stop`` calls ``stopped``; both
do nothing outside ``track()``); the file is removed when the driver ends
normally. ``supervisor.stop_strays()``, run by the next driver at start-up, reads the
ledgers of other drivers (``others``) and stops what those of dead drivers
still list.

Besides processes a ledger lists *resources*: things a driver made that outlive a
``kill -9`` without a process, such as a scratch database or a cgroup. The module that
owns a kind of resource registers its cleaner (``register_cleaner``); ``acquired`` and
``released`` keep the books while it exists, and the next driver's ``stop_strays``
runs the cleaner on what a dead driver left (a kind no cleaner is registered for in
that command stays listed until one runs that knows it).

The folder is ``$BENCH_RUNNING_DIR``, by default ``.data/running`` in the repository.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from runners import REPO_ROOT

ENV_VAR = "BENCH_RUNNING_DIR"


def running_dir() -> Path:
    """Where the ledgers live."""
    return Path(os.environ.get(ENV_VAR) or REPO_ROOT / ".data" / "running")


@dataclass(frozen=True)
class Entry:
    """One process (tree): a name, and the PID with its start time, which together
    identify the process (a reused PID has another start time)."""

    name: str
    pid: int
    create_time: float
    cmdline: list[str]


def identify(name: str, pid: int, cmdline: Sequence[str] = ()) -> Entry | None:
    """The entry of ``pid`` as it is now (also of an unreaped zombie); None if it is gone."""
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        shown = list(cmdline) or proc.cmdline()
    except psutil.Error:
        return None
    return Entry(name=name, pid=pid, create_time=created, cmdline=shown)


@dataclass(frozen=True)
class Resource:
    """Something a driver made that is not a process: ``kind`` names its cleaner,
    ``ident`` is what the cleaner needs to find it (a database URL, a cgroup path)."""

    kind: str
    ident: str


Cleaner = Callable[[str], str | None]
"""Removes the resource of this kind named ``ident``: a description of what it removed
(None: it was already gone). ``OSError`` or ``RuntimeError``: not now (kept listed)."""
CLEANERS: dict[str, Cleaner] = {}


def register_cleaner(kind: str, cleaner: Cleaner) -> None:
    """How the resources of ``kind`` are removed (by the module that makes them)."""
    CLEANERS[kind] = cleaner


Sweeper = Callable[[], list[str]]
"""Finds and removes resources of one kind that no ledger lists any more but whose maker
is known to be dead (a ledger in another clone's folder, or lost with its folder): one
description per resource removed."""
SWEEPERS: list[Sweeper] = []


def register_sweeper(sweeper: Sweeper) -> None:
    """A sweep the next driver runs after the ledgers' cleaners (by the module that makes
    the resources)."""
    SWEEPERS.append(sweeper)


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
        driver = identify("driver", os.getpid())
        assert driver is not None
        self.path = directory / f"{os.getpid()}.json"
        self.driver = driver
        self._entries: dict[int, Entry] = {}
        self._resources: dict[Resource, None] = {}
        self._lock = threading.Lock()

    def _save(self) -> None:
        doc = {
            "driver": asdict(self.driver),
            "processes": [asdict(e) for e in self._entries.values()],
            "resources": [asdict(r) for r in self._resources],
        }
        _write(self.path, doc)

    def resources(self) -> list[Resource]:
        with self._lock:
            return list(self._resources)

    def acquire(self, resource: Resource) -> None:
        with self._lock:
            self._resources[resource] = None
            self._save()

    def release(self, resource: Resource) -> None:
        with self._lock:
            if self._resources.pop(resource, 0) is None:
                self._save()

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def add(self, entry: Entry) -> None:
        with self._lock:
            self._entries[entry.pid] = entry
            self._save()

    def remove(self, pid: int) -> None:
        with self._lock:
            if self._entries.pop(pid, None) is not None:
                self._save()

    def close(self) -> None:
        """Forget the ledger; a tree or resource still listed keeps it on disk."""
        with self._lock:
            if self._entries or self._resources:
                self._save()
            else:
                self.path.unlink(missing_ok=True)


_active: Ledger | None = None


@contextlib.contextmanager
def active(directory: Path | None = None) -> Iterator[Ledger]:
    """This process's ledger, on disk and receiving ``started``/``stopped`` while the
    block runs (``supervisor.track`` wraps it and stops leftovers at the end)."""
    global _active
    ledger = Ledger(directory or running_dir())
    ledger._save()
    previous, _active = _active, ledger
    try:
        yield ledger
    finally:
        _active = previous
        ledger.close()


def started(entry: Entry) -> None:
    """Record a process tree this driver started (in a session of its own)."""
    if _active is not None:
        with contextlib.suppress(OSError):
            _active.add(entry)


def stopped(pid: int) -> None:
    """The tree of ``pid`` was stopped and checked gone."""
    if _active is not None:
        with contextlib.suppress(OSError):
            _active.remove(pid)


def acquired(resource: Resource) -> None:
    """Record a resource this driver made (nothing outside ``active()``)."""
    if _active is not None:
        with contextlib.suppress(OSError):
            _active.acquire(resource)


def released(resource: Resource) -> None:
    """The resource was removed."""
    if _active is not None:
        with contextlib.suppress(OSError):
            _active.release(resource)


@dataclass(frozen=True)
class Book:
    """Another driver's ledger as read from disk."""

    path: Path
    driver: Entry
    processes: list[Entry]
    resources: list[Resource]


def _load(path: Path) -> Book:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return Book(
        path,
        Entry(**doc["driver"]),
        [Entry(**e) for e in doc["processes"]],
        [Resource(**r) for r in doc.get("resources", ())],
    )


def rewrite(book: Book, processes: Sequence[Entry], resources: Sequence[Resource]) -> None:
    """What is still listed of another driver's ledger (removed when nothing is)."""
    if not processes and not resources:
        book.path.unlink(missing_ok=True)
        return
    doc = {
        "driver": asdict(book.driver),
        "processes": [asdict(e) for e in processes],
        "resources": [asdict(r) for r in resources],
    }
    _write(book.path, doc)


def others(directory: Path | None = None) -> Iterator[Book]:
    """The ledgers of other drivers.

    An unreadable ledger cannot name anything to stop: it is removed.
    """
    folder = directory or running_dir()
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return
    for path in paths:
        try:
            book = _load(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError, KeyError):
            path.unlink(missing_ok=True)
            continue
        if book.driver.pid != os.getpid():
            yield book
