"""Your own locustfile on the suite's schedule: a Locust plugin loaded beside it::

    locust -f shop.py,loadtests/userfile.py,loadtests/probes.py --host ... --headless ...

Every task execution of the user classes Locust loaded is one arrival of the schedule
(``loadtests/pacing.py``): the functions their ``tasks`` lists and ``@task`` name (with
their weights), and those of the TaskSets in them at any depth (SequentialTaskSet and
MarkovTaskSet too), whether the user is an ``HttpUser``, a ``FastHttpUser`` or any
``User``. Before it runs, a task waits for its ticket (at once in a closed loop, where
no rate is set); when it ends, ``PACER.done`` records it: a success when none of its
requests failed (Locust's ``request`` event with an exception) and it raised nothing,
its latency from the ticket's intended time. The probes therefore count tasks: a task
that sends three requests is one arrival whose latency is the three requests' time.

- The locustfile's ``wait_time`` becomes none (on the user classes and their TaskSets):
  in an open loop the schedule says when a task runs, in a closed loop users send back
  to back, as the suite's own workloads do.
- Locust's own per-request statistics (its CSV and HTML report) keep the timings the
  clients measured, from when each request left, not from the task's intended time.
- A request counts against the task its greenlet runs: requests a task sends from
  greenlets of its own are not seen. ``on_start`` and ``on_stop`` are not tasks: their
  requests are on no schedule.
- New connections of ``FastHttpUser`` clients are counted, as in the suite's own files
  (``loadtests/clients.py``); an ``HttpUser``'s (requests) are not. The clients keep
  their own timeouts (``--request-timeout`` is not applied to them).
- A user class with ``paces_itself = True`` takes its own tickets, per request (the
  suite's ``BenchUser`` and ``TrafficUser``): it is left alone.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import TaskSet, constant, events
from locust.env import Environment
from locust.exception import (
    InterruptTaskSet,
    RescheduleTask,
    RescheduleTaskImmediately,
    StopTest,
    StopUser,
)
from locust.user.markov_taskset import MarkovTaskSet, is_markov_task

# Loaded by path (``locust -f ...,loadtests/userfile.py``): the shared modules are
# imported from the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from loadtests.clients import count_connects, is_timeout  # noqa: E402
from loadtests.pacing import PACER  # noqa: E402

count_connects()

FLOW = (InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately, StopUser, StopTest)
"""What a task raises to say where its user goes next: no failure."""

Task = Callable[[Any], None]


class TaskOutcome:
    """What the requests of one running task came to."""

    __slots__ = ("failed", "timeout")

    def __init__(self) -> None:
        self.failed = False
        self.timeout = False


_running: dict[Any, TaskOutcome] = {}
"""The task each greenlet is running."""


def _on_request(exception: BaseException | None = None, **_kwargs: Any) -> None:
    outcome = _running.get(gevent.getcurrent())
    if outcome is not None and exception is not None:
        outcome.failed = True
        outcome.timeout = outcome.timeout or is_timeout(exception)


def paced(task: Task) -> Task:
    """``task`` as one arrival of the schedule."""

    @functools.wraps(task)  # keeps its name, weight and tags
    def run(parent: Any) -> None:
        ticket = PACER.acquire()
        greenlet = gevent.getcurrent()
        outcome = _running[greenlet] = TaskOutcome()
        ended = True
        try:
            task(parent)
        except Exception as exc:  # a failure, or Locust's word for what comes next
            outcome.failed |= not isinstance(exc, FLOW)
            raise
        except BaseException:  # the user was killed mid-task (GreenletExit)
            ended = False
            raise
        finally:
            _running.pop(greenlet, None)
            if ended:
                PACER.done(ticket, ok=not outcome.failed, timeout=outcome.timeout)
            PACER.abandon(ticket)

    return run


def pace(holder: Any, seen: set[Any]) -> None:
    """Put the tasks of a user class or TaskSet, and of its TaskSets, on the schedule."""
    if holder in seen:
        return
    seen.add(holder)
    holder.wait_time = constant(0)
    # In place: Locust's web UI keeps the same list for its task picker.
    holder.tasks[:] = [t if isinstance(t, type) else paced(t) for t in holder.tasks]
    for task in holder.tasks:
        if isinstance(task, type) and issubclass(task, TaskSet):
            pace(task, seen)
    if isinstance(holder, type) and issubclass(holder, MarkovTaskSet):
        # Its tasks are the methods its transitions name, and the one it starts from.
        for name, value in list(vars(holder).items()):
            if is_markov_task(value):
                setattr(holder, name, paced(value))
        holder.current = getattr(holder, getattr(holder.current, "__name__", ""), holder.current)


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    seen: set[Any] = set()
    classes = [*environment.user_classes, *(environment.available_user_classes or {}).values()]
    for user_class in classes:
        if not getattr(user_class, "paces_itself", False):
            pace(user_class, seen)


events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]
