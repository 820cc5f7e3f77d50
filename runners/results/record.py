"""One run of results.json, typed: the run, its latency, its memory with the samples
and the per-process samples, a soak run's series, its artifacts; and how the
driver turns a measurement into the run's figures.

The derived figures (``runners.results.figures``) are computed here and
nowhere else:

- ``rps``: *successful* responses to the requests intended inside the
  measured window / its duration (failures are not throughput; they are
  counted beside it); Locust's own "Requests/s", which counts failures too and
  divides by the time between its stats reset and the last request, is kept
  as ``locust_rps``;
- ``rps_per_gib``: rps / (pss_peak_bytes / 2^30), capacity is planned for the
  peak; ``rps_per_gib_mean_pss`` the same against the mean PSS;
- ``rps_per_cpu_second``: successful responses / CPU seconds the server's
  process tree used over the window (user + system);
- ``server_cpu_percent``: the same CPU seconds / (window x server CPUs) x 100;
- ``loadgen_cpu_percent``: CPU seconds of the Locust processes over the
  window / (window x the CPUs Locust can use) x 100, where the CPUs Locust
  can use is min(load-generator CPUs, Locust processes): one gevent process
  never uses more than one core, so 100 means the load generator was
  saturated.

Latency (``latency_ms``) comes from the window's HDR histogram
(``latency_hdr``, kept so repeats can be merged): from each request's
intended send time in an open loop, from its send time in a closed one.
An open-loop run also carries ``capacity``: the search's curve of probes and
what bounded the server.

A run that failed keeps the empty figures (0 requests, no memory, no rates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from runners.results.codec import Record, optional
from runners.results.figures import cpu_percent, per_cpu_second, per_gib
from runners.results.pods import Hold, Pod
from runners.results.profiles import Breakdown, CpuProfile, MemoryProfile, SoakBreakdown
from runners.sampling.cgroupmem import CgroupReading
from runners.sampling.memory import ProcessMemory, TreeSample
from runners.vocabulary import Bound, Family, GcMode, Interface, Load, Role, Variant

Status = Literal["ok", "failed"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_key(users: int) -> str:
    """The load part of an id: the user count of a closed loop, ``open`` for a capacity
    search (which has none)."""
    return str(users) if users else "open"


def run_id(runner: str, workload: str, users: int, repeat: int) -> str:
    return f"{runner}/{workload}/{load_key(users)}/{repeat}"


def sweep_qualifiers(workers: int | None, threads: int | None) -> tuple[str, ...]:
    """What a worker sweep adds to a run id: ``w4`` and ``t8`` for the counts that vary."""
    return tuple(f"{prefix}{count}" for prefix, count in (("w", workers), ("t", threads)) if count)


def pod_qualifiers(
    memory_limit: int | None, cpu_limit: float | None, rule: str | None
) -> tuple[str, ...]:
    """What a pod's limits add to a run id when they vary: ``mem256Mi`` (``mem-none``),
    ``cpu0.5`` (``cpu-none``), ``rule-host``; a dimension that does not vary is None
    here (``rule``: None) and adds nothing. ``memory_limit`` 0 stands for "no limit"."""
    out = []
    if memory_limit is not None:
        out.append(f"mem{memory_limit // 2**20}Mi" if memory_limit else "mem-none")
    if cpu_limit is not None:
        out.append(f"cpu{cpu_limit:g}" if cpu_limit else "cpu-none")
    if rule is not None:
        out.append(f"rule-{rule}")
    return tuple(out)


def is_pod_qualifier(text: str) -> bool:
    """``mem256Mi``, ``cpu0.5``, ``rule-host`` (never a runtime or sweep qualifier)."""
    return text.startswith(("mem", "cpu", "rule-"))


def is_sweep_qualifier(text: str) -> bool:
    """``w4`` or ``t8`` (never an interpreter, Django or gc qualifier)."""
    return len(text) > 1 and text[0] in "wt" and text[1:].isdigit()


@dataclass(frozen=True, kw_only=True)
class PythonInfo(Record):
    """An interpreter: the driver's (``environment.python``) or a server's (``run.python``)."""

    implementation: str
    version: str
    path: str
    venv: str | None = optional(None)
    """The python of the virtual environment the servers ran from (--python, --django)."""

    @property
    def label(self) -> str:
        """``CPython 3.12.1``."""
        return f"{self.implementation} {self.version}"


@dataclass(frozen=True, kw_only=True)
class Latency(Record):
    """Milliseconds, from the window's HDR histogram."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None


NO_LATENCY = Latency()


# --- memory ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProcessSample(Record):
    """One process of the server's tree at one sample. Bytes."""

    pid: int
    role: Role
    rss: int
    pss: int
    uss: int
    shared: int | None = optional(None)
    """rss - uss (computed from them when absent: see ``shared_bytes``)."""
    cpu_seconds: float | None = optional(None)
    helper: bool | None = optional(None)

    @property
    def shared_bytes(self) -> int:
        return self.shared if self.shared is not None else self.rss - self.uss

    @classmethod
    def from_process(cls, proc: ProcessMemory) -> ProcessSample:
        return cls(
            pid=proc.pid,
            role=proc.role,
            rss=proc.rss,
            pss=proc.pss,
            uss=proc.uss,
            shared=proc.shared,
            cpu_seconds=round(proc.cpu_seconds, 3),
            helper=proc.helper,
        )


@dataclass(frozen=True, kw_only=True)
class MemorySample(Record):
    """The server's tree at one instant; ``t`` in seconds since the window started."""

    t: float
    rss: int | None = optional(None)
    pss: int | None = optional(None)
    uss: int | None = optional(None)
    shared: int | None = optional(None)
    cpu_seconds: float | None = optional(None)
    processes: tuple[ProcessSample, ...] = ()
    usage: int | None = optional(None)
    """The server's cgroup at the same instant: its usage, working set and the OOM kills
    since it was made (absent without a cgroup, and in older files)."""
    working_set: int | None = optional(None)
    oom_kills: int | None = optional(None)

    @classmethod
    def from_tree(cls, sample: TreeSample) -> MemorySample:
        """One element of ``memory.samples``: the sampler's reading of the tree."""
        cgroup = sample.cgroup
        return cls(
            t=round(sample.t, 3),
            rss=sample.rss,
            pss=sample.pss,
            uss=sample.uss,
            shared=sample.shared,
            cpu_seconds=round(sample.cpu_seconds, 3),
            processes=tuple(ProcessSample.from_process(p) for p in sample.processes),
            usage=cgroup.usage if cgroup is not None else None,
            working_set=cgroup.working_set if cgroup is not None else None,
            oom_kills=cgroup.oom_kills if cgroup is not None else None,
        )

    @property
    def pss_total(self) -> int:
        """Summed PSS (from the processes when the sum is not recorded)."""
        if self.pss is not None:
            return self.pss
        return sum(p.pss for p in self.processes)


@dataclass(frozen=True, kw_only=True)
class CgroupMemory(Record):
    """The server's cgroup over the measured window, beside PSS: what a container
    platform charges, limits and OOM-kills by (``runners.sampling.cgroupmem``). Bytes.

    The parts (anon ... pss_shmem) are those of the sample with the highest working
    set, where the tree's summed PSS and its split by backing were read too."""

    version: int
    limit_bytes: int | None = None
    usage_peak_bytes: int
    usage_mean_bytes: int
    working_set_peak_bytes: int
    """Usage minus inactive file cache (cAdvisor's ``container_memory_working_set_bytes``)."""
    working_set_mean_bytes: int
    peak_bytes: int | None = optional(None)
    """The kernel's peak of usage (v1 ``max_usage_in_bytes``, v2 ``memory.peak``)."""
    peak_scope: str | None = optional(None)
    """``window``: the peak over the window; ``cgroup``: since the cgroup was made."""
    anon_bytes: int
    file_bytes: int
    """Page cache charged to the cgroup, shmem included."""
    active_file_bytes: int
    inactive_file_bytes: int
    shmem_bytes: int
    kernel_bytes: int | None = None
    """Kernel memory charged to the cgroup (slab, sockets, page tables, stacks)."""
    slab_bytes: int | None = optional(None)
    sock_bytes: int | None = optional(None)
    pagetables_bytes: int | None = optional(None)
    pss_bytes: int
    pss_anon_bytes: int
    pss_file_bytes: int
    pss_shmem_bytes: int
    oom_kills: int | None = None
    """OOM kills in the window (None: this kernel does not count them)."""
    oom_kills_total: int | None = optional(None)
    """OOM kills since the cgroup was made, at the window's end: the whole run's."""
    limit_hits: int | None = optional(None)

    @classmethod
    def from_samples(
        cls,
        samples: Sequence[TreeSample],
        *,
        version: int,
        limit_bytes: int | None = None,
        peak_bytes: int | None = None,
        peak_scope: str | None = None,
        oom_kills: int | None = None,
        oom_kills_total: int | None = None,
    ) -> CgroupMemory | None:
        """The window's cgroup figures from the samples that read it (None: none did)."""
        read = [(s, s.cgroup) for s in samples if s.cgroup is not None]
        if not read:
            return None
        at, top = max(read, key=lambda pair: pair[1].working_set)
        readings: list[CgroupReading] = [c for _, c in read]
        return cls(
            version=version,
            limit_bytes=limit_bytes,
            usage_peak_bytes=max(c.usage for c in readings),
            usage_mean_bytes=_mean(c.usage for c in readings),
            working_set_peak_bytes=top.working_set,
            working_set_mean_bytes=_mean(c.working_set for c in readings),
            peak_bytes=peak_bytes,
            peak_scope=peak_scope,
            anon_bytes=top.anon,
            file_bytes=top.file,
            active_file_bytes=top.active_file,
            inactive_file_bytes=top.inactive_file,
            shmem_bytes=top.shmem,
            kernel_bytes=top.kernel,
            slab_bytes=top.slab,
            sock_bytes=top.sock,
            pagetables_bytes=top.pagetables,
            pss_bytes=at.pss,
            pss_anon_bytes=at.pss_part("anon"),
            pss_file_bytes=at.pss_part("file"),
            pss_shmem_bytes=at.pss_part("shmem"),
            oom_kills=oom_kills,
            oom_kills_total=oom_kills_total if oom_kills_total is not None else top.oom_kills,
            limit_hits=readings[-1].limit_hits,
        )


@dataclass(frozen=True, kw_only=True)
class Memory(Record):
    """The server tree's memory over the measured window (``from_samples``)."""

    rss_peak_bytes: int
    rss_mean_bytes: int | None = optional(None)
    pss_peak_bytes: int
    pss_mean_bytes: int
    uss_peak_bytes: int
    uss_mean_bytes: int | None = optional(None)
    processes: int
    cpu_seconds: float | None = optional(None)
    """CPU seconds of the tree between the first and the last sample."""
    sampler_cpu_percent: float | None = None
    samples: tuple[MemorySample, ...] = ()
    cgroup: CgroupMemory | None = optional(None)
    """The server's cgroup over the window (absent without one, and in older files)."""

    @classmethod
    def from_samples(
        cls,
        samples: Sequence[TreeSample],
        cpu_seconds: float | None = None,
        sampler_cpu_percent: float | None = None,
        cgroup: CgroupMemory | None = None,
    ) -> Memory:
        """The window's memory from the sampler's readings: peaks and means of the
        per-sample sums; ``cpu_seconds`` defaults to the tree's CPU between the first and
        the last sample. ``ValueError`` without samples."""
        if not samples:
            raise ValueError("no memory samples")
        if cpu_seconds is None and len(samples) >= 2:
            cpu_seconds = max(0.0, samples[-1].cpu_seconds - samples[0].cpu_seconds)
        return cls(
            rss_peak_bytes=max(s.rss for s in samples),
            rss_mean_bytes=_mean(s.rss for s in samples),
            pss_peak_bytes=max(s.pss for s in samples),
            pss_mean_bytes=_mean(s.pss for s in samples),
            uss_peak_bytes=max(s.uss for s in samples),
            uss_mean_bytes=_mean(s.uss for s in samples),
            processes=len(samples[-1].processes),
            cpu_seconds=None if cpu_seconds is None else round(cpu_seconds, 3),
            sampler_cpu_percent=(
                None if sampler_cpu_percent is None else round(sampler_cpu_percent, 3)
            ),
            samples=tuple(MemorySample.from_tree(s) for s in samples),
            cgroup=cgroup,
        )


def _mean(values: Iterable[int]) -> int:
    items = list(values)
    return round(sum(items) / len(items)) if items else 0


@dataclass(frozen=True, kw_only=True)
class SoakProcess(Record):
    """One process of a soak run, bytes on the series' time axis (None: not alive)."""

    pid: int
    role: Role
    name: str
    shared: tuple[int | None, ...]
    uss: tuple[int | None, ...]
    pss: tuple[int | None, ...]


@dataclass(frozen=True, kw_only=True)
class SoakSeries(Record):
    """A soak run's memory per process from the moment the server was ready
    (``runners.bench.soak.series``)."""

    target_requests: int | None = optional(None)
    target_duration_s: float | None = optional(None)
    ended_by: Literal["requests", "duration"] | None = optional(None)
    interval_s: float | None = optional(None)
    samples: int | None = optional(None)
    window_start_s: float | None = optional(None)
    window_end_s: float | None = optional(None)
    t: tuple[float, ...]
    processes: tuple[SoakProcess, ...]


@dataclass(frozen=True, kw_only=True)
class Artifacts(Record):
    """The run's files, relative to the results folder."""

    locust_html: str | None = optional(None)
    locust_csv: tuple[str, ...] | None = optional(None)
    server_log: str | None = optional(None)
    locust_log: str | None = optional(None)


# --- the capacity search --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Probe(Record):
    """One point of the saturation curve (``runners.bench.capacity.ProbeObservation``)."""

    mode: Load
    offered_rps: float | None
    """The rate the window's arrivals offered (its arrivals / its duration)."""
    nominal_rps: float | None = optional(None)
    """The rate the schedule was asked for."""
    p50_first_ms: float | None = optional(None)
    """Median latency of the requests intended in the window's first half."""
    p50_second_ms: float | None = optional(None)
    """... in its second half (a queue building up shows as a slower second half)."""
    achieved_rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    requests: int
    users: int
    server_cpu_percent: float | None = optional(None)
    loadgen_cpu_percent: float | None = optional(None)
    loadgen_process_percent: float | None = optional(None)
    upstream_cpu_percent: float | None = optional(None)
    """The upstream service's share of the load generator's CPUs' time, within
    ``loadgen_cpu_percent``."""
    late_share: float = optional(0.0)
    passed: bool
    problems: tuple[str, ...] = optional(())
    over_target_share: float | None = optional(None)
    """The share of its requests slower than the latency target."""
    steal_share: float | None = optional(None)
    interference_share: float | None = optional(None)
    retaken: bool = optional(False)
    """Taken again at the same rate: the search used a later take."""
    disputed: bool = optional(False)
    """Its takes disagreed and no retake was left to settle them."""
    disturbed: str | None = optional(None)
    """Why a failure may be the machine's, not the server's (it was then retaken)."""


@dataclass(frozen=True, kw_only=True)
class Capacity(Record):
    """The highest rate sustained within the latency target, and how it was found."""

    slo_p99_ms: float
    rps: float | None
    """Successful req/s of the confirmation window (the run's rps); None if nothing passed."""
    rps_per_gib: float | None
    offered_rps: float | None = optional(None)
    confirmed: bool = optional(False)
    bound: Bound
    reason: str = optional("")
    saturation_rps: float | None = optional(None)
    curve: tuple[Probe, ...] = ()
    low_rps: float | None = optional(None)
    """The band's low end: the highest rate that passed twice (a probe, the confirmation)."""
    high_rps: float | None = optional(None)
    """The band's high end: the lowest rate that failed after its retake (None: none did)."""
    lower_bound: bool = optional(False)
    """The figure is a lower bound: the load generator could not push harder, or no probe
    failed within the search's budget."""
    retakes: int | None = optional(None)


# --- what else ran on the host ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Interference(Record):
    """CPU seconds that processes outside the run used on its CPUs over the window
    (``runners.sampling.interference``): busy time minus the run's own processes; and,
    apart, the share of the CPUs' time the hypervisor took (steal)."""

    server_cpu_seconds: float
    loadgen_cpu_seconds: float
    share: float
    """The larger of ``server_share`` and ``loadgen_share``: the ``interference`` flag's figure."""
    server_share: float | None = optional(None)
    """``server_cpu_seconds`` / (window x server CPUs)."""
    loadgen_share: float | None = optional(None)
    unpinned_cpu_seconds: float | None = optional(None)
    """The driver's (and a local database's) CPU seconds, taken off both sides."""
    server_steal_share: float | None = optional(None)
    """The share of the server's CPUs' time the hypervisor took (the ``steal`` flag)."""
    loadgen_steal_share: float | None = optional(None)

    @property
    def steal_share(self) -> float:
        """The larger side's steal: what the ``steal`` flag is decided on."""
        return max(self.server_steal_share or 0.0, self.loadgen_steal_share or 0.0)


@dataclass(frozen=True, kw_only=True)
class UpstreamUsage(Record):
    """The upstream service over the window: it runs on the load generator's CPUs, so
    what it costs them is recorded beside Locust's."""

    cpu_seconds: float
    requests: int
    """Delay requests it answered in the window."""
    cpu_ms_per_request: float | None = optional(None)
    cpu_percent: float | None = optional(None)
    """Percent of the load generator's CPUs' time (100: all of them, all the window)."""
    loadgen_share: float | None = optional(None)
    """Its CPU seconds over the busy CPU seconds of the load generator's CPUs (Locust, the
    upstream and anything else pinned there)."""


@dataclass(frozen=True, kw_only=True)
class DatabaseUsage(Record):
    """The PostgreSQL server on this host over the window, beside the server's figures."""

    cpu_seconds: float
    pss_bytes: int | None = optional(None)
    """Summed PSS of its processes at the window's end."""
    processes: int | None = optional(None)
    cpus: tuple[int, ...] | None = optional(None)
    """The CPUs its processes may run on (it is not pinned)."""
    shares_server_cpus: bool = False


# --- the run ------------------------------------------------------------------------------------


def _measured(run: Run, value: Any) -> bool:
    return value is None and run.status != "ok"


def measured() -> Any:
    """A figure every ok run records (null when it could not be measured) and a
    failed run leaves out."""
    return optional(None, omit=_measured)


@dataclass(frozen=True, kw_only=True)
class Run(Record):
    """One run: runner x workload x users x repeat (x interpreter, Django, gc mode).

    The figure fields default to the empty figures of a run that measured nothing.
    """

    id: str
    runner: str
    family: Family
    server: str = ""
    interface: Interface | None = optional(None)
    variant: Variant | None = optional(None)
    """The view variant the server served (sync or async views)."""
    workers: int | None = optional(None)
    threads: int | None = None
    gc: GcMode = "default"
    middleware: str | None = optional(None)
    python: PythonInfo | None = optional(None)
    """The server's interpreter (not the driver's)."""
    django: str | None = optional(None)
    workload: str
    users: int
    repeat: int = 1
    status: Status
    error: str | None = None
    log_tail: str | None = None
    started_at: str | None = optional(None)
    warmup_s: float | None = optional(None)
    duration_s: float | None = optional(None)
    server_cpus: tuple[int, ...] | None = optional(None)
    loadgen_cpus: tuple[int, ...] | None = optional(None)
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    latency_ms: Latency = NO_LATENCY
    memory: Memory | None = None
    cpu_seconds: float | None = None
    rps_per_gib: float | None = None
    rps_per_gib_mean_pss: float | None = None
    rps_per_cpu_second: float | None = None
    loadgen_cpu_percent: float | None = None
    flags: tuple[str, ...] = ()
    soak: bool = optional(False)
    server_command: tuple[str, ...] | None = optional(None)
    startup_s: float | None = optional(None)
    soak_series: SoakSeries | None = optional(None)
    locust_rps: float | None = measured()
    server_cpu_percent: float | None = measured()
    loadgen_cpu_seconds: float | None = measured()
    notes: tuple[str, ...] | None = optional(None)
    """One explanation and remedy per flag (every ok run has the key)."""
    events: tuple[str, ...] | None = optional(None)
    artifacts: Artifacts | None = optional(None)
    load: Load | None = optional(None)
    """How the window was driven (None: a closed loop, as every version-1 file)."""
    offered_rps: float | None = optional(None)
    timeouts: int | None = optional(None)
    latency_hdr: str | None = optional(None)
    capacity: Capacity | None = optional(None)
    loadgen_processes: int | None = optional(None)
    """Locust processes that sent load (several: Locust's distributed mode)."""
    loadgen_ceiling_share: float | None = optional(None)
    """``--calibrate``: rps / (the host's ceiling per Locust process x processes)."""
    breakdown: Breakdown | None = optional(None)
    memory_profile: MemoryProfile | None = optional(None)
    cpu_profile: CpuProfile | None = optional(None)
    soak_breakdown: SoakBreakdown | None = optional(None)
    interference: Interference | None = optional(None)
    database: DatabaseUsage | None = optional(None)
    upstream: UpstreamUsage | None = optional(None)
    """The upstream service's CPU over the measured window (on the load generator's CPUs)."""
    connections: int | None = optional(None)
    """New TCP connections Locust opened to the server in the measured window."""
    connections_per_request: float | None = optional(None)
    """``connections`` / ``requests``: about 1 for a server that closes every connection."""
    pod: Pod | None = optional(None)
    """The limits it ran under (absent: none asked for)."""
    hold: Hold | None = optional(None)
    """``--fit-memory``: the capacity rate held through the soak (absent otherwise)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def qualifiers(self) -> list[str]:
        """What the id adds to runner/workload/users/repeat: ``py3.12.1``, ``gc-off``..."""
        return self.id.split("/")[4:]

    @property
    def sweep(self) -> tuple[str, ...]:
        """The worker and thread qualifiers of a sweep's run: ``("w4",)``; () otherwise."""
        return tuple(q for q in self.qualifiers if is_sweep_qualifier(q))

    @property
    def pod_qualifiers(self) -> tuple[str, ...]:
        """The pod qualifiers of its id (``mem256Mi``, ``cpu0.5``, ``rule-host``)."""
        return tuple(q for q in self.qualifiers if is_pod_qualifier(q))

    def failed(self, error: str, log_tail: str | None) -> Run:
        """This run as failed: the error, the logs' tail and the empty figures."""
        empty = {
            name: spec.default
            for name, spec in _FIGURES.items()
            if spec.default is not dataclasses.MISSING
        }
        return dataclasses.replace(
            self, **empty, status="failed", error=error, log_tail=log_tail, flags=()
        )


_FIGURE_NAMES = (
    "requests",
    "failures",
    "rps",
    "latency_ms",
    "memory",
    "cpu_seconds",
    "rps_per_gib",
    "rps_per_gib_mean_pss",
    "rps_per_cpu_second",
    "loadgen_cpu_percent",
    "offered_rps",
    "timeouts",
    "latency_hdr",
    "capacity",
)
_FIGURES = {f.name: f for f in dataclasses.fields(Run) if f.name in _FIGURE_NAMES}


# --- from a measurement to the figures ----------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """Everything one successful run measured."""

    window_s: float
    requests: int
    """Requests of the window that ended: answered, failed or timed out."""
    failures: int
    latency: Latency
    locust_rps: float | None
    memory: Memory
    cpu_seconds: float | None
    loadgen_cpu_seconds: float | None
    loadgen_cpus: int
    """The CPUs Locust could use: min(load-generator CPUs, Locust processes)."""
    server_cpus: int
    """The CPUs the server was pinned to."""
    latency_hdr: str | None = None
    offered_rps: float | None = None
    timeouts: int | None = None
    interference: Interference | None = None
    database: DatabaseUsage | None = None
    upstream: UpstreamUsage | None = None
    connections: int | None = None

    @property
    def successes(self) -> int:
        return max(0, self.requests - self.failures)

    @property
    def rps(self) -> float:
        """Successful responses per second: failures are not throughput."""
        return self.successes / self.window_s if self.window_s > 0 else 0.0

    @property
    def loadgen_cpu_percent(self) -> float | None:
        return cpu_percent(self.loadgen_cpu_seconds, self.window_s, self.loadgen_cpus)

    @property
    def server_cpu_percent(self) -> float | None:
        return cpu_percent(self.cpu_seconds, self.window_s, self.server_cpus)

    def fill(self, run: Run) -> Run:
        """``run`` with the figures of this measurement."""
        rps = self.rps
        return dataclasses.replace(
            run,
            duration_s=self.window_s,
            requests=self.requests,
            failures=self.failures,
            rps=rps,
            locust_rps=self.locust_rps,
            latency_ms=self.latency,
            memory=self.memory,
            cpu_seconds=self.cpu_seconds,
            server_cpu_percent=self.server_cpu_percent,
            rps_per_gib=per_gib(rps, self.memory.pss_peak_bytes),
            rps_per_gib_mean_pss=per_gib(rps, self.memory.pss_mean_bytes),
            rps_per_cpu_second=per_cpu_second(self.successes, self.cpu_seconds),
            loadgen_cpu_seconds=self.loadgen_cpu_seconds,
            loadgen_cpu_percent=self.loadgen_cpu_percent,
            latency_hdr=self.latency_hdr,
            offered_rps=self.offered_rps,
            timeouts=self.timeouts,
            interference=self.interference,
            database=self.database,
            upstream=self.upstream,
            connections=self.connections,
            connections_per_request=round(self.connections / self.requests, 4)
            if self.connections is not None and self.requests
            else None,
        )
