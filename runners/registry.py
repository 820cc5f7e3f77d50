"""Every way the suite serves the app, as small declarative records.

A runner is data: the server, its interface, its concurrency model and its
settings. ``runners.commands`` turns a record plus a concrete worker/thread
count into a command line; ``runners.process`` runs it. Nothing here starts a
process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["prefork", "threaded", "async"]
Interface = Literal["wsgi", "asgi"]
Variant = Literal["sync", "async"]
GcMode = Literal["default", "freeze", "off"]
WorkerRule = Literal["2n+1", "n", "1"]


@dataclass(frozen=True)
class Runner:
    """One way of serving the app.

    ``workers`` is a rule evaluated against the CPUs given to the server
    (``2n+1`` pre-fork workers, ``n`` async workers, ``1`` for single-process
    servers); ``threads`` is a per-worker thread count for threaded servers.
    Both can be overridden per run.
    """

    name: str
    family: Family
    server: str
    interface: Interface
    variant: Variant
    workers: WorkerRule
    threads: int | None = None
    preload: bool = False
    gc: GcMode = "default"
    options: tuple[str, ...] = ()
    description: str = ""


def worker_count(rule: WorkerRule, cpus: int) -> int:
    """Worker count for a rule on ``cpus`` CPUs."""
    if rule == "2n+1":
        return 2 * cpus + 1
    if rule == "n":
        return max(1, cpus)
    return 1
