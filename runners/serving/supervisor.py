"""One supervisor for every process the suite starts: servers, the upstream, Locust.

``spawn`` starts a command through the launcher (``runners/serving/servers/launch.py``:
CPU affinity for the whole tree, ``PR_SET_PDEATHSIG`` so that it gets SIGTERM if
the driver dies) in a session and process group of its own, with stdout and
stderr in a log file, and lists it in the driver's ledger
(``runners/serving/ledger.py``). ``stop`` sends SIGTERM, SIGKILL after a grace
period, checks that no process of the tree is left, and takes it off the
ledger. ``log_tail`` and ``read_lines`` read what the process wrote; failures
are ``RunnerError``, whose message names the process and ends with its log's
tail.

The same stop (``stop_tree``) serves the ledger: ``sweep`` stops what the
ledgers of killed drivers still list, ``track`` keeps this driver's ledger and
stops, at its end, whatever a cut-short stop left.

A process is only ever signalled when it is provably ours: its PID *and* start
time were seen in its tree, or it belongs to the session of the tree's root
(every tree gets a session of its own, whose id is the root's PID) and started
after that root (and before any newer process that reused the root's PID).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from runners import REPO_ROOT, with_bytecode_cache
from runners.serving import ledger
from runners.serving.ledger import Entry
from runners.serving.proctree import tree_pids
from runners.serving.servers.launch import launch_command

TIME_TOLERANCE_S = 0.05
"""Start times are read from /proc with clock-tick resolution (and go through JSON)."""
KILL_WAIT_S = 5.0
"""How long processes get to vanish after SIGKILL."""
POLL_S = 0.05


class RunnerError(RuntimeError):
    """A process the suite started (a runner's server, the upstream, Locust) failed to
    start, died, or left processes behind; or its port is taken."""


# --- which processes are ours ---------------------------------------------------------------------


def started_at(pid: int) -> float | None:
    """Start time of a live, non-zombie ``pid`` (None otherwise)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None


def _same_start(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= TIME_TOLERANCE_S


def session_members(root: Entry) -> set[int]:
    """Live members of the root's session that started after the root (and before
    whatever process reused the root's PID, if one did)."""
    until = float("inf")
    current = started_at(root.pid)
    if current is not None and not _same_start(current, root.create_time):
        until = current
    found: set[int] = set()
    for pid in psutil.pids():
        try:
            if os.getsid(pid) != root.pid:
                continue
        except OSError:
            continue
        created = started_at(pid)
        if created is not None and root.create_time - TIME_TOLERANCE_S <= created < until:
            found.add(pid)
    return found


@dataclass
class Tree:
    """A process tree we started: its root, and every PID ever seen in it with its
    start time (so that a PID the kernel has since reused is never taken for ours)."""

    root: Entry
    seen: dict[int, float] = field(default_factory=dict)

    def remember(self, pids: Iterable[int]) -> None:
        for pid in pids:
            created = started_at(pid)
            if created is not None:
                self.seen.setdefault(pid, created)

    def alive(self) -> set[int]:
        """Its live processes: those seen (same start time) and its session's members."""
        seen = {pid for pid, created in self.seen.items() if _same_start(started_at(pid), created)}
        return seen | session_members(self.root)


def describe(pid: int) -> str:
    try:
        return f"{pid} ({' '.join(psutil.Process(pid).cmdline())[:120]})"
    except psutil.Error:
        return str(pid)


def _send(tree: Tree, pids: set[int], sig: signal.Signals) -> None:
    """``sig`` to ``pids`` (all ours): to the root's process group at once while the
    root is one of them, and to each one outside that group."""
    root = tree.root.pid
    grouped = False
    if root in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root, sig)
            grouped = True
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if not (grouped and os.getpgid(pid) == root):
                os.kill(pid, sig)


def _wait_gone(tree: Tree, timeout: float, reap: Callable[[], object]) -> set[int]:
    """Until no process of ``tree`` is alive or ``timeout`` passed; what is still alive."""
    deadline = time.monotonic() + timeout
    while True:
        reap()
        left = tree.alive()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_S)


def stop_tree(
    tree: Tree, grace: float, reap: Callable[[], object] = lambda: None, term: bool = True
) -> set[int]:
    """SIGTERM the tree (unless ``term`` is False: already sent), SIGKILL what is left
    after ``grace``; the PIDs still alive after that (empty when all is gone).

    ``reap`` is called while waiting (``Popen.poll``: the root is reaped as soon as
    it exits, never left a zombie).
    """
    reap()
    if term:
        _send(tree, tree.alive(), signal.SIGTERM)
    left = _wait_gone(tree, grace, reap)
    if left:
        _send(tree, left, signal.SIGKILL)
        left = _wait_gone(tree, KILL_WAIT_S, reap)
    return left


# --- the processes this driver starts -------------------------------------------------------------


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def read_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """The complete lines written to ``path`` since ``offset``, and the offset after them
    (follows a log while its process writes it)."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", "replace").splitlines(), offset + end


@dataclass
class Child:
    """A process tree started by ``spawn``, with its log file."""

    name: str
    """In the ledger (``gunicorn-sync``, ``upstream``, ``locust``)."""
    label: str
    """In error messages (``runner gunicorn-sync``)."""
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    tree: Tree
    terminated: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stopped(self) -> bool:
        return self.log.closed

    def alive(self) -> bool:
        return self.popen.poll() is None

    def exit_status(self) -> str | None:
        """How the root process ended (``killed by SIGKILL``, ``exit status 1``), or None."""
        code = self.popen.poll()
        if code is None:
            return None
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def track(self) -> None:
        """Remember every process of the tree now (workers that may leave its session)."""
        with contextlib.suppress(ProcessLookupError):
            self.tree.remember(tree_pids(self.pid))
        self.tree.remember(session_members(self.tree.root))

    def error(self, what: str) -> RunnerError:
        tail = log_tail(self.log_path) or "(empty)"
        return RunnerError(f"{self.label}: {what}\n--- end of {self.log_path} ---\n{tail}")


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cpus: Sequence[int] | None = None,
    die_with_parent: bool = True,
    label: str | None = None,
    cgroup: Sequence[Path] = (),
) -> Child:
    """Start ``argv`` in a session of its own, pinned to ``cpus``, output to ``log_path``
    (its first line names the command), listed in the ledger; ``cgroup``: the
    ``cgroup.procs`` files it starts in (``runners.serving.cgroups``). A Python process
    loads its modules compiled, from ``.data/pycache`` (``runners.with_bytecode_cache``).

    ``die_with_parent``: ``PR_SET_PDEATHSIG``, the root gets SIGTERM when the thread
    that called ``spawn`` exits (so call it from a long-lived thread).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    log.write(f"# {name}: {subprocess.list2cmdline(argv)}\n".encode())
    log.flush()
    try:
        popen = subprocess.Popen(
            launch_command(
                argv,
                cpus=cpus,
                parent=os.getpid() if die_with_parent else None,
                cgroups=cgroup,
            ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=with_bytecode_cache(env),
            start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    # Not reaped yet, so it still has its start time even if it already exited.
    root = ledger.identify(name, popen.pid, argv) or Entry(name, popen.pid, 0.0, list(argv))
    child = Child(name, label or name, popen, log_path, log, Tree(root))
    child.tree.remember([popen.pid])
    ledger.started(root)
    return child


def wait_ready(
    child: Child,
    probe: Callable[[], str | None],
    timeout: float,
    exited: str = "",
    interval: float = 0.1,
) -> str | None:
    """Call ``probe`` until it returns None (ready): None. After ``timeout``, what it
    last returned (what it found instead). ``RunnerError`` if the process exits first
    (``exited with code N`` + ``exited``, e.g. ``" before answering /health"``)."""
    deadline = time.monotonic() + timeout
    while True:
        code = child.popen.poll()
        if code is not None:
            raise child.error(f"exited with code {code}{exited}")
        last = probe()
        if last is None:
            return None
        if time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def terminate(child: Child) -> None:
    """SIGTERM the tree once, without waiting (``stop`` then waits and checks)."""
    if not child.terminated and child.alive():
        child.track()
        _send(child.tree, child.tree.alive(), signal.SIGTERM)
    child.terminated = True


def stop(child: Child, grace: float) -> None:
    """SIGTERM the tree (unless ``terminate`` did), SIGKILL after ``grace``, then check
    (by PID and by session) that none of its processes is left and take it off the
    ledger. ``RunnerError`` lists leftovers (the ledger keeps them for ``track``)."""
    try:
        if child.alive():
            child.track()
        left = stop_tree(child.tree, grace, child.popen.poll, term=not child.terminated)
        child.terminated = True
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=1.0)
        if left:
            leftovers = ", ".join(describe(pid) for pid in sorted(left))
            raise child.error(f"processes left after SIGKILL: {leftovers}")
        ledger.stopped(child.pid)
    finally:
        child.log.close()


# --- what ledgers list ----------------------------------------------------------------------------


def _zombie(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE and _same_start(proc.create_time(), created)
    except psutil.Error:
        return False


def _stop_entry(entry: Entry, grace: float) -> tuple[list[str], bool]:
    """Stop the tree of a ledger entry: one description per process stopped, and
    whether it is all gone.

    Its processes are not our children: once they exited, their new parent (init,
    after their driver died) reaps them. That is waited for too, within ``grace``,
    so that what was stopped has left the process table.
    """
    tree = Tree(entry)
    tree.remember(tree.alive())
    found = dict(tree.seen)
    if not found:
        return [], True
    described = {pid: f"{entry.name}: {describe(pid)}" for pid in found}
    left = stop_tree(tree, grace)
    deadline = time.monotonic() + grace
    while any(_zombie(pid, created) for pid, created in found.items()):
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return [text for pid, text in described.items() if pid not in left], not left


def reap(book: ledger.Ledger, grace: float = 3.0) -> list[str]:
    """Stop whatever ``book`` still lists (trees whose stop was cut short); one
    description per process stopped."""
    done: list[str] = []
    for entry in book.entries():
        stopped, gone = _stop_entry(entry, grace)
        done += stopped
        if gone:
            book.remove(entry.pid)
    return done


@contextlib.contextmanager
def track(directory: Path | None = None) -> Iterator[ledger.Ledger]:
    """Keep this driver's ledger while the block runs; at its end, stop what it still lists."""
    with ledger.active(directory) as book:
        try:
            yield book
        finally:
            reap(book)


def stop_strays(directory: Path | None = None, grace: float = 3.0) -> list[str]:
    """Stop what the ledgers of dead drivers list, and remove the resources they list
    (``ledger.register_cleaner``); one description per process stopped or resource
    removed.

    Ledgers of live drivers are left alone; a ledger is removed once nothing it
    lists is left. Then the sweepers (``ledger.register_sweeper``) remove what dead
    drivers left that no ledger here lists.
    """
    done: list[str] = []
    for book in ledger.others(directory):
        if _same_start(started_at(book.driver.pid), book.driver.create_time):
            continue  # that driver still runs
        processes = []
        for entry in book.processes:
            stopped, gone = _stop_entry(entry, grace)
            done += stopped
            if not gone:
                processes.append(entry)
        resources = []
        for resource in book.resources:
            cleaned, removed = _clean(resource)
            done += cleaned
            if not removed:
                resources.append(resource)
        ledger.rewrite(book, processes, resources)
    for sweep in ledger.SWEEPERS:
        with contextlib.suppress(OSError, RuntimeError):
            done += sweep()
    return done


def _clean(resource: ledger.Resource) -> tuple[list[str], bool]:
    """Remove a dead driver's resource: (what was removed, whether it is gone)."""
    cleaner = ledger.CLEANERS.get(resource.kind)
    if cleaner is None:
        return [], False
    try:
        found = cleaner(resource.ident)
    except (OSError, RuntimeError):
        return [], False
    return ([f"{resource.kind}: {found}"] if found else []), True


def strays_message(directory: Path | None = None) -> str | None:
    """Run ``stop_strays``; one line saying what it stopped (None if nothing)."""
    found = stop_strays(directory)
    if not found:
        return None
    return (
        f"stopped {len(found)} stray process(es) or resource(s) left by an earlier run that "
        "was killed: " + "; ".join(found)
    )
