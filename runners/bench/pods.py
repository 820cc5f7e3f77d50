"""Runs as pods: ``--memory-limit``, ``--cpu-limit`` and ``--worker-rule`` parsed, the
pods of the matrix (``PodSpec``: a memory limit x a CPU quota x what the worker rule
reads), what a run's server is given, and the check that a limit holds the app at all.

A memory limit and a CPU quota go on the server's cgroup (``runners.serving.cgroups``);
without ``--workers`` the runner's worker rule reads the limit's CPUs (``ceil`` of the
quota), or with ``--worker-rule host`` the host's cores, as ``os.cpu_count()`` does
inside a container (gunicorn's ``2n+1`` on a 64-core node under a 1-CPU limit: 129
workers). Several values of each are a matrix dimension, e.g. ``--memory-limit
none,256MiB --worker-rule limit,host``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from runners.cli.args import UsageError, format_size, parse_cores, parse_size, split_list
from runners.hosting import LocalHost
from runners.results.pods import Pod
from runners.results.record import pod_qualifiers
from runners.sampling.cgroupmem import CgroupReader
from runners.serving import cgroups, supervisor
from runners.serving.cgroups import Limits
from runners.serving.registry import RUNNERS, Runner, takes_workers
from runners.serving.server import ServeConfig
from runners.serving.supervisor import RunnerError
from runners.vocabulary import DEFAULT_WORKER_BASIS, WORKER_BASES, WorkerBasis

NONE = "none"
"""``--memory-limit none,256MiB``: a run without that limit, beside the limited one."""


@dataclass(frozen=True)
class PodSpec:
    """One pod a runner runs as: limits (None: none) and what its worker rule reads."""

    memory_limit: int | None = None
    cpu_limit: float | None = None
    rule: WorkerBasis = DEFAULT_WORKER_BASIS
    qualifiers: tuple[str, ...] = ()
    """What it adds to the run id when a dimension varies (``mem256Mi``, ``rule-host``)."""

    @property
    def limits(self) -> Limits:
        return Limits(self.memory_limit, self.cpu_limit)

    def rule_cpus(self, pinned: int) -> int:
        """The CPUs the runner's worker rule reads: the host's cores (``host``), else the
        quota's (``ceil``), else the ``pinned`` server CPUs."""
        if self.rule == "host":
            return os.cpu_count() or pinned
        return self.limits.cpus or pinned

    def host_cpus(self) -> int | None:
        """``ServeConfig.rule_cpus``: the host's cores for ``host``, else None (the
        server resolves the quota's or the pinned CPUs itself)."""
        return os.cpu_count() if self.rule == "host" else None

    def record(self, rule_cpus: int | None) -> Pod:
        return Pod(
            memory_limit_bytes=self.memory_limit,
            cpu_limit_cores=self.cpu_limit,
            worker_rule=self.rule,
            rule_cpus=rule_cpus,
        )


NO_POD = PodSpec()


def parse_memory_limits(text: str | None, option: str = "--memory-limit") -> tuple[int | None, ...]:
    """``256MiB,512MiB,none`` -> bytes (None: no limit); () when not given."""
    if text is None:
        return ()
    items = split_list(text, option.removeprefix("--"))
    return tuple(None if i.lower() == NONE else parse_size(i, option) for i in items)


def parse_cpu_limits(text: str | None) -> tuple[float | None, ...]:
    """``0.5,1,none`` (or ``500m``) -> cores (None: no quota); () when not given."""
    if text is None:
        return ()
    items = split_list(text, "cpu-limit")
    return tuple(None if i.lower() == NONE else parse_cores(i) for i in items)


def parse_worker_rules(text: str | None) -> tuple[WorkerBasis, ...]:
    """``limit,host``; () when not given."""
    if text is None:
        return ()
    items = split_list(text, "worker-rule")
    unknown = [i for i in items if i not in WORKER_BASES]
    if unknown:
        raise UsageError(
            f"--worker-rule: unknown {', '.join(map(repr, unknown))} "
            f"(accepted: {', '.join(WORKER_BASES)})"
        )
    return tuple(cast(WorkerBasis, i) for i in items)


def pod_specs(
    runner: Runner,
    memory_limits: Sequence[int | None],
    cpu_limits: Sequence[float | None],
    rules: Sequence[WorkerBasis],
) -> list[PodSpec]:
    """The pods ``runner`` runs as, one run each: every memory limit x CPU limit x worker
    rule (a rule only for a runner whose worker count follows one), with the qualifiers
    of the dimensions that vary."""
    mems: Sequence[int | None] = memory_limits or (None,)
    cpus: Sequence[float | None] = cpu_limits or (None,)
    basis: Sequence[WorkerBasis] = (
        rules if rules and takes_workers(runner) else (DEFAULT_WORKER_BASIS,)
    )
    return [
        PodSpec(
            m,
            c,
            r,
            pod_qualifiers(
                (m or 0) if len(mems) > 1 else None,
                (c or 0.0) if len(cpus) > 1 else None,
                r if len(basis) > 1 else None,
            ),
        )
        for m in mems
        for c in cpus
        for r in basis
    ]


def check_cgroups(memory_limits: Sequence[int | None], cpu_limits: Sequence[float | None]) -> None:
    """``UsageError`` when limits are asked for and no cgroup can be made here."""
    if not any(v is not None for v in (*memory_limits, *cpu_limits)):
        return
    found = cgroups.support()
    hierarchy = found.hierarchy
    if hierarchy is None:
        raise UsageError(f"--memory-limit/--cpu-limit: no cgroup can be made here ({found.reason})")
    if any(c is not None for c in cpu_limits) and hierarchy.cpu is None:
        raise UsageError("--cpu-limit: this host has no cpu controller to set a quota with")


# --- the idle footprint ---------------------------------------------------------------


def idle_footprint(
    runner: Runner, cpus: Sequence[int], env: dict[str, str], workers: int = 1
) -> int | None:
    """The working set of ``runner`` with ``workers`` workers (one: its smallest pod), idle
    right after it started; None where no cgroup can be made. ``RunnerError`` if it
    fails."""
    if not cgroups.support().available:
        return None
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        config = ServeConfig(
            runner=runner,
            log_path=Path(tmp) / f"{runner.name}.log",
            workers=workers if takes_workers(runner) else None,
            cpus=tuple(cpus),
            env=env,
        )
        with LocalHost().serve(config) as served:
            server = served.local
            cgroup = server.cgroup if server is not None else None
            reading = CgroupReader(cgroup).read() if cgroup is not None else None
            return reading.working_set if reading is not None else None


def check_footprints(
    option: str,
    limit: int | None,
    runners: Sequence[str],
    cpus: Sequence[int],
    env: dict[str, str],
) -> None:
    """``UsageError`` naming the footprint when ``limit`` is below the idle working set
    of a runner's smallest pod (one worker): no run of it could even start."""
    if limit is None:
        return
    with supervisor.track():  # what it starts is in the ledger, like a run's server
        for name in runners:
            _check_footprint(option, limit, RUNNERS[name], cpus, env)


def _check_footprint(
    option: str, limit: int, runner: Runner, cpus: Sequence[int], env: dict[str, str]
) -> None:
    try:
        footprint = idle_footprint(runner, cpus, env)
    except RunnerError as exc:
        raise UsageError(
            f"{option}: {runner.name} did not start to measure its idle footprint "
            f"({str(exc).splitlines()[0]})"
        ) from None
    if footprint is not None and limit < footprint:
        raise UsageError(
            f"{option} {format_size(limit)}: below the idle footprint of {runner.name} "
            f"({format_size(footprint)} working set with one worker, measured idle just "
            "now): no pod of it would start"
        )
