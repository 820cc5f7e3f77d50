"""``--profile``: where a server's CPU goes, as a py-spy flame graph.

py-spy samples the Python stacks of a running process from outside (it reads
the process's memory; no code runs in the server), following its forked and
spawned children with ``--subprocesses``, and writes an SVG flame graph that
opens offline in a browser (its script is inline). It runs pinned to the
load generator's CPUs (through ``runners/serving/servers/launch.py``), so its
own work does not take the server's CPUs, and ``--nonblocking`` by default:
it reads the stacks without stopping the server for each sample (the
blocking mode pauses every process ``rate`` times a second: exact stacks, a
larger slowdown; see the report for both measured). Either way the server
runs slower while profiled: a profiled run is a run of its own.

Usage::

    with PySpyRecording(CpuProfilePlan(server.pid, out / "run.svg", cpus=loadgen)) as profile:
        ...the measured window...
    result = profile.result   # path, samples written, py-spy's log

py-spy needs ptrace access to the server (the same user, and
``kernel.yama.ptrace_scope`` <= 1, or root / ``CAP_SYS_PTRACE``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from runners.serving import supervisor


class ProfileError(RuntimeError):
    """py-spy could not profile the server; the message ends with its output."""


def py_spy() -> str:
    """The py-spy executable installed with the suite (then PATH)."""
    local = Path(sysconfig.get_path("scripts")) / "py-spy"
    if local.exists():
        return str(local)
    found = shutil.which("py-spy")
    if found is None:
        raise ProfileError("py-spy is not installed (it is in the bench dependency group)")
    return found


@dataclass(frozen=True)
class CpuProfilePlan:
    """One py-spy recording of a process tree.

    ``duration_s`` None: until ``stop``. ``idle``: include threads waiting
    (off: the graph shows CPU, not wall time). ``native``: C frames too
    (slower to sample).
    """

    pid: int
    output: Path
    cpus: tuple[int, ...] | None = None
    rate: int = 100
    duration_s: float | None = None
    nonblocking: bool = True
    subprocesses: bool = True
    idle: bool = False
    native: bool = False

    def command(self, executable: str | None = None) -> list[str]:
        argv = [executable or py_spy(), "record", "--pid", str(self.pid)]
        argv += ["--output", str(self.output), "--format", "flamegraph"]
        argv += ["--rate", str(self.rate)]
        if self.duration_s is not None:
            argv += ["--duration", str(max(1, round(self.duration_s)))]
        for flag, on in (
            ("--nonblocking", self.nonblocking),
            ("--subprocesses", self.subprocesses),
            ("--idle", self.idle),
            ("--native", self.native),
        ):
            if on:
                argv.append(flag)
        return argv


@dataclass(frozen=True)
class ProfileResult:
    """What a recording produced: the SVG (None if py-spy wrote none) and py-spy's output."""

    output: Path | None
    returncode: int
    seconds: float
    log: str

    @property
    def samples(self) -> tuple[int, int] | None:
        """(samples, errors) as py-spy reported them (errors: stacks it could not
        read, frequent with ``--nonblocking`` while the stack changes under it)."""
        found = re.search(r"Samples: (\d+) Errors: (\d+)", self.log)
        return (int(found[1]), int(found[2])) if found else None

    def as_dict(self, relative_to: Path | None = None) -> dict[str, object]:
        """The ``profile`` block proposed for results.json."""
        path = None
        if self.output is not None:
            path = str(self.output.relative_to(relative_to) if relative_to else self.output)
        samples, errors = self.samples or (None, None)
        return {
            "flamegraph": path,
            "seconds": round(self.seconds, 3),
            "samples": samples,
            "errors": errors,
            "tool": "py-spy",
        }


class PySpyRecording:
    """py-spy recording ``plan.pid``'s tree while the ``with`` block runs.

    On exit (or ``stop``) py-spy gets SIGINT, upon which it writes the flame
    graph and exits; ``result`` says what it wrote. ``ProfileError`` if py-spy
    exits before it samples (no such process, no ptrace permission).
    """

    def __init__(self, plan: CpuProfilePlan, log_path: Path | None = None) -> None:
        self.plan = plan
        self.log_path = log_path or plan.output.with_suffix(".py-spy.log")
        self.result: ProfileResult | None = None
        self._child: supervisor.Child | None = None
        self._began = 0.0

    @property
    def pid(self) -> int | None:
        """py-spy's process id while it runs (None before ``start``)."""
        return self._child.popen.pid if self._child is not None else None

    def start(self, startup_timeout: float = 10.0) -> None:
        """Start py-spy (through the supervisor: pinned, in the ledger, dying with us)
        and return once it samples (it says so on its output)."""
        if self._child is not None:
            raise RuntimeError("profile already started")
        self.plan.output.parent.mkdir(parents=True, exist_ok=True)
        self._child = supervisor.spawn(
            "py-spy",
            self.plan.command(),
            env=os.environ,
            log_path=self.log_path,
            cpus=self.plan.cpus,
        )
        self._began = time.monotonic()
        deadline = self._began + startup_timeout
        while "Sampling process" not in self._log():
            code = self._child.popen.poll()
            if code is not None:
                self._finish()
                raise ProfileError(f"py-spy exited with code {code}:\n{self._log()}")
            if time.monotonic() >= deadline:
                self.stop()
                raise ProfileError(f"py-spy did not start sampling:\n{self._log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 60.0) -> ProfileResult:
        """Stop recording (unless ``duration_s`` ends it first) and wait for the SVG."""
        child = self._child
        if child is None:
            raise RuntimeError("profile not started")
        if self.result is not None:
            return self.result
        if self.plan.duration_s is None and child.alive():
            # SIGINT, not SIGTERM: py-spy writes the flame graph when interrupted.
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(signal.SIGINT)
        seconds = time.monotonic() - self._began
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=timeout)
        if self.plan.duration_s is not None:
            seconds = min(time.monotonic() - self._began, self.plan.duration_s)
        return self._finish(seconds)

    def _finish(self, seconds: float = 0.0) -> ProfileResult:
        child = self._child
        assert child is not None
        supervisor.stop(child, grace=5.0)  # nothing left, off the ledger
        output = self.plan.output if self.plan.output.exists() else None
        self.result = ProfileResult(output, child.popen.returncode, seconds, self._log())
        return self.result

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> PySpyRecording:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m runners.sampling.cpuprofile PID SECONDS OUT.svg [CPUS]``: profile a server."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print(main.__doc__, file=sys.stderr)
        return 2
    cpus = tuple(int(c) for c in args[3].split(",")) if len(args) == 4 else None
    plan = CpuProfilePlan(int(args[0]), Path(args[2]), cpus=cpus, duration_s=float(args[1]))
    profile = PySpyRecording(plan)
    profile.start()
    result = profile.stop(timeout=float(args[1]) + 30)
    print(result.output or f"no flame graph written:\n{result.log}")
    return 0 if result.output else 1


if __name__ == "__main__":
    sys.exit(main())
