"""The arrival schedule inside one Locust process, and what each request's latency is.

Closed loop (the default, and all the web UI ever uses): a user sends its next
request as soon as the previous one is answered; a request's latency runs from
the moment it was sent.

Open loop (``Pacer.configure(rate=R)``): requests arrive on a schedule that
does not care how fast the server answers. A dispatcher greenlet walks the
schedule (evenly spaced at 1/R, or Poisson: exponential gaps of mean 1/R) and
hands each arrival, a *ticket* carrying its intended send time, to the user
that became idle most recently (a LIFO pool: the fewest connections that keep
up stay busy, the others idle and the server's keep-alive timeout closes
them). A request's latency runs from its ticket, not from when it left: when
the server stalls, the requests that should have been sent meanwhile wait for
a free user and their latency shows the stall (no coordinated omission).

Who falls behind, and why, is kept apart:

- a ticket that finds no idle user waits (``pool_waits``): the server is
  holding every user, which is the server's latency and shows in the figures;
  The tickets that come due while the dispatcher waits are that same backlog;
- a ticket that leaves late although a user was idle and no backlog was
  being worked off (``late``: more than ``late_s`` after its time, a tenth of
  the latency target in the driver's probes) is the load generator falling
  behind its own schedule (its event loop was busy elsewhere). The driver
  calls a probe ``loadgen-bound`` when more than 2 % of tickets were late.

A *window* (``Pacer.open_window``) collects the requests whose intended time
falls inside it: an HDR histogram of their latencies (microseconds, 3
significant digits: 0.1 % resolution at any latency), counts of successes,
failures and timeouts, and how many are still in flight. Requests that never
get an answer end by the request timeout and are counted; a ticket that was
never sent by the time the window is closed counts as a failure whose latency
runs to that moment.

Nothing here imports Locust: it needs gevent only, so it can be tested alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
from gevent.event import AsyncResult, Event
from hdrh.histogram import HdrHistogram

from runners.vocabulary import DEFAULT_ARRIVAL, Arrival

HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000
HIST_DIGITS = 3
LATE_S = 0.01
"""Default lateness above which a ticket sent by a free user counts as the generator's delay."""


def histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds (1 us to 1 hour, 3 significant digits)."""
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


def record_us(hist: HdrHistogram, seconds: float) -> None:
    hist.record_value(min(HIST_HIGHEST_US, max(HIST_LOWEST_US, round(seconds * 1e6))))


@dataclass
class PacerWindow:
    """What one process recorded for the requests intended inside ``[start, end)``.

    Times are ``time.perf_counter()`` values of this process.
    """

    start: float
    end: float
    latency: HdrHistogram = field(default_factory=histogram)
    halves: tuple[HdrHistogram, HdrHistogram] = field(
        default_factory=lambda: (histogram(), histogram())
    )
    """The same latencies split by intended time: the window's first half, its second
    half (a queue that builds up through the window shows as a second half slower
    than the first)."""
    lag: HdrHistogram = field(default_factory=histogram)
    scheduled: int = 0
    dispatched: int = 0
    free_dispatches: int = 0
    late: int = 0
    pool_waits: int = 0
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    unsent: int = 0
    in_flight: int = 0
    served: int = 0
    """Successful responses that *arrived* inside the window, whatever their ticket: the
    server's throughput over it (an overloaded server's backlog, answered after the
    window, does not count as served in it)."""
    connects: int = 0
    """TCP connections this process opened to the server inside the window: about one
    per request to a server that closes each connection, a handful to one that keeps
    them alive."""

    def contains(self, ticket: float) -> bool:
        return self.start <= ticket < self.end

    def record(self, ticket: float, seconds: float) -> None:
        """A latency of a request intended at ``ticket`` (inside the window)."""
        record_us(self.latency, seconds)
        record_us(self.halves[ticket >= (self.start + self.end) / 2], seconds)

    @property
    def completed(self) -> int:
        return self.successes + self.failures

    @property
    def late_fraction(self) -> float:
        return self.late / self.free_dispatches if self.free_dispatches else 0.0


class _Slot:
    """One idle user waiting for a ticket."""

    __slots__ = ("alive", "result")

    def __init__(self) -> None:
        self.result: AsyncResult = AsyncResult()
        self.alive = True


class Pacer:
    """The schedule of one Locust process; ``PACER`` is the one the users share."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.rate: float | None = None
        self.arrival: Arrival = DEFAULT_ARRIVAL
        self.window: PacerWindow | None = None
        self._idle: list[_Slot] = []
        self._freed = Event()
        self._dispatcher: gevent.Greenlet | None = None
        self._next: float = 0.0
        self._random = random.Random()
        self._outstanding: dict[int, float] = {}
        self._ids = 0
        self._released = Event()
        self._released.set()
        self._backlog_until = 0.0
        self.late_s = LATE_S

    # -- configuration (the controller) -----------------------------------------------

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    def configure(
        self,
        rate: float | None,
        arrival: Arrival = DEFAULT_ARRIVAL,
        phase: float = 0.0,
        seed: int | None = None,
        late_s: float = LATE_S,
    ) -> None:
        """Switch to an open loop at ``rate`` requests/s (None: closed loop).

        The schedule restarts now (plus ``phase`` seconds, so that several
        processes sharing one rate interleave their arrivals).
        """
        if self._dispatcher is not None:
            self._dispatcher.kill(block=False)
            self._dispatcher = None
        self.rate = rate if rate is not None and rate > 0 else None
        self.arrival = arrival
        self.late_s = late_s
        self._backlog_until = 0.0
        if seed is not None:
            self._random.seed(seed)
        self._released.set()
        if self.rate is not None:
            self._next = self.clock() + max(0.0, phase)
            self._dispatcher = gevent.spawn(self._dispatch)
        else:
            # Closed loop: release the users waiting for a ticket; they send at once.
            idle, self._idle = self._idle, []
            for slot in idle:
                if slot.alive:
                    slot.result.set(None)

    def hold(self) -> None:
        """Keep every user waiting until the next ``configure`` (no unplanned traffic)."""
        self._released.clear()

    def pause(self) -> None:
        """Stop the schedule and hold the users; the requests in flight go on to their end
        (``idle`` says when), so the next setting starts from an empty server."""
        if self._dispatcher is not None:
            self._dispatcher.kill(block=False)
            self._dispatcher = None
        self.hold()

    @property
    def idle(self) -> bool:
        """No request is in flight."""
        return not self._outstanding

    def open_window(self, start: float, end: float) -> PacerWindow:
        """Start collecting the requests intended in ``[start, end)`` (perf_counter times)."""
        self.window = PacerWindow(start, end)
        return self.window

    def close_window(self) -> PacerWindow | None:
        """Stop collecting; tickets of the window not sent by now count as failed."""
        window, self.window = self.window, None
        if window is None:
            return None
        now = self.clock()
        if self.rate is not None:
            # Tickets whose time came inside the window but that no user took yet.
            t = self._next
            while t < window.end and t <= now:
                window.scheduled += 1
                window.unsent += 1
                window.failures += 1
                window.record(t, now - t)
                t += self._gap()
        window.in_flight = sum(1 for t in self._outstanding.values() if window.contains(t))
        return window

    def stop(self) -> None:
        self.configure(None)

    def connected(self) -> None:
        """A user opened a new TCP connection to the server (counted inside a window)."""
        window = self.window
        if window is not None and window.start <= self.clock() < window.end:
            window.connects += 1

    def drained(self, window: PacerWindow) -> bool:
        """Every ticket of ``window`` was sent and answered (or timed out)."""
        if self.rate is not None and self._next < window.end:
            return False
        return not any(window.contains(t) for t in self._outstanding.values())

    # -- the users -------------------------------------------------------------------

    def acquire(self) -> int:
        """The next request of this user: blocks until its intended send time in an open
        loop (at once in a closed loop). Returns its id, for ``done``."""
        self._released.wait()
        if self.rate is None:
            return self._register(self.clock())
        slot = _Slot()
        self._idle.append(slot)
        self._freed.set()
        try:
            request = slot.result.get()
        finally:
            slot.alive = False
        return self._register(self.clock()) if request is None else int(request)

    def _register(self, ticket: float) -> int:
        self._ids += 1
        self._outstanding[self._ids] = ticket
        return self._ids

    def abandon(self, request: int) -> None:
        """The user sending ``request`` was stopped before it ended: forget it."""
        self._outstanding.pop(request, None)

    def done(self, request: int, *, ok: bool, timeout: bool = False) -> float:
        """The request ended: its latency in seconds from its intended time, recorded
        in the window if the window holds its ticket."""
        ticket = self._outstanding.pop(request, None)
        now = self.clock()
        if ticket is None:
            return 0.0
        latency = max(0.0, now - ticket)
        window = self.window
        if window is not None and ok and window.contains(now):
            window.served += 1
        if window is not None and window.contains(ticket):
            window.record(ticket, latency)
            if ok:
                window.successes += 1
            else:
                window.failures += 1
                window.timeouts += int(timeout)
            if self.rate is None:
                window.scheduled += 1
                window.dispatched += 1
        return latency

    # -- the dispatcher --------------------------------------------------------------

    def _gap(self) -> float:
        rate = self.rate or 1.0
        if self.arrival == "poisson":
            return self._random.expovariate(rate)
        return 1.0 / rate

    def _dispatch(self) -> None:
        while True:
            ticket = self._next
            delay = ticket - self.clock()
            if delay > 0:
                gevent.sleep(delay)
            slot = self._take_idle()
            if slot is None:
                while slot is None:
                    self._freed.clear()
                    self._freed.wait()
                    slot = self._take_idle()
                # Every ticket due by now is backlog the server caused, not lag of ours.
                self._backlog_until = self.clock()
            lag = self.clock() - ticket
            self._account(ticket, lag, waited=ticket < self._backlog_until)
            # Outstanding from now: a window cannot close on a request its user has
            # been handed but has not sent yet.
            slot.result.set(self._register(ticket))
            self._next = ticket + self._gap()

    def _take_idle(self) -> _Slot | None:
        while self._idle:
            slot = self._idle.pop()
            if slot.alive:
                return slot
        return None

    def _account(self, ticket: float, lag: float, waited: bool) -> None:
        window = self.window
        if window is None or not window.contains(ticket):
            return
        window.scheduled += 1
        window.dispatched += 1
        if waited:
            window.pool_waits += 1
            return
        window.free_dispatches += 1
        record_us(window.lag, lag)
        if lag > self.late_s:
            window.late += 1


PACER = Pacer()
"""The schedule the users of this Locust process share (``loadtests/locustfile.py``)."""
