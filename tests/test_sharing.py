"""The lock that lets a measuring module run alone (tests/sharing.py)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import sharing


@pytest.fixture(autouse=True)
def _own_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharing, "LOCK", tmp_path / "cpus.lock")
    monkeypatch.setattr(sharing, "TURNSTILE", tmp_path / "cpus.turnstile")


def _held(path: Path) -> bool:
    """Whether another holder has ``path`` (an exclusive try fails at once)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _until(predicate: Callable[[], bool], why: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, why
        time.sleep(0.01)


def test_sharers_share_and_a_measuring_module_waits_then_runs_alone() -> None:
    events: list[str] = []
    release = {name: threading.Event() for name in ("s1", "s2", "s3", "m")}

    def hold(name: str, alone: bool) -> None:
        with sharing.holding(alone=alone):
            events.append(f"{name} in")
            release[name].wait(10)
            events.append(f"{name} out")

    def start(name: str, alone: bool = False) -> threading.Thread:
        thread = threading.Thread(target=hold, args=(name, alone))
        thread.start()
        return thread

    threads = [start("s1"), start("s2")]
    _until(lambda: events.count("s1 in") + events.count("s2 in") == 2, "two sharers at once")
    threads.append(start("m", alone=True))
    # The measuring module waits, holding the turnstile: a new sharer waits behind it.
    _until(lambda: _held(sharing.TURNSTILE), "the measuring module at the turnstile")
    threads.append(start("s3"))
    time.sleep(0.2)
    assert "m in" not in events and "s3 in" not in events
    release["s1"].set()
    release["s2"].set()
    _until(lambda: "m in" in events, "the measuring module in once the sharers left")
    time.sleep(0.2)
    assert "s3 in" not in events  # alone
    release["m"].set()
    release["s3"].set()
    for thread in threads:
        thread.join(10)
    assert events.index("m in") > max(events.index("s1 out"), events.index("s2 out"))
    assert events.index("s3 in") > events.index("m out")


def test_a_holder_that_dies_releases_the_lock() -> None:
    """A worker killed mid-module (its descriptors closed by the kernel) blocks nobody."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        with sharing.holding(alone=True):
            time.sleep(30)
        os._exit(0)
    try:
        _until(lambda: _held(sharing.LOCK), "the child holding the lock")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    with sharing.holding(alone=True) as waited:
        assert waited < 5
