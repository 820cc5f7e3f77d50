"""results.json: assembling run records, the derived figures, and writing the file.

The schema is ``runners/results/schema.json``; every write validates against
it. The derived figures are computed here (with ``runners.results.figures``)
and nowhere else:

- ``rps``: requests completed in the measured window / its duration (the
  duration the Locust plugin measured with a monotonic clock between the
  stats reset and the moment every user was stopped; Locust's own
  "Requests/s", which divides by the time between the reset and the last
  request, is kept as ``locust_rps``);
- ``rps_per_gib``: rps / (pss_peak_bytes / 2^30), capacity is planned for the
  peak; ``rps_per_gib_mean_pss`` the same against the mean PSS;
- ``rps_per_cpu_second``: requests / CPU seconds the server's process tree
  used over the window (user + system);
- ``server_cpu_percent``: the same CPU seconds / (window x server CPUs) x 100;
- ``loadgen_cpu_percent``: CPU seconds of the Locust process tree over the
  window / (window x the CPUs Locust can use) x 100, where the CPUs Locust
  can use is min(load-generator CPUs, Locust processes): one gevent process
  never uses more than one core, so 100 means the load generator was
  saturated.

The file is rewritten (atomically: temporary file + ``os.replace``) after
every run, so an interrupted matrix keeps every finished run.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from runners.results.figures import cpu_percent, per_cpu_second, per_gib

SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA_VERSION = 1

LOADGEN_BOUND_PERCENT = 90.0
"""Above this the run measured Locust, not the server (Locust warns at 90% too)."""
NOISY_SPREAD = 0.05
"""A cell whose repeats' rps lie further than this from their mean (half the
max - min range, relative to the mean; the report uses the same rule) is noisy."""

FLAG_NOTES: dict[str, str] = {
    "loadgen-bound": (
        "the load generator was saturated (over 90% of the CPU it can use), so this run "
        "measured Locust, not the server: give Locust more CPU, i.e. more --loadgen-cpus and "
        "Locust processes (one Locust process uses one core at most; the driver runs one), "
        "or fewer --server-cpus"
    ),
    "noisy": (
        "the repeats of this cell lie more than 5% from their mean rps (half the max-min "
        "range): run on a quieter machine, with a longer --duration or more --repeat"
    ),
    "failures": "some requests failed (wrong status or body): see the Locust report",
    "shared-cpus": (
        "server and load generator shared CPUs, so they competed: use --server-cpus and "
        "--loadgen-cpus on a machine with at least two CPUs"
    ),
    "worker-restarted": (
        "a worker died during the run and the server's master started a new one: the "
        "server recovered, but the figures include the lost requests and the restart"
    ),
    "worker-lost": (
        "a worker died during the run and was not replaced: the server ran the rest of "
        "the run with fewer workers"
    ),
    "timeouts": (
        "some requests got no answer within --request-timeout: the server hung or was "
        "overloaded (see the server log and the Locust failures)"
    ),
}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def validation_errors(doc: Mapping[str, Any]) -> list[str]:
    """Every way ``doc`` breaks the schema, as ``path: message`` lines."""
    validator = jsonschema.Draft202012Validator(load_schema())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


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


# --- run records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Milliseconds, from Locust's aggregated row."""

    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


NO_LATENCY = Latency(None, None, None, None, None, None)


@dataclass(frozen=True)
class Measurement:
    """Everything one successful run measured."""

    window_s: float
    requests: int
    failures: int
    latency: Latency
    locust_rps: float | None
    memory: dict[str, Any]
    cpu_seconds: float | None
    loadgen_cpu_seconds: float | None
    loadgen_cpus: int
    """The CPUs Locust could use: min(load-generator CPUs, Locust processes)."""
    server_cpus: int
    """The CPUs the server was pinned to."""

    @property
    def rps(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    @property
    def loadgen_cpu_percent(self) -> float | None:
        return cpu_percent(self.loadgen_cpu_seconds, self.window_s, self.loadgen_cpus)

    @property
    def server_cpu_percent(self) -> float | None:
        return cpu_percent(self.cpu_seconds, self.window_s, self.server_cpus)

    def flags(self) -> list[str]:
        flags: list[str] = []
        percent = self.loadgen_cpu_percent
        if percent is not None and percent > LOADGEN_BOUND_PERCENT:
            flags.append("loadgen-bound")
        if self.failures:
            flags.append("failures")
        return flags

    def as_dict(self) -> dict[str, Any]:
        rps = self.rps
        return {
            "duration_s": self.window_s,
            "requests": self.requests,
            "failures": self.failures,
            "rps": rps,
            "locust_rps": self.locust_rps,
            "latency_ms": self.latency.as_dict(),
            "memory": self.memory,
            "cpu_seconds": self.cpu_seconds,
            "server_cpu_percent": self.server_cpu_percent,
            "rps_per_gib": per_gib(rps, self.memory.get("pss_peak_bytes")),
            "rps_per_gib_mean_pss": per_gib(rps, self.memory.get("pss_mean_bytes")),
            "rps_per_cpu_second": per_cpu_second(self.requests, self.cpu_seconds),
            "loadgen_cpu_seconds": self.loadgen_cpu_seconds,
            "loadgen_cpu_percent": self.loadgen_cpu_percent,
        }


def run_id(runner: str, workload: str, users: int, repeat: int) -> str:
    return f"{runner}/{workload}/{users}/{repeat}"


def empty_figures() -> dict[str, Any]:
    """The measured keys of a run that measured nothing."""
    return {
        "requests": 0,
        "failures": 0,
        "rps": 0.0,
        "latency_ms": NO_LATENCY.as_dict(),
        "memory": None,
        "cpu_seconds": None,
        "rps_per_gib": None,
        "rps_per_gib_mean_pss": None,
        "rps_per_cpu_second": None,
        "loadgen_cpu_percent": None,
    }


def notes_for(flags: Iterable[str]) -> list[str]:
    return [f"{flag}: {FLAG_NOTES[flag]}" for flag in flags if flag in FLAG_NOTES]


# --- cells: the repeats of one runner x workload x users ----------------------------------------


def cell_key(run: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(run["runner"]), str(run["workload"]), int(run["users"]))


def runtime_key(run: Mapping[str, Any]) -> tuple[str, str, str]:
    """(server Python version, Django version, gc mode) of a run; '' when not recorded.

    Runs of one cell that differ in these (``--python``, ``--django``, ``--gc``)
    are different cells, never repeats of one another.
    """
    python = run.get("python")
    version = str(python.get("version") or "") if isinstance(python, Mapping) else ""
    return (version, str(run.get("django") or ""), str(run.get("gc") or ""))


def varying_runtimes(runs: Sequence[Mapping[str, Any]]) -> tuple[bool, bool, bool]:
    """Whether Python, Django and gc take several values within some runner x workload x users."""
    seen: dict[tuple[str, str, int], list[set[str]]] = {}
    for run in runs:
        values = seen.setdefault(cell_key(run), [set(), set(), set()])
        for found, value in zip(values, runtime_key(run), strict=True):
            found.add(value)
    return (
        any(len(v[0]) > 1 for v in seen.values()),
        any(len(v[1]) > 1 for v in seen.values()),
        any(len(v[2]) > 1 for v in seen.values()),
    )


def cell_id(run: Mapping[str, Any], varying: tuple[bool, bool, bool]) -> str:
    """``runner/workload/users``, plus ``py3.12.1``, ``django6.1.3``, ``gc-freeze`` for
    the dimensions that vary."""
    runner, workload, users = cell_key(run)
    python, django, gc = runtime_key(run)
    qualifiers = [
        text
        for text, on in zip((f"py{python}", f"django{django}", f"gc-{gc}"), varying, strict=True)
        if on
    ]
    return "/".join([f"{runner}/{workload}/{users}", *qualifiers])


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarize_cell(runs: Sequence[Mapping[str, Any]], id: str | None = None) -> dict[str, Any]:
    """Mean and spread of the successful repeats of one cell."""
    runner, workload, users = cell_key(runs[0])
    python, django, gc = runtime_key(runs[0])
    ok = [r for r in runs if r["status"] == "ok"]
    rps = [float(r["rps"]) for r in ok]
    mean = statistics.fmean(rps) if rps else None
    stdev = statistics.stdev(rps) if len(rps) > 1 else None
    spread = (max(rps) - min(rps)) / 2 / mean if len(rps) > 1 and mean else None
    flags = ["noisy"] if spread is not None and spread > NOISY_SPREAD else []
    return {
        "id": id or f"{runner}/{workload}/{users}",
        "runner": runner,
        "workload": workload,
        "users": users,
        **{k: v for k, v in (("python", python), ("django", django), ("gc", gc)) if v},
        "runs": len(runs),
        "ok_runs": len(ok),
        "rps_mean": mean,
        "rps_stdev": stdev,
        "rps_min": min(rps) if rps else None,
        "rps_max": max(rps) if rps else None,
        "rps_spread": spread,
        "rps_per_gib_mean": _mean_or_none([r["rps_per_gib"] for r in ok]),
        "rps_per_cpu_second_mean": _mean_or_none([r["rps_per_cpu_second"] for r in ok]),
        "pss_peak_bytes_mean": _mean_or_none([r["memory"]["pss_peak_bytes"] for r in ok]),
        "p99_ms_mean": _mean_or_none([r["latency_ms"]["p99"] for r in ok]),
        "failures": sum(int(r["failures"]) for r in runs),
        "flags": flags,
    }


def summarize_cells(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    varying = varying_runtimes(runs)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(cell_id(run, varying), []).append(run)
    return [summarize_cell(group, id) for id, group in groups.items()]


def mark_noisy(runs: list[dict[str, Any]], cells: Sequence[Mapping[str, Any]]) -> None:
    """Add the ``noisy`` flag (and its note) to every run of a noisy cell."""
    noisy = {c["id"] for c in cells if "noisy" in c["flags"]}
    varying = varying_runtimes(runs)
    for run in runs:
        if cell_id(run, varying) in noisy and "noisy" not in run["flags"]:
            run["flags"].append("noisy")
            run.setdefault("notes", []).extend(notes_for(["noisy"]))


# --- the document -------------------------------------------------------------------------------


class ResultsFile:
    """results.json of one invocation, rewritten after every run."""

    def __init__(
        self,
        path: Path,
        *,
        command: str,
        environment: Mapping[str, Any],
        matrix: Mapping[str, Any],
    ) -> None:
        self.path = path
        self.doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "created_at": utc_now(),
            "finished_at": None,
            "command": command,
            "environment": dict(environment),
            "matrix": dict(matrix),
            "runs": [],
            "cells": [],
        }

    @property
    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.doc["runs"]
        return runs

    def add_run(self, run: dict[str, Any]) -> None:
        self.runs.append(run)
        self.refresh_cells()
        self.save()

    def refresh_cells(self) -> None:
        cells = summarize_cells(self.runs)
        mark_noisy(self.runs, cells)
        self.doc["cells"] = cells

    def finish(self, *, interrupted: bool = False) -> None:
        self.doc["finished_at"] = None if interrupted else utc_now()
        if interrupted:
            self.doc["interrupted"] = True
        self.refresh_cells()
        self.save()

    def save(self) -> None:
        errors = validation_errors(self.doc)
        if errors:
            # Keep the data anyway: a schema slip must not lose a finished run.
            self.doc["schema_errors"] = errors[:20]
        else:
            self.doc.pop("schema_errors", None)
        write_json_atomic(self.path, self.doc)
