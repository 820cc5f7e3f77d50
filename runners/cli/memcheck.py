"""Memory of every runner after the same requests, cross-checked against /proc.

``python -m runners.cli.memcheck [--workers 2] [--runners a,b] [--requests 20]
[--breakdown] [--memory-profile DIR]``

For each runner, with the same worker count (single-process servers run
their one process): start it pinned to the server CPUs, send the same
requests to its view variant (each on a new connection, so they spread over
the workers), let it settle, sample the tree and print summed RSS, PSS, USS
and shared memory. Each process's figures are then re-read independently
from ``/proc/PID/smaps`` (per mapping, summed here) and ``/proc/PID/status``
(``VmRSS``) and the largest relative deviation is shown. At the end, the
pre-fork runners are compared: what preload and the gc freeze save.

``--breakdown`` also splits one worker's memory (and the master's, if there
is one) by category from ``/proc/PID/smaps`` (``runners.sampling.smaps``:
heap, libraries, interpreter, stacks, files, other) and says what reading
``smaps`` costs next to ``smaps_rollup``. ``--memory-profile DIR`` serves each
runner with allocation tracing (``runners.sampling.memprofile``; slower, so
its figures are not comparable with a run without it) and prints, per
worker, the traced bytes by package and the top five allocation sites; the
snapshots are kept in ``DIR/<runner>/``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.results.record import MemorySample
from runners.sampling import memprofile, smaps
from runners.sampling.memory import TreeSample, sample_tree
from runners.serving.commands import SINGLE_PROCESS_SERVERS
from runners.serving.cpus import placement_from
from runners.serving.net import http_get
from runners.serving.registry import RUNNERS, Runner, get_runner
from runners.serving.server import (
    RunningServer,
    ServeConfig,
    prepare_database,
    serve,
)
from runners.serving.supervisor import RunnerError

MIB = 2**20
# Endpoints that need neither the upstream nor a POST body.
PATHS = (
    "json",
    "plaintext",
    "db",
    "queries?queries=5",
    "fortunes",
    "cached-queries?count=5",
    "feed/1",
    "profile/1",
)


def prepare_small(env: Mapping[str, str]) -> None:
    """Migrate and seed a small data set (about a second): every runner sees the same data."""
    prepare_database(env, users=20, follows=3, posts=100, likes=100, comments=50)


def exercise(
    server: RunningServer, paths: Sequence[str] = PATHS, per_worker: int = 10
) -> dict[str, int]:
    """GET each of ``paths`` (under the served variant) ``per_worker x workers``
    times, ``workers`` at a time, each on a new connection. Returns the count
    of non-200 answers per path (empty: all fine)."""
    count = per_worker * server.workers
    failures: dict[str, int] = {}

    def one(path: str) -> int:
        try:
            status, _ = http_get("127.0.0.1", server.port, f"/{server.variant}/{path}", 30.0)
        except (OSError, http.client.HTTPException):
            return 0
        return status

    with ThreadPoolExecutor(max_workers=max(2, server.workers)) as pool:
        for path in paths:
            statuses = list(pool.map(one, [path] * count))
            bad = sum(1 for status in statuses if status != 200)
            if bad:
                failures[path] = bad
    return failures


@dataclass(frozen=True)
class ProcCheck:
    """One process re-read from /proc/PID/smaps and /proc/PID/status."""

    pid: int
    rss: int
    pss: int
    uss: int
    vm_rss: int
    mappings: int


def read_proc(pid: int) -> ProcCheck:
    """Sum ``/proc/PID/smaps`` per mapping; ``VmRSS`` from ``/proc/PID/status``."""
    totals = {"Rss": 0, "Pss": 0, "Private": 0}
    mappings = 0
    with open(f"/proc/{pid}/smaps", "rb") as fh:
        for line in fh:
            key, _, rest = line.partition(b":")
            name = key.decode(errors="replace")
            if name in ("Rss", "Pss"):
                totals[name] += int(rest.split()[0]) * 1024
                mappings += name == "Pss"
            elif name.startswith("Private_"):
                totals["Private"] += int(rest.split()[0]) * 1024
    vm_rss = 0
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                vm_rss = int(line.split()[1]) * 1024
    return ProcCheck(pid, totals["Rss"], totals["Pss"], totals["Private"], vm_rss, mappings)


@dataclass(frozen=True)
class Deviation:
    """Largest relative differences (%) between a sample and /proc re-read after it.

    ``smaps`` gives each mapping's PSS rounded down to a kB while
    ``smaps_rollup`` rounds the total once, so the sample's PSS may exceed the
    per-mapping sum by up to 1 kB per mapping: ``pss_within_rounding``.
    """

    rss: float
    uss: float
    vm_rss: float
    pss: float
    pss_within_rounding: bool

    @property
    def ok(self) -> bool:
        return max(self.rss, self.uss, self.vm_rss) < 0.5 and self.pss_within_rounding

    def describe(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (
            f"{verdict} (RSS {self.rss:.2f}%, USS {self.uss:.2f}%, VmRSS {self.vm_rss:.2f}%, "
            f"PSS {self.pss:.2f}%)"
        )


def deviation(sample: TreeSample) -> Deviation:
    """Compare every process of ``sample`` with /proc/PID/smaps and /status, read now."""
    worst = {"rss": 0.0, "uss": 0.0, "vm_rss": 0.0, "pss": 0.0}
    rounding_ok = True
    for proc in sample.processes:
        try:
            check = read_proc(proc.pid)
        except OSError:
            continue
        for key, ours, theirs in (
            ("rss", proc.rss, check.rss),
            ("uss", proc.uss, check.uss),
            ("vm_rss", proc.rss, check.vm_rss),
            ("pss", proc.pss, check.pss),
        ):
            if theirs:
                worst[key] = max(worst[key], abs(ours - theirs) / theirs * 100)
        slack = 1024 * check.mappings + proc.pss // 200  # rounding, plus 0.5% drift
        rounding_ok = rounding_ok and -proc.pss // 200 <= proc.pss - check.pss <= slack
    return Deviation(pss_within_rounding=rounding_ok, **worst)


@dataclass(frozen=True)
class Row:
    runner: Runner
    workers: int
    sample: TreeSample
    deviation: Deviation
    failures: dict[str, int]
    breakdowns: dict[str, smaps.SmapsBreakdown] = field(default_factory=dict)
    read_cost: dict[str, float | int] = field(default_factory=dict)
    memory_profile: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "runner": self.runner.name,
            "family": self.runner.family,
            "workers": self.workers,
            "processes": len(self.sample.processes),
            "rss": self.sample.rss,
            "pss": self.sample.pss,
            "uss": self.sample.uss,
            "shared": self.sample.shared,
            "proc_check": {
                "ok": self.deviation.ok,
                "rss_percent": round(self.deviation.rss, 3),
                "uss_percent": round(self.deviation.uss, 3),
                "vm_rss_percent": round(self.deviation.vm_rss, 3),
                "pss_percent": round(self.deviation.pss, 3),
                "pss_within_rounding": self.deviation.pss_within_rounding,
            },
            "failures": self.failures,
            "sample": MemorySample.from_tree(self.sample).to_dict(),
            "breakdown": {role: b.as_dict() for role, b in self.breakdowns.items()},
            "smaps_read_cost": self.read_cost,
            "memory_profile": self.memory_profile,
        }

    def describe_extras(self) -> str:
        """The breakdown and memory-profile sections of this runner ('' without them)."""
        parts: list[str] = []
        for role, result in self.breakdowns.items():
            parts.append(smaps.format_breakdown(result, f"{role} {result.pid}"))
        if self.read_cost:
            cost = self.read_cost
            parts.append(
                f"  reading one worker ({cost['mappings']} mappings): smaps "
                f"{float(cost['smaps_s']) * 1000:.2f} ms, smaps_rollup "
                f"{float(cost['smaps_rollup_s']) * 1000:.3f} ms (medians)"
            )
        if self.memory_profile is not None:
            for fork in self.memory_profile["fork"]:
                parts.append(
                    f"  at the fork, master {fork['pid']}: {fork['objects_total']} tracked "
                    f"objects, gc freeze count {fork['gc']['freeze_count']}, app imported: "
                    f"{fork['app_imported']}"
                )
            parts.extend(memprofile.format_process(p) for p in self.memory_profile["processes"])
        if not parts:
            return ""
        return "\n".join([f"{self.runner.name}:", *parts])


def measure(
    runner: Runner,
    workers: int,
    data_dir: Path,
    log_dir: Path,
    cpus: tuple[int, ...],
    per_worker: int,
    settle: float = 1.0,
    breakdown: bool = False,
    profile_dir: Path | None = None,
) -> Row:
    """Start ``runner``, exercise it, sample it and cross-check with /proc; with
    ``breakdown`` split the master's and one worker's memory by category; with
    ``profile_dir`` trace allocations and snapshot every worker at the end."""
    n = 1 if runner.server in SINGLE_PROCESS_SERVERS else workers
    env = sqlite_env(data_dir)
    if profile_dir is not None:
        env.update(memprofile.server_env(profile_dir))
    config = ServeConfig(
        runner=runner,
        log_path=log_dir / f"{runner.name}.log",
        workers=n,
        cpus=cpus,
        env=env,
    )
    with serve(config) as server:
        failures = exercise(server, PATHS, per_worker)
        time.sleep(settle)
        sample = sample_tree(server.pid)
        check = deviation(sample)
        breakdowns: dict[str, smaps.SmapsBreakdown] = {}
        cost: dict[str, float | int] = {}
        if breakdown:
            masters = [p for p in sample.server_processes if p.role == "master"]
            for role, procs in (("master", masters), ("worker", list(sample.workers))):
                if procs:
                    breakdowns[role] = smaps.breakdown(procs[0].pid)
            cost = smaps.read_cost(sample.workers[0].pid)
        profile = None
        if profile_dir is not None:
            found = memprofile.snapshots(profile_dir, "end", [p.pid for p in sample.workers])
            roles = {p.pid: p.role for p in sample.processes}
            profile = memprofile.summarize(found, roles, memprofile.fork_records(profile_dir))
        return Row(runner, n, sample, check, failures, breakdowns, cost, profile)


def sqlite_env(data_dir: Path) -> dict[str, str]:
    """Server environment for an SQLite file in ``data_dir`` (DATABASE_URL and
    REDIS_URL blanked, which the settings read as unset)."""
    return {"BENCH_DATA_DIR": str(data_dir), "DATABASE_URL": "", "REDIS_URL": ""}


def _mib(value: int) -> str:
    return f"{value / MIB:8.1f}"


def format_rows(rows: Sequence[Row]) -> str:
    header = (
        f"{'runner':<22} {'workers':>7} {'procs':>5} {'RSS MiB':>8} {'PSS MiB':>8} "
        f"{'USS MiB':>8} {'shared':>8} {'PSS/wkr':>8} {'RSS/PSS':>7}  /proc check"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        s = row.sample
        workers = s.workers or s.server_processes
        per_worker = sum(p.pss for p in workers) / max(1, len(workers))
        note = f"  failures: {row.failures}" if row.failures else ""
        lines.append(
            f"{row.runner.name:<22} {row.workers:>7} {len(s.processes):>5} {_mib(s.rss)} "
            f"{_mib(s.pss)} {_mib(s.uss)} {_mib(s.shared)} {_mib(round(per_worker))} "
            f"{s.rss / s.pss:7.2f}  {row.deviation.describe()}{note}"
        )
    return "\n".join(lines)


def format_comparison(rows: Sequence[Row]) -> str:
    """Preload and gc freeze against plain gunicorn-sync (same worker count)."""
    by_name = {row.runner.name: row for row in rows}
    base = by_name.get("gunicorn-sync")
    if base is None:
        return ""
    lines = [
        f"Against gunicorn-sync ({base.workers} workers, summed PSS {_mib(base.sample.pss)} MiB):"
    ]
    for name in ("gunicorn-sync-preload", "gunicorn-sync-freeze", "uwsgi"):
        row = by_name.get(name)
        if row is None:
            continue
        saved = base.sample.pss - row.sample.pss
        lines.append(
            f"  {name:<22} PSS {_mib(row.sample.pss)} MiB, "
            f"{saved / MIB:+.1f} MiB saved ({saved / base.sample.pss * 100:+.1f}%)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.cli.memcheck", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="workers per runner (default 2)")
    parser.add_argument("--runners", help="comma-separated runner names (default: all)")
    parser.add_argument(
        "--requests", type=int, default=20, help="requests per endpoint per worker (default 20)"
    )
    parser.add_argument("--server-cpus", help="CPUs of the server (default: first half)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a temporary folder)")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="split the master's and one worker's memory by category (/proc/PID/smaps)",
    )
    parser.add_argument(
        "--memory-profile",
        type=Path,
        metavar="DIR",
        help="trace allocations in every worker; snapshots in DIR/<runner>/ (slower)",
    )
    args = parser.parse_args(argv)
    try:
        runners = [get_runner(n) for n in args.runners.split(",")] if args.runners else None
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    chosen = runners or list(RUNNERS.values())
    placement = placement_from(args.server_cpus, None)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="memcheck-") as tmp:
        data_dir = Path(tmp) / "data"
        log_dir = args.log_dir or Path(tmp) / "logs"
        prepare_small(sqlite_env(data_dir))
        print(
            f"{len(chosen)} runners, {args.workers} workers each (single-process servers: 1), "
            f"{args.requests} requests per endpoint per worker, {placement.describe()}\n",
            flush=True,
        )
        for runner in chosen:
            try:
                rows.append(
                    measure(
                        runner,
                        args.workers,
                        data_dir,
                        log_dir,
                        placement.server,
                        args.requests,
                        breakdown=args.breakdown,
                        profile_dir=(
                            args.memory_profile / runner.name if args.memory_profile else None
                        ),
                    )
                )
            except RunnerError as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
            print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_rows(rows))
    comparison = format_comparison(rows)
    if comparison:
        print()
        print(comparison)
    for row in rows:
        extras = row.describe_extras()
        if extras:
            print()
            print(extras)
    print(
        "\n/proc check: largest relative difference, over every process, between the sample "
        "(smaps_rollup) and /proc/PID/smaps summed per mapping (RSS, USS, PSS) or "
        "/proc/PID/status (VmRSS), re-read right after it. smaps rounds each mapping's PSS "
        "down to a kB, so the PSS difference is expected: ok means it is within that rounding."
    )
    if args.json:
        args.json.write_text(json.dumps([row.as_dict() for row in rows], indent=2))
    ok = len(rows) == len(chosen) and all(row.deviation.ok for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
