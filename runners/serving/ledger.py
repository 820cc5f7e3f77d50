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

The folder is ``$BENCH_RUNNING_DIR``, by default ``.data/running`` in the repository.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
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
        self._lock = threading.Lock()

    def _save(self) -> None:
        doc = {
            "driver": asdict(self.driver),
            "processes": [asdict(e) for e in self._entries.values()],
        }
        _write(self.path, doc)

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
        """Forget the ledger; a tree still listed (it left processes) keeps it on disk."""
        with self._lock:
            if self._entries:
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


def _load(path: Path) -> tuple[Entry, list[Entry]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    driver = Entry(**doc["driver"])
    return driver, [Entry(**e) for e in doc["processes"]]


def others(directory: Path | None = None) -> Iterator[tuple[Path, Entry, list[Entry]]]:
    """The ledgers of other drivers: (file, driver, what it lists).

    An unreadable ledger cannot name anything to stop: it is removed.
    """
    folder = directory or running_dir()
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return
    for path in paths:
        try:
            driver, entries = _load(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError, KeyError):
            path.unlink(missing_ok=True)
            continue
        if driver.pid != os.getpid():
            yield path, driver, entries
