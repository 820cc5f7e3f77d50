"""The garbage-collector modes a pre-fork server can run under.

The mode comes from the ``BENCH_GC`` environment variable and is applied at
three points of a pre-fork server's life; each server's hook file
(``gunicorn_conf.py``, ``uwsgi_app.py``) calls these:

``in_master``   as early as possible in the master, before the app is imported;
``before_fork`` in the master, right before each worker is forked;
``in_worker``   in each worker, right after the fork (and, for ``off``, once
                the worker has booted: see ``fast_exit_at_shutdown``).

Modes:

``default``  CPython's collector, untouched.
``freeze``   the pattern Instagram published for Python's copy-on-write
             problem: ``gc.disable()`` early in the master (so no collection
             touches, and un-shares, the objects the app import creates),
             ``gc.freeze()`` just before fork (those objects move to the
             permanent generation, which later collections never scan), and
             ``gc.enable()`` in each worker.
``off``      no cyclic collection anywhere: ``gc.disable()`` plus
             ``gc.set_threshold(0)`` (which stays off even if a library calls
             ``gc.enable()``), inherited by the workers; workers leave with
             ``os._exit`` so the final collection and module teardown at
             interpreter exit do not touch (and copy) every shared page.

Standard library only: this runs inside the server processes.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import sys
from typing import Literal, cast

GcMode = Literal["default", "freeze", "off"]
ENV = "BENCH_GC"
MODES: tuple[GcMode, ...] = ("default", "freeze", "off")


def from_env() -> GcMode:
    """The mode named by ``BENCH_GC`` (``default`` when unset)."""
    value = os.environ.get(ENV, "default") or "default"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return cast(GcMode, value)


def in_master(mode: GcMode) -> None:
    """Early in the master, before the app is imported."""
    if mode == "freeze":
        gc.disable()
    elif mode == "off":
        gc.disable()
        gc.set_threshold(0)


def before_fork(mode: GcMode) -> None:
    """In the master, just before a worker is forked."""
    if mode == "freeze":
        gc.freeze()


def in_worker(mode: GcMode) -> None:
    """In a worker, right after the fork."""
    if mode == "freeze":
        gc.enable()
    elif mode == "off":
        # Inherited through fork already; repeated for servers that spawn.
        gc.disable()
        gc.set_threshold(0)


def _fast_exit() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)


def fast_exit_at_shutdown(mode: GcMode) -> None:
    """For ``off``: leave the worker with ``os._exit(0)`` at interpreter exit.

    Call once the worker has booted (its boot-error exit codes must stay
    visible to the master). atexit runs last-registered first, so this skips
    the handlers registered before it and the interpreter's own teardown.
    """
    if mode == "off":
        atexit.register(_fast_exit)
