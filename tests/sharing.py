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
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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
