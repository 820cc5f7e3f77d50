"""Exec a command after pinning it to CPUs and tying it to its parent's life.

Run as a script (``python -I runners/serving/servers/launch.py [--cgroup FILE]...
[--cpus 0,1] [--parent PID] -- ARGV...``), it writes its own PID into each
``cgroup.procs`` (or v1 ``tasks``) file given (so the command and everything it forks
or spawns run in that cgroup from the start), sets the CPU affinity of its own process
(inherited by everything the command forks or spawns), optionally asks the
kernel to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``, kept
across ``execve``), then replaces itself with ``ARGV``. The server therefore
keeps the launcher's PID: the PID the driver sees is the server's root.

Using an exec'ing launcher rather than ``subprocess``'s ``preexec_fn`` keeps
the driver safe to use from threaded programs. Standard library only.

Caveat of ``PR_SET_PDEATHSIG``: the signal fires when the *thread* that
forked the child exits, so start servers from a long-lived thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

PR_SET_PDEATHSIG = 1
SCRIPT = Path(__file__).resolve()


def launch_command(
    argv: Sequence[str],
    *,
    cpus: Sequence[int] | None = None,
    parent: int | None = None,
    python: str = sys.executable,
    cgroups: Sequence[Path] = (),
) -> list[str]:
    """``argv`` wrapped in the launcher.

    ``cpus`` pins the command (and its whole future tree); ``parent`` is the PID
    whose death sends SIGTERM to the command (normally ``os.getpid()``); ``cgroups``
    are the ``cgroup.procs`` files the command is placed in before it runs.
    """
    if not argv:
        raise ValueError("empty command")
    wrapped = [python, "-I", str(SCRIPT)]
    for procs in cgroups:
        wrapped += ["--cgroup", str(procs)]
    if cpus is not None:
        if not cpus:
            raise ValueError("empty CPU set")
        wrapped += ["--cpus", ",".join(str(c) for c in cpus)]
    if parent is not None:
        wrapped += ["--parent", str(parent)]
    return [*wrapped, "--", *argv]


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent:
        # The parent died before prctl took effect: nobody will stop us.
        os._exit(1)


def _join_cgroup(procs: str) -> None:
    """Move this process into the cgroup whose ``cgroup.procs`` is ``procs``."""
    try:
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    except OSError as exc:
        sys.exit(f"launch.py: cannot join cgroup {procs}: {exc}")


def main(args: Sequence[str]) -> NoReturn:
    args = list(args)
    try:
        sep = args.index("--")
    except ValueError:
        sys.exit("usage: launch.py [--cgroup FILE]... [--cpus 0,1] [--parent PID] -- COMMAND...")
    options, command = args[:sep], args[sep + 1 :]
    if not command:
        sys.exit("launch.py: no command")
    pairs = list(zip(options[::2], options[1::2], strict=False))
    values = dict(pairs)
    for key, procs in pairs:
        if key == "--cgroup":
            _join_cgroup(procs)
    if cpus := values.get("--cpus"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    if (parent := values.get("--parent")) and sys.platform.startswith("linux"):
        _die_with_parent(int(parent))
    try:
        os.execvp(command[0], command)  # noqa: S606 - exec is the point
    except OSError as exc:
        sys.exit(f"launch.py: cannot exec {command[0]!r}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
