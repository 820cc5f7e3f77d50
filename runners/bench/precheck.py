"""Checked before it is timed: every URL of a project's traffic, through every runner of
the matrix, on an idle server (TechEmpower's habit: prove correctness first).

For each runner the server is started once (as a run would start it) and each URL is
requested ``WARM_PER_WORKER`` times per worker untimed (each worker's first request is
cold), then ``IDLE_REQUESTS`` times timed, one after another. The run does not start, and
each problem is one line naming the URL and the runners, when

- a URL answers 5xx or not at all (a connection error, a timeout);
- its status differs between runners (200 under WSGI, 500 under ASGI: a sync-only
  middleware, for example);
- its body's size differs by more than half between runners;

unless ``--allow-errors`` (the cells are then flagged). The idle timings say whether the
latency target can be met at all: when an idle server already takes longer than
``--slo-p99`` for some URL, the run stops and proposes a target of about
``SLO_FACTOR`` times the slowest idle median. What each URL answered becomes its
expected status under load (``TrafficEntry.expect_status``), so a page that is a 404
on purpose is not a failure.
"""

from __future__ import annotations

import dataclasses
import http.client
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loadtests.traffic import Traffic, TrafficEntry
from runners.bench.run import Context
from runners.hosting import Hosted
from runners.serving.net import http_request
from runners.serving.registry import RUNNERS
from runners.serving.server import ServeConfig
from runners.serving.supervisor import RunnerError

IDLE_REQUESTS = 5
"""Timed requests per URL and runner, one after another on an idle server."""
WARM_PER_WORKER = 2
"""Untimed requests per worker process before them: a worker's first request of a page
imports, compiles templates and connects (gunicorn-sync's 3 workers each answered their
first ``/products/`` of a small project in over 100 ms, and then in a few)."""
TIMEOUT_S = 30.0
SLO_FACTOR = 3.0
"""The proposed latency target: this many times the slowest URL's idle median."""
SIZE_RATIO = 2.0
"""Bodies of one URL whose sizes differ by more than this factor between runners."""


def label(entry: TrafficEntry) -> str:
    return f"{entry.method} {entry.path}"


@dataclass(frozen=True)
class UrlReading:
    """One URL through one runner, idle: what it answered and how long it took."""

    runner: str
    url: str
    """``METHOD PATH``."""
    status: int | None
    """None: no answer (``error`` says why)."""
    size: int
    idle_ms: tuple[float, ...]
    error: str | None = None

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.idle_ms) if self.idle_ms else None


def read_url(server: Hosted, runner: str, entry: TrafficEntry) -> UrlReading:
    """``entry`` requested of ``server``: untimed until each worker has likely served it
    (``WARM_PER_WORKER``), then ``IDLE_REQUESTS`` times timed; the last one's status and
    size. A failure of any of them is the reading's error."""
    body = entry.body.encode() if entry.body is not None else None
    timings: list[float] = []
    status: int | None = None
    size = 0
    warm = WARM_PER_WORKER * max(1, server.workers)
    for n in range(warm + IDLE_REQUESTS):
        began = time.perf_counter()
        try:
            status, answer = http_request(
                server.host,
                server.port,
                entry.method,
                entry.path,
                body=body,
                headers=dict(entry.headers),
                timeout=TIMEOUT_S,
            )
        except (OSError, http.client.HTTPException) as exc:
            return UrlReading(runner, label(entry), None, 0, (), f"{type(exc).__name__}: {exc}")
        if n >= warm:
            timings.append(1000.0 * (time.perf_counter() - began))
        size = len(answer)
    return UrlReading(runner, label(entry), status, size, tuple(timings))


@dataclass(frozen=True)
class PrecheckResult:
    """Every URL through every runner, and what is wrong."""

    readings: tuple[UrlReading, ...]
    problems: tuple[str, ...]

    def slowest(self) -> UrlReading | None:
        """The reading with the highest idle median."""
        timed = [r for r in self.readings if r.p50_ms is not None]
        return max(timed, key=lambda r: r.p50_ms or 0.0) if timed else None

    def slo_problem(self, slo_p99_ms: float) -> str | None:
        """One line when an idle server already takes longer than the target."""
        slowest = self.slowest()
        if slowest is None or slowest.p50_ms is None or slowest.p50_ms <= slo_p99_ms:
            return None
        proposed = proposed_slo(slowest.p50_ms)
        return (
            f"{slowest.url} takes {slowest.p50_ms:.0f} ms on an idle {slowest.runner} "
            f"(median of {len(slowest.idle_ms)}), over the {slo_p99_ms:g} ms latency "
            f"target: no rate can meet it; try --slo-p99 {proposed:g}"
        )

    def runners_at_fault(self) -> frozenset[str]:
        """The runners of the URLs with a problem (``judge``), and those that did not start."""
        urls = {line.split(": ", 1)[0] for line in self.problems}
        started = {r.runner for r in self.readings}
        absent = {line.split(" ", 1)[0] for line in self.problems if " did not start" in line}
        return frozenset({r.runner for r in self.readings if r.url in urls} | (absent - started))

    def expected_statuses(self) -> dict[str, int]:
        """``METHOD PATH`` -> the status every runner answered (when they agreed)."""
        seen: dict[str, set[int | None]] = defaultdict(set)
        for reading in self.readings:
            seen[reading.url].add(reading.status)
        agreed: dict[str, int] = {}
        for url, statuses in seen.items():
            (status, *others) = statuses
            if status is not None and not others:
                agreed[url] = status
        return agreed


def judge(readings: Sequence[UrlReading]) -> list[str]:
    """One line per URL that answered 5xx or nothing, whose status differs between
    runners, or whose body size differs by more than ``SIZE_RATIO``."""
    by_url: dict[str, list[UrlReading]] = defaultdict(list)
    for reading in readings:
        by_url[reading.url].append(reading)
    problems = []
    for url, found in by_url.items():
        broken = [r for r in found if r.status is None or r.status >= 500]
        if broken:
            what = "; ".join(
                f"{r.runner}: {r.error}" if r.status is None else f"{r.runner}: HTTP {r.status}"
                for r in broken
            )
            problems.append(f"{url}: {what}")
            continue
        statuses = {r.status for r in found}
        if len(statuses) > 1:
            shown = ", ".join(f"{r.status} under {r.runner}" for r in found)
            problems.append(f"{url}: the status differs between runners ({shown})")
            continue
        sizes = [r.size for r in found]
        if min(sizes) * SIZE_RATIO < max(sizes):
            shown = ", ".join(f"{r.size} bytes under {r.runner}" for r in found)
            problems.append(f"{url}: the body's size differs by more than half ({shown})")
    return problems


def proposed_slo(p50_ms: float) -> float:
    """``SLO_FACTOR`` x ``p50_ms``, rounded up to 1, 2 or 5 times a power of ten."""
    target = SLO_FACTOR * p50_ms
    power = 10 ** math.floor(math.log10(target))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= target))


def check_traffic(servers: Iterable[tuple[str, Hosted]], traffic: Traffic) -> PrecheckResult:
    """Every entry of ``traffic`` through each (runner name, running server)."""
    readings = [
        read_url(server, runner, entry) for runner, server in servers for entry in traffic.entries
    ]
    return PrecheckResult(tuple(readings), tuple(judge(readings)))


def run(ctx: Context) -> PrecheckResult:
    """The pre-check of every traffic source's URLs through every runner, each serving the
    invocation's subject in turn as its runs would (a locustfile's requests are its own
    tasks': there the servers are checked to start and be ready). A runner that does not
    start is a problem of its own, and the others are still checked."""
    project = ctx.options.project
    assert project is not None
    entries = tuple(e for traffic in project.traffic for e in traffic.entries)
    options = ctx.options
    python = next(iter(ctx.runtimes.values())).python
    readings: list[UrlReading] = []
    failed: list[str] = []
    for name in options.runners:
        config = ServeConfig(
            runner=RUNNERS[name],
            log_path=ctx.runs_dir / "precheck" / f"{name}.server.log",
            cpus=options.placement.server,
            env=ctx.server_env,
            python=python,
            # Up is enough here: a page that fails is what the pre-check is for.
            subject=dataclasses.replace(ctx.subject, ready_below=600),
        )
        try:
            with ctx.hosting.serve(config) as server:
                readings += [read_url(server, name, entry) for entry in entries]
        except RunnerError as exc:
            failed.append(f"{name} did not start: {str(exc).splitlines()[0]}")
    return PrecheckResult(tuple(readings), tuple(failed + judge(readings)))
