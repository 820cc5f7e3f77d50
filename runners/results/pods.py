"""A run as a pod, typed: the limits it ran under (``Pod``), ``--fit-memory``'s hold at
capacity (``Hold``) and its answer per runner and workload (``PodFit`` and its
``FitTrial``s)."""

from __future__ import annotations

from dataclasses import dataclass

from runners.results.codec import Record, optional


@dataclass(frozen=True, kw_only=True)
class Pod(Record):
    """The pod a run's server ran as (``--memory-limit``, ``--cpu-limit``,
    ``--worker-rule``): the limits on its cgroup, and what its worker rule read."""

    memory_limit_bytes: int | None = None
    cpu_limit_cores: float | None = None
    worker_rule: str = "limit"
    """``limit``: the rule read the limit's CPUs (the pinned ones without a quota);
    ``host``: the host's cores, as ``os.cpu_count()`` does in a container."""
    rule_cpus: int | None = optional(None)
    """The CPU count the worker rule read (None: the workers were given)."""


@dataclass(frozen=True, kw_only=True)
class Hold(Record):
    """``--fit-memory``: the capacity rate held for the soak's length after the capacity
    search, and whether the working set stayed under the size through it."""

    rate_rps: float
    duration_s: float
    requests: int
    failures: int
    rps: float = 0.0
    working_set_peak_bytes: int | None = None
    pss_peak_bytes: int | None = None
    oom_kills: int | None = None
    fits: bool


@dataclass(frozen=True, kw_only=True)
class FitTrial(Record):
    """One worker count ``--fit-memory`` tried: a run under the size as memory limit."""

    workers: int
    threads: int | None = None
    run_id: str | None = None
    fits: bool
    capacity_rps: float | None = None
    working_set_peak_bytes: int | None = None
    oom_kills: int | None = None
    reason: str = optional("")


@dataclass(frozen=True, kw_only=True)
class PodFit(Record):
    """``--fit-memory``'s answer for one runner and workload: the most workers (x threads)
    whose working set stayed under ``memory_bytes`` at capacity through the soak, and
    the capacity of that pod (None: not even the fewest fit)."""

    runner: str
    workload: str
    memory_bytes: int
    cpu_limit_cores: float | None = None
    threads: int | None = None
    workers: int | None = None
    capacity_rps: float | None = None
    working_set_peak_bytes: int | None = None
    upper_bound: int | None = optional(None)
    """The most workers the idle footprint allowed: where the search started."""
    note: str = optional("")
    trials: tuple[FitTrial, ...] = ()
