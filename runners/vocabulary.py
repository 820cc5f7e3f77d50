"""The suite's shared words, defined once: what a runner is (family, interface, the views
it serves, its gc mode), how load is offered (open or closed, its arrivals), the
middleware profiles, and what can bound a capacity.

Standard library only and below every other module: the servers (``runners.serving``),
the records (``runners.results``), the Locust side (``loadtests``), the agent and the
driver all take these names from here, so each exists in one place.
"""

from __future__ import annotations

from typing import Literal, get_args

Family = Literal["prefork", "threaded", "async"]
"""A runner's concurrency model: forked worker processes, threads, or an event loop."""
Interface = Literal["wsgi", "asgi"]
Variant = Literal["sync", "async"]
"""The views a server serves: ``/sync/...`` or ``/async/...``."""
GcMode = Literal["default", "freeze", "off"]
"""How a pre-fork master's garbage collector is set up (``runners/serving/servers/gcmode.py``)."""

FAMILIES: tuple[Family, ...] = get_args(Family)
INTERFACES: tuple[Interface, ...] = get_args(Interface)
VARIANTS: tuple[Variant, ...] = get_args(Variant)
GC_MODES: tuple[GcMode, ...] = get_args(GcMode)

Role = Literal["master", "worker"]
"""A server process's part: the master (or a helper: a supervisor that serves nothing), or
a worker that serves requests."""

Load = Literal["open", "closed"]
"""``open``: requests arrive on a schedule, whatever the server does; ``closed``: a fixed
number of users send back to back."""
LOADS: tuple[Load, ...] = get_args(Load)

Arrival = Literal["constant", "poisson"]
"""An open loop's schedule: evenly spaced, or a Poisson process."""
ARRIVALS: tuple[Arrival, ...] = get_args(Arrival)
DEFAULT_ARRIVAL: Arrival = "poisson"

Middleware = Literal["minimal", "default"]
"""Django's middleware: none (as the TechEmpower entry runs) or ``startproject``'s."""
MIDDLEWARES: tuple[Middleware, ...] = get_args(Middleware)
DEFAULT_MIDDLEWARE: Middleware = "minimal"

Bound = Literal["server-cpu", "server-slots", "loadgen", "errors", "memory"]
"""What limited a server at the first rate it could not sustain (``runners.bench.capacity``)."""
BOUNDS: tuple[Bound, ...] = get_args(Bound)

WorkerBasis = Literal["limit", "host"]
"""What a runner's worker rule reads in a pod (``--worker-rule``): the limit's CPUs
(``ceil`` of the CPU quota; the pinned CPUs without one), or the host's cores, as
``os.cpu_count()`` does inside a container."""
WORKER_BASES: tuple[WorkerBasis, ...] = get_args(WorkerBasis)
DEFAULT_WORKER_BASIS: WorkerBasis = "limit"
