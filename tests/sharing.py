"""Which tests may share the machine: a measuring module runs alone.

The suite runs on pytest-xdist workers (``tox`` passes ``-n auto --dist loadfile``: a
module's tests stay on one worker). A module marked ``measures`` asserts a figure (a
capacity, a latency, a schedule kept, a CPU share) that another CPU-heavy test beside it
would change, so it runs with nothing else: it holds ``LOCK`` exclusively for as long as
its tests and fixtures run, and every other module holds it shared. The lock is a file in
the temporary folder, so two test sessions on one machine also take turns for their
measuring modules. A turnstile keeps a measuring module that waits from waiting behind a
stream of sharing ones: while it waits, no sharing module starts.

``flock`` locks go with their file descriptor: a worker that dies releases its own.
The hooks (imported by ``tests/conftest.py``) take the lock module by module, before a
test's timeout and timing start, and the summary says how long modules waited.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LOCK = Path(tempfile.gettempdir()) / "django-bench-tests.cpus.lock"
TURNSTILE = LOCK.with_suffix(".turnstile")


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)


@contextlib.contextmanager
def holding(*, alone: bool) -> Iterator[float]:
    """Hold the machine alone (``alone``) or shared; yields the seconds it waited."""
    began = time.monotonic()
    gate, lock = _open(TURNSTILE), _open(LOCK)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        if alone:
            fcntl.flock(lock, fcntl.LOCK_EX)  # holding the gate: no sharer starts meanwhile
            fcntl.flock(gate, fcntl.LOCK_UN)
        else:
            fcntl.flock(gate, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_SH)
        yield time.monotonic() - began
    finally:
        os.close(lock)  # closing releases the locks
        os.close(gate)


@dataclass
class Holding:
    """The module that holds the machine now, and its lock."""

    module: pytest.Module | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


HOLDING = Holding()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Module by module: a module marked ``measures`` holds the machine alone, the others
    share it (``holding``), from its first test's setup to its last one's teardown
    (so the lock covers the module's fixtures). The wait comes before the test's timeout
    and its timing start, and is recorded as the test's ``waited_for_cpus_s``."""
    module = item.getparent(pytest.Module)
    if HOLDING.module is not module:
        HOLDING.stack.close()
        alone = module is not None and module.get_closest_marker("measures") is not None
        waited = HOLDING.stack.enter_context(holding(alone=alone))
        HOLDING.module = module
        if waited >= 0.1:
            item.user_properties.append(("waited_for_cpus_s", round(waited, 1)))
    try:
        return (yield)
    finally:
        if nextitem is None or nextitem.getparent(pytest.Module) is not module:
            HOLDING.stack.close()
            HOLDING.module = None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long modules waited for a measuring module to finish (all workers' reports)."""
    waits = [
        float(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == "waited_for_cpus_s" and getattr(report, "when", "") == "call"
    ]
    if waits:
        terminalreporter.write_line(
            f"{len(waits)} modules waited {sum(waits):.0f} s in all for the machine "
            "(a measuring module runs alone)"
        )
