"""How many TCP connections a server accepted over an interval, read from the kernel.

A server that keeps connections alive accepts a handful per client; one that
closes each connection after its response (gunicorn's sync worker) accepts
one per request, and the client pays a TCP handshake inside every request's
latency. ``ConnectionCounter`` measures which it is instead of assuming it::

    counter = ConnectionCounter(port, server_pid).start()
    ...  # the measured window
    accepted = counter.stop()  # connections the server accepted meanwhile

How: a thread reads the kernel's TCP tables (``/proc/net/tcp`` and
``/proc/net/tcp6``) every ``interval`` seconds and follows every connection
whose server end is ``port``: a connection is one four-tuple (server
address:port, client address:port) in one *generation*. Every connection
stays visible long after its last request: while open (``ESTABLISHED``, with
the socket inodes of its ends) and, after it closes, as a ``TIME_WAIT`` entry
that the kernel keeps for 60 s on the side that closed first. So a
connection opened and closed between two readings is still counted, from its
``TIME_WAIT``. The kernel reuses a four-tuple when the client's port comes
round again (a few seconds at thousands of connections per second); a new
generation is told from the old one by new socket inodes, or by a
``TIME_WAIT`` timer that restarted (its remaining time is in the table).

Attribution: ``start`` checks that the listening socket on ``port`` belongs
to ``server_pid``'s process tree (an inode among its file descriptors), so
the count is the server's and no one else's. Connections open at ``start``
are not counted; those accepted up to ``stop`` (which reads the tables once
more) are.

Limits, all documented rather than hidden: a connection ended by a reset
(RST) leaves no ``TIME_WAIT``, so one opened and reset between two readings
is missed (uWSGI's ``--http-socket`` closes without ``Connection: close``;
wrk's next request on that connection is answered with a reset, and the count
came out at 0.37 per request where wrk reconnected for every one); a
connection that a client on
*another* host opens and closes (client first) between two readings leaves
its ``TIME_WAIT`` on that host and is missed (on loopback, where the suite
runs its load generator, both ends are visible); two generations of one
four-tuple inside one interval count once (the client's ports would have to
go round the whole ephemeral range within ``interval``: tens of thousands of
connections per second). Reading the tables costs time proportional to the
sockets on the host (about a millisecond per thousand).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

from runners.sampling.memory import tree_pids

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = b"0A"
_TIME_WAIT = b"06"
_USER_HZ = 100  # /proc/net/tcp timers are in clock ticks (USER_HZ)
_TW_RESTART_SLACK = 0.1  # seconds a TIME_WAIT's end may move (ticks, rounding) and be the same

READ_SHARE = 0.05
"""Reading costs the thread (pinned to the load generator's CPUs) at most about
this share of one core: readings start at least ``1 / READ_SHARE`` times the
CPU time the last one took apart (a reading costs about 2.5 us per row of the
port and 1 us per other socket of the host: 25 ms at 10,000 rows)..."""
MAX_INTERVAL = 1.0
"""...but never longer than this many seconds, nor longer than ``PORT_CYCLE_SHARE``
new connections take at the rate the last interval saw. Linux gives a client the
same port (and so the same four-tuple) again after about 3,000 connections to one
server address (measured on kernel 6.18: a port came back 1.02 s later at 3,000
connections per second); two connections on one four-tuple between two readings
would count once."""
PORT_CYCLE_SHARE = 1500

Row = tuple[bytes, bytes, bytes, bytes, bytes]
"""(local address:port, remote address:port, state, timer, inode), as in the table."""
Key = tuple[bytes, bytes]
"""A connection's four-tuple: (server address:port, client address:port)."""


@dataclass(slots=True)
class _Generation:
    """One connection on one four-tuple: its sockets' inodes, its TIME_WAIT's end."""

    inodes: set[int]
    tw_expiry: float | None
    """When its TIME_WAIT ends at the latest (the earliest of the readings' bounds)."""


def _pattern(port: int) -> re.Pattern[bytes]:
    """Rows whose local or remote port is ``port`` (the engine skips the rest in C)."""
    p = f"{port:04X}".encode()
    return re.compile(
        rb"^ *\d+: (?=\w+:" + p + rb" |\w+:\w+ \w+:" + p + rb" )"
        rb"(\w+:\w+) (\w+:\w+) (\w\w) \w+:\w+ \w\w:(\w+) \w+ +\d+ +\d+ (\d+)",
        re.MULTILINE,
    )


def _read(pattern: re.Pattern[bytes]) -> list[Row]:
    rows: list[Row] = []
    for table in _TABLES:
        try:
            with open(table, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:  # no IPv6 on this host
            continue
        rows += pattern.findall(data)
    return rows


def listening_inodes(port: int) -> set[int]:
    """Inodes of the sockets listening on ``port`` (IPv4 and IPv6)."""
    suffix = f":{port:04X}".encode()
    return {
        int(inode)
        for local, _, state, _, inode in _read(_pattern(port))
        if state == _LISTEN and local.endswith(suffix)
    }


def socket_inodes(pids: list[int]) -> set[int]:
    """Inodes of the sockets the processes ``pids`` hold open (gone processes skipped)."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


class ConnectionCounter:
    """TCP connections accepted on ``port`` by the server ``server_pid``, over a window.

    ``start()`` starts a daemon thread (pinned to ``cpus`` when given: the load
    generator's, so that counting takes nothing from the server) that reads
    the tables once (the connections already open, which are not counted),
    checks the listener is the server's, and then reads them every
    ``interval`` seconds or more (see ``READ_SHARE``); ``stop()`` has it read
    them once more and returns how many connections were accepted in between.
    ``count`` is the figure so far; ``cpu_seconds`` and ``readings`` what the
    counting cost.
    """

    def __init__(
        self,
        port: int,
        server_pid: int,
        interval: float = 0.25,
        cpus: Collection[int] | None = None,
    ) -> None:
        self.port = port
        self.server_pid = server_pid
        self.interval = interval
        self.cpus = frozenset(cpus) if cpus else None
        self.readings = 0
        self.cpu_seconds = 0.0
        """CPU time (user + system) of the reading thread, readings and waits included."""
        self._pattern = _pattern(port)
        self._suffix = f":{port:04X}".encode()
        self._generations: dict[Key, _Generation] = {}
        self._count = 0
        self._error: Exception | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def start(self) -> ConnectionCounter:
        """Read the tables once (in the reading thread) and start counting; raises
        ``ValueError`` when nothing of the server's listens on the port."""
        if self._thread is not None:
            raise RuntimeError("connection counter already started")
        self._thread = threading.Thread(target=self._run, name="connection-counter", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> int:
        """Stop reading, read the tables a last time, return the connections accepted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self.count

    def _run(self) -> None:
        cpu_began = time.thread_time()
        try:
            if self.cpus:
                os.sched_setaffinity(0, self.cpus)  # this thread only (Linux)
            listeners = self._sample(counting=False)
            if not listeners & socket_inodes(tree_pids(self.server_pid)):
                raise ValueError(
                    f"nothing in the process tree of {self.server_pid} listens on port {self.port}"
                )
        except Exception as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        try:
            # Readings start every ``period`` seconds (at once when one took longer).
            period, began, counted = self.interval, time.monotonic(), 0
            while not self._stop.wait(max(0.0, began + period - time.monotonic())):
                now, cpu = time.monotonic(), time.thread_time()
                self._sample()
                cpu = time.thread_time() - cpu
                count = self.count
                rate = (count - counted) / (now - began) if now > began else 0.0
                began, counted = now, count
                safe = PORT_CYCLE_SHARE / rate if rate > 0 else MAX_INTERVAL
                period = max(self.interval, min(cpu / READ_SHARE, MAX_INTERVAL, safe))
            self._sample()
        except Exception as exc:  # a reading that failed: stop() says so
            self._error = exc
        finally:
            self.cpu_seconds = time.thread_time() - cpu_began

    def _sample(self, counting: bool = True) -> set[int]:
        """Read the tables, count the connections not seen before; the listeners' inodes."""
        before = time.monotonic()
        rows = _read(self._pattern)
        after = time.monotonic()
        suffix = self._suffix
        listeners: set[int] = set()
        previous = self._generations
        generations: dict[Key, _Generation] = {}
        new = 0
        for local, remote, state, when, inode in rows:
            if state == _LISTEN:
                listeners.add(int(inode))
                continue
            # The server's end, or the client's end when the client runs on this host.
            key = (local, remote) if local.endswith(suffix) else (remote, local)
            tw = state == _TIME_WAIT
            ino = int(inode) if not tw and inode != b"0" else 0
            # The TIME_WAIT ends ``when`` after the moment its row was written: between
            # ``before + when`` and ``after + when`` (a reading can be slow).
            left = int(when, 16) / _USER_HZ if tw else None
            gen = generations.get(key)
            if gen is None:  # the first row of this four-tuple in this reading
                gen = previous.get(key)
                if gen is None or _is_new_generation(
                    gen, ino, None if left is None else before + left
                ):
                    gen = _Generation(set(), None)
                    new += 1
                generations[key] = gen
            if ino:
                gen.inodes.add(ino)
            if left is not None and (gen.tw_expiry is None or after + left < gen.tw_expiry):
                gen.tw_expiry = after + left
        with self._lock:
            # A connection is in the tables from its handshake to the end of its
            # TIME_WAIT: a four-tuple that left them, if it comes back, is new.
            self._generations = generations
            self.readings += 1
            if counting:
                self._count += new
        return listeners


def _is_new_generation(gen: _Generation, inode: int, tw_expiry: float | None) -> bool:
    """Is this four-tuple, seen again with a socket ``inode`` (0: none) or a TIME_WAIT
    ending at ``tw_expiry`` at the earliest, a new connection rather than the one we know
    (whose TIME_WAIT, if seen, ends at ``gen.tw_expiry`` at the latest)?"""
    if inode:
        # Sockets never change inode: this is a new one. (A generation seen only
        # in TIME_WAIT has no inodes; a live socket after it is new too.)
        return inode not in gen.inodes
    if tw_expiry is not None and gen.tw_expiry is not None:
        # A TIME_WAIT that ends later than the one we saw started again.
        return tw_expiry > gen.tw_expiry + _TW_RESTART_SLACK
    return False
