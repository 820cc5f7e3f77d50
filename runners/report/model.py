"""Reading ``results.json`` and turning its runs into what a report shows.

Everything here is pure data work (no HTML): loading and validating a results
file, aggregating the repetitions of a cell (runner x workload x users, and
the interpreter when several ran), ranking cells, comparing two invocations,
and shaping the series the charts draw.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema

GIB = 2**30
MIB = 2**20
RESULTS_NAME = "results.json"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "results" / "schema.json"

# A repeated cell whose requests/s lie further than this from their mean
# (half the max-min range, relative to the mean) is marked noisy.
NOISY_SPREAD = 0.05
# Noise band assumed for a comparison side that has a single repetition.
ASSUMED_NOISE = 0.05
# Smallest noise band of a side with repetitions: two or three repetitions
# that happen to agree closely do not make a 1 % change real.
NOISE_FLOOR = 0.02
# Points kept per line in the PSS-over-time chart.
MAX_SERIES_POINTS = 120
# Workers shown one by one in the memory-per-process chart; more are summed up
# as the first MAX_WORKER_ROWS - 1 and one row with the mean of the others.
MAX_WORKER_ROWS = 4

FLAG_ORDER = ("failed", "loadgen-bound", "noisy", "failures", "shared-cpus")
# A cell with one of these flags is shown but given no rank. Other flags (such
# as shared-cpus, which marks every run of an invocation alike) are shown only.
UNRANKED_FLAGS = frozenset(
    {"failed", "loadgen-bound", "noisy", "failures", "worker-restarted", "worker-lost", "timeouts"}
)
FLAG_HELP = {
    "failed": "a repetition of this cell failed (see Failed runs)",
    "loadgen-bound": "the load generator ran out of CPU: the server may be able to do more",
    "noisy": f"its repetitions differ by more than ±{NOISY_SPREAD:.0%} around their mean",
    "failures": "some requests failed",
    "shared-cpus": "the server and the load generator shared CPUs",
    "worker-restarted": "a worker died during a run; the master replaced it (recovered)",
    "worker-lost": "a worker died during a run and was not replaced",
    "timeouts": "some requests got no answer within the request timeout (a hang?)",
}

JSON = dict[str, Any]


# Okabe-Ito, readable by the colour-blind; one colour per runner line.
RUNNER_COLORS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#999933",
    "#000000",
)


class ResultsError(Exception):
    """A results.json that is missing or invalid. The message is one line."""


# --------------------------------------------------------------------------
# Loading


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def results_path(path: Path) -> Path:
    """The results.json of a run folder (``path`` may also be the file)."""
    return path if path.suffix == ".json" and not path.is_dir() else path / RESULTS_NAME


def load_results(path: Path) -> JSON:
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
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "the top level"
        raise ResultsError(
            f"{file}: does not match results.schema.json at {where}: {_one_line(error.message)}"
        )
    if not isinstance(data, dict):  # pragma: no cover - the schema requires an object
        raise ResultsError(f"{file}: not a JSON object")
    return normalize(data)


_RUN_DEFAULTS: JSON = {
    "server": "",
    "interface": None,
    "variant": None,
    "workers": None,
    "threads": None,
    "gc": "default",
    "middleware": None,
    "python": None,
    "django": None,
    "repeat": 1,
    "log_tail": None,
    "started_at": None,
    "duration_s": None,
    "warmup_s": None,
    "rps_per_gib_mean_pss": None,
}


def normalize(results: JSON) -> JSON:
    """A copy of valid results with every optional key present (None when
    absent), so that templates never meet a missing key."""
    env = dict(results["environment"])
    placement = dict(env["placement"])
    if placement.get("shared") is None:
        placement["shared"] = bool(set(placement["server_cpus"]) & set(placement["loadgen_cpus"]))
    for key in ("hostname", "memory_total_bytes", "cache", "git_dirty"):
        env.setdefault(key, None)
    env["placement"] = placement
    runs = []
    for run in results["runs"]:
        run = {**_RUN_DEFAULTS, **run}
        run["latency_ms"] = {"p95": None, "mean": None, **run["latency_ms"]}
        run["artifacts"] = run.get("artifacts") or {}
        if run["memory"] is not None:
            run["memory"] = {
                "rss_mean_bytes": None,
                "uss_mean_bytes": None,
                "sampler_cpu_percent": None,
                **run["memory"],
            }
        runs.append(run)
    return {
        **results,
        "finished_at": results.get("finished_at"),
        "micro": results.get("micro"),
        "environment": env,
        "runs": runs,
    }


def safe_relative_href(base: Path, relative: str | None) -> str | None:
    """A link to ``relative`` (a path inside ``base``) if that file exists.

    Paths come from results.json: anything with a scheme, a host, an absolute
    path or a way out of ``base`` gets no link, and neither does a missing file.
    """
    if not relative or "\\" in relative or "\x00" in relative:
        return None
    parts = urlsplit(relative)
    if parts.scheme or parts.netloc or relative.startswith("/"):
        return None
    target = base / relative
    try:
        inside = target.resolve().is_relative_to(base.resolve())
        exists = target.is_file()
    except OSError:
        return None
    if not inside or not exists:
        return None
    return quote(relative, safe="/")


# --------------------------------------------------------------------------
# Statistics over repetitions


@dataclass(frozen=True)
class Stat:
    """Mean and range of one figure over the repetitions of a cell."""

    n: int
    mean: float
    min: float
    max: float

    @property
    def spread(self) -> float:
        """Half the max-min range relative to the mean (0 for one value)."""
        if self.n < 2 or self.mean == 0:
            return 0.0
        return (self.max - self.min) / 2 / abs(self.mean)


def stat(values: Iterable[float | int | None]) -> Stat | None:
    """Stat of the values that are not None (None when there are none)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not kept:
        return None
    return Stat(n=len(kept), mean=sum(kept) / len(kept), min=min(kept), max=max(kept))


# --------------------------------------------------------------------------
# Cells


def python_label(run: JSON, results: JSON) -> str:
    """'CPython 3.11.11' for a run (falling back to the environment's)."""
    py = run.get("python") or results["environment"]["python"]
    return f"{py['implementation']} {py['version']}"


def django_label(run: JSON, results: JSON) -> str:
    """Django's version for a run (falling back to the environment's packages)."""
    version = run.get("django")
    if version:
        return str(version)
    packages = results["environment"].get("packages") or {}
    return str(packages.get("django") or packages.get("Django") or "")


@dataclass(frozen=True)
class Cell:
    """Every repetition of one (runner, workload, users, python, django, gc) cell."""

    runner: str
    workload: str
    users: int
    python: str
    django: str
    family: str
    server: str
    workers: int | None
    threads: int | None
    gc: str
    middleware: str
    runs: tuple[JSON, ...]
    ok_runs: tuple[JSON, ...]
    rps: Stat | None
    rps_per_gib: Stat | None
    rps_per_cpu_second: Stat | None
    pss_peak_bytes: Stat | None
    latency: dict[str, Stat | None]
    requests: int
    failures: int
    flags: tuple[str, ...]

    @property
    def key(self) -> tuple[str, int, str, str, str, str]:
        return (self.workload, self.users, self.runner, self.python, self.django, self.gc)

    @property
    def failed(self) -> bool:
        """No repetition produced figures."""
        return not self.ok_runs

    @property
    def caveats(self) -> tuple[str, ...]:
        """The flags that keep this cell out of the ranking."""
        return tuple(f for f in self.flags if f in UNRANKED_FLAGS)

    @property
    def ranked(self) -> bool:
        """Clean enough to be given a rank: figures and no flag that forbids it."""
        return not self.failed and not self.caveats and self.rps_per_gib is not None

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def _order_flags(flags: Iterable[str]) -> tuple[str, ...]:
    unique = set(flags)
    known = [f for f in FLAG_ORDER if f in unique]
    return tuple(known + sorted(unique - set(FLAG_ORDER)))


def make_cell(runs: Sequence[JSON], results: JSON) -> Cell:
    """Aggregate the repetitions of one cell."""
    ordered = tuple(sorted(runs, key=lambda r: int(r.get("repeat") or 1)))
    first = ordered[0]
    ok = tuple(r for r in ordered if r["status"] == "ok")
    rps = stat(r["rps"] for r in ok)
    flags: list[str] = [f for r in ordered for f in r.get("flags") or []]
    if len(ok) < len(ordered):
        flags.append("failed")
    if rps is not None and rps.spread > NOISY_SPREAD:
        flags.append("noisy")
    failures = sum(int(r["failures"]) for r in ok)
    if failures:
        flags.append("failures")
    return Cell(
        runner=first["runner"],
        workload=first["workload"],
        users=int(first["users"]),
        python=python_label(first, results),
        django=django_label(first, results),
        family=first["family"],
        server=str(first.get("server") or ""),
        workers=first.get("workers"),
        threads=first.get("threads"),
        gc=str(first.get("gc") or "default"),
        middleware=str(first.get("middleware") or ""),
        runs=ordered,
        ok_runs=ok,
        rps=rps,
        rps_per_gib=stat(r.get("rps_per_gib") for r in ok),
        rps_per_cpu_second=stat(r.get("rps_per_cpu_second") for r in ok),
        pss_peak_bytes=stat((r.get("memory") or {}).get("pss_peak_bytes") for r in ok),
        latency={
            p: stat((r.get("latency_ms") or {}).get(p) for r in ok)
            for p in ("p50", "p90", "p95", "p99", "max", "mean")
        },
        requests=sum(int(r["requests"]) for r in ok),
        failures=failures,
        flags=_order_flags(flags),
    )


def _position(values: Sequence[Any], value: Any) -> int:
    try:
        return list(values).index(value)
    except ValueError:
        return len(values)


GC_ORDER = ("default", "freeze", "off")


def version_key(label: str) -> tuple[int, ...]:
    """``(3, 12, 1)`` from ``CPython 3.12.1`` or ``5.2.19``: versions sort as numbers."""
    numbers: list[int] = []
    for part in label.rsplit(" ", 1)[-1].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def cells_of(results: JSON) -> list[Cell]:
    """The cells of an invocation, in matrix order (workload, users, runner), then by
    interpreter, Django and gc mode (runs differing in those are different cells)."""
    groups: dict[tuple[str, int, str, str, str, str], list[JSON]] = {}
    for run in results["runs"]:
        key = (
            run["workload"],
            int(run["users"]),
            run["runner"],
            python_label(run, results),
            django_label(run, results),
            str(run.get("gc") or "default"),
        )
        groups.setdefault(key, []).append(run)
    matrix = results["matrix"]
    cells = [make_cell(runs, results) for runs in groups.values()]
    cells.sort(
        key=lambda c: (
            _position(matrix["workloads"], c.workload),
            c.workload,
            c.users,
            _position(matrix["runners"], c.runner),
            c.runner,
            version_key(c.python),
            c.python,
            version_key(c.django),
            _position(GC_ORDER, c.gc),
        )
    )
    return cells


def several(values: Iterable[str]) -> bool:
    """More than one distinct value."""
    return len(set(values)) > 1


def workloads_of(cells: Sequence[Cell]) -> list[str]:
    seen: list[str] = []
    for cell in cells:
        if cell.workload not in seen:
            seen.append(cell.workload)
    return seen


def runner_label(
    cell: Cell, with_python: bool, with_django: bool = False, with_gc: bool = False
) -> str:
    """``gunicorn-sync-preload (CPython 3.12.1, Django 6.1.3, gc freeze)``: the runner
    and what distinguishes its cells."""
    extra = [
        text
        for text, on in (
            (cell.python, with_python),
            (f"Django {cell.django}", with_django),
            (f"gc {cell.gc}", with_gc),
        )
        if on
    ]
    return f"{cell.runner} ({', '.join(extra)})" if extra else cell.runner


def matters(cells: Sequence[Cell], dimension: str) -> bool:
    """Whether some runner x workload x users has cells differing in ``dimension``
    (``python``, ``django`` or ``gc``)."""
    seen: dict[tuple[str, int, str], set[str]] = {}
    for cell in cells:
        seen.setdefault((cell.workload, cell.users, cell.runner), set()).add(
            str(getattr(cell, dimension))
        )
    return any(len(values) > 1 for values in seen.values())


# --------------------------------------------------------------------------
# Ranking


@dataclass(frozen=True)
class Ranking:
    """The cells of one workload at one concurrency, best first."""

    workload: str
    users: int
    rows: tuple[tuple[int | None, Cell], ...]

    @property
    def best(self) -> Cell | None:
        """The cell ranked first, if any cell is clean."""
        return next((c for r, c in self.rows if r == 1), None)

    @property
    def flagged_above(self) -> list[Cell]:
        """Flagged cells whose requests/s per GiB beat the best ranked one."""
        best = self.best
        floor = _by_rps_per_gib(best) if best is not None else -1.0
        return [
            c for r, c in self.rows if r is None and not c.failed and _by_rps_per_gib(c) > floor
        ]


def _by_rps_per_gib(cell: Cell) -> float:
    return cell.rps_per_gib.mean if cell.rps_per_gib is not None else -1.0


def rank(cells: Sequence[Cell]) -> list[tuple[int | None, Cell]]:
    """Clean cells ranked by requests/s per GiB, then flagged cells (no rank),
    then cells with no figures at all."""
    clean = sorted((c for c in cells if c.ranked), key=_by_rps_per_gib, reverse=True)
    flagged = sorted(
        (c for c in cells if not c.ranked and not c.failed), key=_by_rps_per_gib, reverse=True
    )
    failed = [c for c in cells if c.failed]
    rows: list[tuple[int | None, Cell]] = [(i + 1, c) for i, c in enumerate(clean)]
    rows += [(None, c) for c in flagged + failed]
    return rows


def rankings(cells: Sequence[Cell]) -> list[Ranking]:
    """One ranking per (workload, users), in matrix order."""
    groups: dict[tuple[str, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.workload, cell.users), []).append(cell)
    return [
        Ranking(workload=w, users=u, rows=tuple(rank(group))) for (w, u), group in groups.items()
    ]


# --------------------------------------------------------------------------
# Memory


def sample_pss(sample: JSON) -> int:
    """Summed PSS of one memory sample."""
    if sample.get("pss") is not None:
        return int(sample["pss"])
    return sum(int(p["pss"]) for p in sample.get("processes") or [])


def peak_sample(memory: JSON | None) -> JSON | None:
    """The memory sample with the highest summed PSS."""
    samples: list[JSON] = (memory or {}).get("samples") or []
    with_processes = [s for s in samples if s.get("processes")]
    if not with_processes:
        return None
    return max(with_processes, key=sample_pss)


def process_rows(sample: JSON) -> list[JSON]:
    """The processes of a sample, master first then workers by pid, each with
    its private / shared split in bytes.

    private = USS; charged_shared = PSS - USS (its share of pages it shares);
    other_shared = RSS - PSS (shared pages charged to the other processes).
    """
    procs = sorted(
        sample.get("processes") or [], key=lambda p: (p["role"] != "master", int(p["pid"]))
    )
    # (More than MAX_WORKER_ROWS workers: the first ones, then their mean.)
    rows: list[JSON] = []
    worker = 0
    for proc in procs:
        if proc["role"] == "master":
            name = "master"
        else:
            worker += 1
            name = f"worker {worker}"
        rss, pss, uss = int(proc["rss"]), int(proc["pss"]), int(proc["uss"])
        shared = int(proc.get("shared", rss - uss))
        rows.append(_memory_row(name, int(proc["pid"]), proc["role"], rss, pss, uss, shared))
    workers = [r for r in rows if r["role"] != "master"]
    if len(workers) <= MAX_WORKER_ROWS:
        return rows
    # Many workers look alike: keep the first ones, and one row for the rest.
    kept, rest = workers[: MAX_WORKER_ROWS - 1], workers[MAX_WORKER_ROWS - 1 :]

    def mean(key: str) -> int:
        return round(sum(int(r[key]) for r in rest) / len(rest))

    summary = _memory_row(
        f"workers {len(kept) + 1}–{len(workers)} (mean)",
        None,
        "worker",
        mean("rss"),
        mean("pss"),
        mean("uss"),
        mean("shared"),
    )
    return [r for r in rows if r["role"] == "master"] + kept + [summary]


def _memory_row(
    name: str, pid: int | None, role: str, rss: int, pss: int, uss: int, shared: int
) -> JSON:
    return {
        "name": name,
        "pid": pid,
        "role": role,
        "rss": rss,
        "pss": pss,
        "uss": uss,
        "shared": shared,
        "private": uss,
        "charged_shared": max(pss - uss, 0),
        "other_shared": max(rss - pss, 0),
    }


def downsample(points: Sequence[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` points, evenly spaced, keeping the first, last and peak."""
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    keep = {round(i * step) for i in range(limit)}
    keep.add(max(range(len(points)), key=lambda i: points[i][1]))
    return [points[i] for i in sorted(keep)]


def pss_series(memory: JSON | None) -> list[tuple[float, float]]:
    """(t seconds, summed PSS MiB) over the run, downsampled."""
    samples = sorted((memory or {}).get("samples") or [], key=lambda s: float(s["t"]))
    points = [(round(float(s["t"]), 2), round(sample_pss(s) / MIB, 2)) for s in samples]
    return downsample(points, MAX_SERIES_POINTS)


# --------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True)
class Change:
    """One figure of a cell in two invocations."""

    old: Stat | None
    new: Stat | None
    change: float | None  # relative, (new - old) / old
    verdict: str  # better | worse | noise | n/a
    basis: str  # measured | assumed | ""


def _interval(value: Stat) -> tuple[float, float]:
    band = NOISE_FLOOR if value.n >= 2 else ASSUMED_NOISE
    low, high = value.mean * (1 - band), value.mean * (1 + band)
    return min(value.min, low), max(value.max, high)


def compare_stat(old: Stat | None, new: Stat | None, higher_is_better: bool) -> Change:
    """Whether a figure moved beyond the two invocations' own noise.

    Each side's noise is the range of its repetitions, and at least
    ±NOISE_FLOOR around their mean (with a single repetition: ±ASSUMED_NOISE).
    A change whose two noise ranges overlap is noise.
    """
    if old is None or new is None or old.mean == 0:
        return Change(old, new, None, "n/a", "")
    change = (new.mean - old.mean) / abs(old.mean)
    basis = "measured" if old.n >= 2 and new.n >= 2 else "assumed"
    old_lo, old_hi = _interval(old)
    new_lo, new_hi = _interval(new)
    if new_lo <= old_hi and old_lo <= new_hi:
        verdict = "noise"
    elif (change > 0) == higher_is_better:
        verdict = "better"
    else:
        verdict = "worse"
    return Change(old, new, change, verdict, basis)


@dataclass(frozen=True)
class CellChange:
    old: Cell
    new: Cell
    rps: Change
    p99: Change
    rps_per_gib: Change

    @property
    def flags(self) -> tuple[str, ...]:
        return _order_flags([*self.old.flags, *self.new.flags])


def _python_matters(cells: Sequence[Cell]) -> bool:
    seen: dict[tuple[str, int, str], set[str]] = {}
    for cell in cells:
        seen.setdefault((cell.workload, cell.users, cell.runner), set()).add(cell.python)
    return any(len(pythons) > 1 for pythons in seen.values())


def compare_key(
    cell: Cell, with_python: bool, with_django: bool = False
) -> tuple[str, int, str, str, str, str]:
    """Which cells of two invocations are the same: the gc mode always counts; the
    interpreter and Django only when one side has several of them."""
    return (
        cell.workload,
        cell.users,
        cell.runner,
        cell.python if with_python else "",
        cell.django if with_django else "",
        cell.gc,
    )


@dataclass(frozen=True)
class Comparison:
    shared: tuple[CellChange, ...]
    only_old: tuple[Cell, ...]
    only_new: tuple[Cell, ...]
    with_python: bool
    with_django: bool = False
    with_gc: bool = False


def compare(old: JSON, new: JSON) -> Comparison:
    """The cells two invocations share, with the change of each figure."""
    old_cells, new_cells = cells_of(old), cells_of(new)
    with_python = _python_matters(old_cells) or _python_matters(new_cells)
    with_django = matters(old_cells, "django") or matters(new_cells, "django")
    old_by_key = {compare_key(c, with_python, with_django): c for c in old_cells}
    new_by_key = {compare_key(c, with_python, with_django): c for c in new_cells}
    shared = []
    for cell in new_cells:
        before = old_by_key.get(compare_key(cell, with_python, with_django))
        if before is None:
            continue
        shared.append(
            CellChange(
                old=before,
                new=cell,
                rps=compare_stat(before.rps, cell.rps, higher_is_better=True),
                p99=compare_stat(before.latency["p99"], cell.latency["p99"], False),
                rps_per_gib=compare_stat(before.rps_per_gib, cell.rps_per_gib, True),
            )
        )
    return Comparison(
        shared=tuple(shared),
        only_old=tuple(c for k, c in old_by_key.items() if k not in new_by_key),
        only_new=tuple(c for k, c in new_by_key.items() if k not in old_by_key),
        with_python=with_python,
        with_django=with_django,
        with_gc=matters(old_cells, "gc") or matters(new_cells, "gc"),
    )


def _commit(env: JSON) -> str:
    commit = str(env.get("git_commit") or "unknown")
    return commit + " (with uncommitted changes)" if env.get("git_dirty") else commit


def environment_rows(env: JSON) -> list[tuple[str, str]]:
    """The environment as flat (name, value) rows, packages last."""
    placement = env.get("placement") or {}
    py = env.get("python") or {}
    rows = [
        ("CPU", f"{env.get('cpu_model', '')} × {env.get('cpu_count', '')}"),
        ("Server CPUs", ", ".join(str(c) for c in placement.get("server_cpus") or [])),
        ("Load generator CPUs", ", ".join(str(c) for c in placement.get("loadgen_cpus") or [])),
        ("CPU sets overlap", "yes" if placement.get("shared") else "no"),
        ("OS", str(env.get("os", ""))),
        ("Python", f"{py.get('implementation', '')} {py.get('version', '')}"),
        ("Database", str(env.get("database", ""))),
        ("Cache", str(env.get("cache") or "")),
        ("Git commit", _commit(env)),
    ]
    if env.get("memory_total_bytes"):
        rows.insert(1, ("Memory", f"{int(env['memory_total_bytes']) / GIB:.1f} GiB"))
    packages = env.get("packages") or {}
    rows += [(f"package {name}", str(packages[name] or "")) for name in sorted(packages)]
    return rows


def environment_diff(old: JSON, new: JSON) -> list[tuple[str, str, str]]:
    """(name, old, new) for every environment row that differs."""
    before = dict(environment_rows(old))
    after = dict(environment_rows(new))
    names = list(before) + [n for n in after if n not in before]
    return [
        (n, before.get(n, "—"), after.get(n, "—")) for n in names if before.get(n) != after.get(n)
    ]
