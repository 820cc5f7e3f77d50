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
from collections.abc import Iterator
from dataclasses import dataclass, field

from runners.sampling.memory import tree_pids

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"
_TIME_WAIT = "06"
_USER_HZ = 100  # /proc/net/tcp timers are in clock ticks (USER_HZ)
_TW_RESTART_SLACK = 1.0  # seconds a TIME_WAIT expiry may drift before it counts as a new one


@dataclass(frozen=True)
class _Socket:
    """One row of a TCP table, seen from the server: which connection, which end."""

    key: tuple[str, str]  # (server address:port, client address:port), hex as in the table
    state: str
    inode: int
    tw_expiry: float | None  # monotonic time its TIME_WAIT ends, for TIME_WAIT rows


@dataclass
class _Generation:
    inodes: set[int] = field(default_factory=set)
    tw_expiry: float | None = None


def _pattern(port: int) -> re.Pattern[bytes]:
    """Rows whose local or remote port is ``port`` (the engine skips the rest in C)."""
    p = f"{port:04X}".encode()
    return re.compile(
        rb"^ *\d+: (?=\w+:" + p + rb" |\w+:\w+ \w+:" + p + rb" )"
        rb"(\w+):(\w+) (\w+):(\w+) (\w\w) \w+:\w+ \w\w:(\w+) \w+ +\d+ +\d+ (\d+)",
        re.MULTILINE,
    )


def _rows(pattern: re.Pattern[bytes], port_hex: str, now: float) -> Iterator[_Socket]:
    for table in _TABLES:
        try:
            with open(table, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:  # no IPv6 on this host
            continue
        for m in pattern.finditer(data):
            laddr, lport, raddr, rport, state, when, inode = (g.decode() for g in m.groups())
            if state == _LISTEN:
                continue
            if lport == port_hex:  # the server's end
                key = (f"{laddr}:{lport}", f"{raddr}:{rport}")
            else:  # the client's end, when the client runs on this host
                key = (f"{raddr}:{rport}", f"{laddr}:{lport}")
            expiry = now + int(when, 16) / _USER_HZ if state == _TIME_WAIT else None
            yield _Socket(key, state, int(inode), expiry)


def listening_inodes(port: int) -> set[int]:
    """Inodes of the sockets listening on ``port`` (IPv4 and IPv6)."""
    pattern, port_hex = _pattern(port), f"{port:04X}"
    inodes = set()
    for table in _TABLES:
        try:
            with open(table, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue
        for m in pattern.finditer(data):
            if m.group(2).decode() == port_hex and m.group(5).decode() == _LISTEN:
                inodes.add(int(m.group(7)))
    return inodes


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

    ``start()`` checks the listener is the server's, notes the connections
    already open and starts reading the tables every ``interval`` seconds in
    a daemon thread; ``stop()`` reads them once more and returns how many
    connections were accepted in between. ``count`` is the figure so far.
    """

    def __init__(self, port: int, server_pid: int, interval: float = 0.25) -> None:
        self.port = port
        self.server_pid = server_pid
        self.interval = interval
        self._pattern = _pattern(port)
        self._port_hex = f"{port:04X}"
        self._generations: dict[tuple[str, str], _Generation] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def start(self) -> ConnectionCounter:
        listeners = listening_inodes(self.port)
        owned = socket_inodes(tree_pids(self.server_pid))
        if not listeners & owned:
            raise ValueError(
                f"nothing in the process tree of {self.server_pid} listens on port {self.port}"
            )
        self._sample(counting=False)
        self._thread = threading.Thread(target=self._run, name="connection-counter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop reading, read the tables a last time, return the connections accepted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sample()
        return self.count

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self, counting: bool = True) -> None:
        now = time.monotonic()
        seen: dict[tuple[str, str], list[_Socket]] = {}
        for sock in _rows(self._pattern, self._port_hex, now):
            seen.setdefault(sock.key, []).append(sock)
        new = 0
        generations: dict[tuple[str, str], _Generation] = {}
        with self._lock:
            for key, socks in seen.items():
                inodes = {s.inode for s in socks if s.inode}
                expiries = [s.tw_expiry for s in socks if s.tw_expiry is not None]
                expiry = max(expiries) if expiries else None
                gen = self._generations.get(key)
                if gen is None or _is_new_generation(gen, inodes, expiry):
                    gen = _Generation()
                    new += 1
                gen.inodes |= inodes
                if expiry is not None:
                    gen.tw_expiry = expiry
                generations[key] = gen
            # A connection is in the tables from its handshake to the end of its
            # TIME_WAIT: a four-tuple that left them, if it comes back, is new.
            self._generations = generations
            if counting:
                self._count += new


def _is_new_generation(gen: _Generation, inodes: set[int], tw_expiry: float | None) -> bool:
    """Is this four-tuple, seen again, a new connection rather than the one we know?"""
    if inodes and inodes.isdisjoint(gen.inodes):
        # Sockets never change inode: these are new ones. (A generation seen
        # only in TIME_WAIT has no inodes; live sockets after it are new too.)
        return True
    if tw_expiry is not None and gen.tw_expiry is not None:
        # A TIME_WAIT that ends later than the one we saw started again.
        return tw_expiry > gen.tw_expiry + _TW_RESTART_SLACK
    return False
