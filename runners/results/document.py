"""results.json, typed: the document (environment, matrix, runs, cells, runtimes),
reading it (validated against ``schema.json``) and writing it.

The driver writes the file after every run (atomically: temporary file +
``os.replace``), so an interrupted matrix keeps every finished run; the report
reads it with ``read_results``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.results.cells import CellSummary, aggregate, mark_noisy, summarize
from runners.results.codec import Record, optional
from runners.results.pods import PodFit
from runners.results.record import PythonInfo, Run, utc_now
from runners.results.schema import SCHEMA_VERSION, first_error, validation_errors
from runners.vocabulary import GcMode, Load, Variant

RESULTS_NAME = "results.json"
PLAN_NAME = "plan.json"
"""The capacity plan beside results.json (``python -m runners.plan``), shown by the report."""


@dataclass(frozen=True, kw_only=True)
class CpuPlacement(Record):
    """The CPU sets of the server and of the load side, as recorded."""

    server_cpus: tuple[int, ...]
    loadgen_cpus: tuple[int, ...]
    shared: bool | None = optional(None)

    @property
    def overlapping(self) -> bool:
        """The sets overlap (``shared``, or computed when not recorded)."""
        if self.shared is not None:
            return self.shared
        return bool(set(self.server_cpus) & set(self.loadgen_cpus))


@dataclass(frozen=True, kw_only=True)
class LoadgenCeiling(Record):
    """``--calibrate``: what one Locust process can send on this host
    (``runners.bench.calibrate``)."""

    runner: str
    workload: str
    users: int
    duration_s: float
    rps: float
    """Successful requests/s of the calibration window."""
    cpu_percent: float
    """The Locust process's CPU over the window, percent of one core."""
    rps_per_process: float | None
    """rps / (cpu_percent / 100): the most one Locust process sends."""


@dataclass(frozen=True, kw_only=True)
class ProjectDatabase(Record):
    """What a project's servers ran against: the engine, how it was isolated (``copy``
    of an SQLite file, ``clone`` of a PostgreSQL database, ``as-is``, ``none``), the
    user's database (a path or a URL without password) and the scratch copy."""

    engine: str | None = None
    kind: str
    source: str | None = None
    scratch: str | None = None


@dataclass(frozen=True, kw_only=True)
class TrafficSource(Record):
    """One workload of a project: its file, its kind, what was kept and skipped."""

    name: str
    source: str
    """``urls``, ``access-log`` or ``locustfile``."""
    path: str
    requests: int
    """Distinct requests (METHOD PATH) it sends; 0 for a locustfile."""
    user_classes: tuple[str, ...] = ()
    skipped: dict[str, int] | None = optional(None)


@dataclass(frozen=True, kw_only=True)
class PrecheckReading(Record):
    """One URL through one runner on an idle server, before anything was timed."""

    runner: str
    url: str
    status: int | None
    size: int
    p50_ms: float | None
    error: str | None = optional(None)


@dataclass(frozen=True, kw_only=True)
class ProjectInfo(Record):
    """``--project``: the user's Django project the servers served."""

    name: str
    path: str
    git_commit: str | None = None
    settings: str
    wsgi: str
    asgi: str | None
    asgi_built: bool = False
    """It has no ASGI entry: the ASGI runners served Django's get_asgi_application()."""
    django: str
    asgiref: str | None = None
    installed_hash: str
    """sha256 of the sorted ``name==version`` lines of its environment."""
    dependencies: str
    """Where its dependencies came from (a file, or ``no dependency file``)."""
    database: ProjectDatabase
    traffic: tuple[TrafficSource, ...] = ()
    precheck: tuple[PrecheckReading, ...] = ()
    precheck_problems: tuple[str, ...] = ()
    """What the pre-check found (measured anyway: ``--allow-errors``)."""


@dataclass(frozen=True, kw_only=True)
class CgroupSupport(Record):
    """Whether the servers ran in cgroups of their own (``runners.serving.cgroups``), and
    why not: then a run's memory is PSS only."""

    available: bool
    version: int | None = None
    memory_parent: str | None = None
    cpu_parent: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Environment(Record):
    """What the benchmark ran on (``runners.results.environment.capture``)."""

    cpu_model: str
    cpu_count: int
    cpus_available: int | None = optional(None)
    hostname: str | None = optional(None)
    placement: CpuPlacement
    os: str
    kernel: str | None = optional(None)
    load_average: tuple[float, ...] | None = None
    python: PythonInfo
    packages: dict[str, str | None]
    database: str
    cache: str | None = optional(None)
    seed: dict[str, int] | None = None
    git_commit: str | None
    git_dirty: bool | None = None
    memory_total_bytes: int | None = optional(None)
    loadgen_ceiling: LoadgenCeiling | None = optional(None)
    server_host: Environment | None = optional(None)
    """``--agent``: the environment of the servers' host (this block is the load host's)."""
    project: ProjectInfo | None = optional(None)
    """``--project``: the user's project that was served instead of the built-in app."""
    cgroups: CgroupSupport | None = optional(None)
    """Whether the servers ran in cgroups of their own (absent in older files)."""


@dataclass(frozen=True, kw_only=True)
class SoakPlan(Record):
    """--soak: a soak run's target, a number of requests or a duration."""

    requests: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class Matrix(Record):
    """The options that shaped the invocation (``runners.bench.matrix.matrix_block``)."""

    runners: tuple[str, ...]
    workloads: tuple[str, ...]
    users: tuple[int, ...]
    duration_s: float
    warmup_s: float
    repeat: int
    quick: bool | None = optional(None)
    workers: int | None = None
    threads: int | None = None
    worker_counts: tuple[int, ...] | None = optional(None)
    """``--workers`` with several counts (a sweep); ``workers`` is then None."""
    thread_counts: tuple[int, ...] | None = optional(None)
    sweep: bool | None = optional(None)
    """``--sweep``: counts per runner (``runners.serving.registry.sweep_counts``)."""
    variant: Variant | None = None
    middleware: str | None = optional(None)
    spawn_rate: float | None = None
    upstream_ms: int | None = optional(None)
    request_timeout_s: float | None = optional(None)
    seed: dict[str, int] | None = None
    pythons: tuple[PythonInfo, ...] | None = optional(None)
    djangos: tuple[str, ...] | None = optional(None)
    gcs: tuple[GcMode, ...] | None = optional(None)
    soak: SoakPlan | None = None
    order: str | None = optional(None)
    server_lifecycle: str | None = optional(None)
    locust: str | None = optional(None)
    load: Load | None = optional(None)
    slo_p99_ms: float | None = optional(None)
    arrival: str | None = optional(None)
    loadgen_processes: int | None = optional(None)
    expect_workers: int | None = optional(None)
    memory_limits: tuple[int | None, ...] | None = optional(None)
    """``--memory-limit``: bytes per pod (None: no limit), a run each."""
    cpu_limits: tuple[float | None, ...] | None = optional(None)
    worker_rules: tuple[str, ...] | None = optional(None)
    fit_memory_bytes: int | None = optional(None)


@dataclass(frozen=True, kw_only=True)
class RuntimeInfo(Record):
    """An interpreter and the packages the servers ran on (one per --python x --django)."""

    python: PythonInfo
    django: str
    django_requested: str | None = None
    venv: str | None = None
    packages: dict[str, str | None] | None = optional(None)


@dataclass(frozen=True, kw_only=True)
class Results(Record):
    """The whole of results.json."""

    schema_version: int = SCHEMA_VERSION
    created_at: str
    finished_at: str | None = None
    command: str
    environment: Environment
    matrix: Matrix
    runs: tuple[Run, ...] = ()
    cells: tuple[CellSummary, ...] = ()
    runtimes: tuple[RuntimeInfo, ...] = ()
    micro: str | None = optional("")
    """The pyperf JSON file of the micro-benchmarks, relative to the folder; None when
    they were asked for and failed; '' (no key) when they were not asked for."""
    fits: tuple[PodFit, ...] = optional(())
    """``--fit-memory``: the most workers that fit per runner and workload."""
    interrupted: bool = optional(False)
    schema_errors: tuple[str, ...] = optional(())
    """Set by the driver if it ever wrote a file that did not match the schema."""

    @property
    def ok_runs(self) -> list[Run]:
        return [run for run in self.runs if run.ok]

    @property
    def failed_runs(self) -> list[Run]:
        return [run for run in self.runs if not run.ok]


# --- reading -------------------------------------------------------------------------------------


class ResultsError(Exception):
    """A results.json that is missing or invalid. The message is one line."""


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def results_path(path: Path) -> Path:
    """The results.json of a run folder (``path`` may also be the file)."""
    return path if path.suffix == ".json" and not path.is_dir() else path / RESULTS_NAME


def read_results(path: Path) -> Results:
    """Read and validate a run folder's results.json.

    Raises ResultsError with a one-line message when the file is missing, is
    not JSON, or does not match ``runners/results/schema.json``.
    """
    file = results_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{file}: cannot read: {_one_line(str(exc))}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{file}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    error = first_error(data)
    if error is not None:
        where, message = error
        raise ResultsError(
            f"{file}: does not match results.schema.json at {where}: {_one_line(message)}"
        )
    if not isinstance(data, dict):  # pragma: no cover - the schema requires an object
        raise ResultsError(f"{file}: not a JSON object")
    return Results.from_dict(data)


# --- writing -------------------------------------------------------------------------------------


def write_json_atomic(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsFile:
    """results.json of one invocation, rewritten after every run."""

    def __init__(
        self,
        path: Path,
        *,
        command: str,
        environment: Environment,
        matrix: Matrix,
    ) -> None:
        self.path = path
        self.results = Results(
            created_at=utc_now(), command=command, environment=environment, matrix=matrix
        )

    @property
    def runs(self) -> tuple[Run, ...]:
        return self.results.runs

    @property
    def schema_errors(self) -> tuple[str, ...]:
        return self.results.schema_errors

    def update(self, **changes: Any) -> None:
        """Set top-level fields (``runtimes``, ``micro``...) and save."""
        self.results = dataclasses.replace(self.results, **changes)
        self.save()

    def add_run(self, run: Run) -> None:
        self.results = dataclasses.replace(self.results, runs=(*self.runs, run))
        self.refresh_cells()
        self.save()

    def refresh_cells(self) -> None:
        """Aggregate the cells again and mark the runs of a noisy cell."""
        env = self.results.environment
        cells = aggregate(self.runs, env.python, env.packages)
        self.results = dataclasses.replace(
            self.results,
            runs=tuple(mark_noisy(self.runs, cells)),
            cells=tuple(summarize(cells)),
        )

    def finish(self, *, interrupted: bool = False) -> None:
        self.results = dataclasses.replace(
            self.results,
            finished_at=None if interrupted else utc_now(),
            interrupted=interrupted or self.results.interrupted,
        )
        self.refresh_cells()
        self.save()

    def save(self) -> None:
        results = dataclasses.replace(self.results, schema_errors=())
        errors = validation_errors(results.to_dict())
        # Keep the data anyway: a schema slip must not lose a finished run.
        self.results = dataclasses.replace(results, schema_errors=tuple(errors[:20]))
        write_json_atomic(self.path, self.results.to_dict())
