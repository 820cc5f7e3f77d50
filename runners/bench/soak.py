"""Soak runs: one runner kept under load, per-worker memory over time.

``tox -e bench -- --soak N`` (requests) or ``--soak 120s`` (``s``, ``m`` or
``h``) keeps one runner (the first of ``--runners``, default
``gunicorn-sync-preload``) under the ``mixed`` workload (or the first of
``--workloads``) at one concurrency (the first of ``--users``, default 32),
once per gc mode of ``--gc`` (default all three) and per interpreter of
``--python``. Warm-up defaults to 0: the erosion of sharing starts with the
first request.

The server's process tree is sampled from the moment it is ready, before any
request (the state right after the fork), until the load stops. Each run
keeps, besides the usual figures over the measured window, ``soak: true`` and
``soak_series``: a shared time axis (seconds since the server was ready) and,
per process, its shared (RSS - USS), private (USS) and PSS bytes on it, at
most ``MAX_POINTS`` points (evenly spaced, first and last kept). A request
target ends the window as soon as Locust has counted that many requests
(the probe's ``max_requests``, ``loadtests/probes.py``); the window is capped at
``max(120 s, N / 20 s)``, or at ``--duration`` when given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from runners.results.record import Memory, SoakProcess, SoakSeries
from runners.sampling.memory import TreeSample
from runners.vocabulary import Role

DEFAULT_RUNNER = "gunicorn-sync-preload"
DEFAULT_WORKLOAD = "mixed"
DEFAULT_USERS = 32
MAX_POINTS = 300
MIN_CAP_S = 120.0
CAP_RATE = 20.0
"""A request target's window is capped at max(MIN_CAP_S, requests / CAP_RATE) seconds."""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class SoakTarget:
    """How long a soak run lasts: a number of requests or a duration."""

    requests: int | None = None
    duration_s: float | None = None

    def cap_s(self, duration: float | None = None) -> float:
        """The measured window's length: the duration, or a request target's cap."""
        if self.duration_s is not None:
            return self.duration_s
        if duration is not None:
            return duration
        return max(MIN_CAP_S, (self.requests or 0) / CAP_RATE)

    def describe(self) -> str:
        if self.requests is not None:
            return f"{self.requests} requests"
        return f"{self.duration_s:g} s"


def parse_soak(text: str) -> SoakTarget:
    """``300`` (requests) or ``120s`` / ``2m`` / ``1h``; ``ValueError`` otherwise."""
    value = text.strip().lower()
    if value.isdigit():
        requests = int(value)
        if requests < 1:
            raise ValueError(f"{text!r}: the number of requests must be positive")
        return SoakTarget(requests=requests)
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{text!r} is neither a number of requests (300) nor a duration (120s)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be positive")
    return SoakTarget(duration_s=seconds)


def sample_interval(target: SoakTarget, window_s: float) -> float:
    """Every half second for short soaks, every second from 5 minutes on."""
    return 1.0 if window_s >= 300 and target.duration_s is not None else 0.5


def _indices(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(n)``, evenly spaced, first and last kept."""
    if n <= limit:
        return list(range(n))
    step = (n - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def _names(samples: Sequence[TreeSample]) -> dict[int, tuple[Role, str]]:
    """pid -> (role, name): the master, then workers in order of appearance."""
    first_seen: dict[int, tuple[float, str]] = {}
    for sample in samples:
        for proc in sample.processes:
            if proc.helper:
                continue
            first_seen.setdefault(proc.pid, (sample.t, proc.role))
    names: dict[int, tuple[Role, str]] = {}
    worker = 0
    for pid, (_, role) in sorted(
        first_seen.items(), key=lambda item: (item[1][1] != "master", item[1][0], item[0])
    ):
        if role == "master":
            names[pid] = ("master", "master")
        else:
            worker += 1
            names[pid] = ("worker", f"worker {worker}")
    return names


def series(
    samples: Sequence[TreeSample],
    *,
    target: SoakTarget,
    interval_s: float,
    window_start_s: float,
    window_end_s: float,
    requests: int,
    limit: int = MAX_POINTS,
) -> SoakSeries:
    """The ``soak_series`` of a run: per-process shared, private (USS) and PSS bytes on
    a common time axis (None where the process did not exist), downsampled."""
    names = _names(samples)
    kept = [samples[i] for i in _indices(len(samples), limit)]
    processes: list[SoakProcess] = []
    for pid, (role, name) in names.items():
        found = [next((p for p in sample.processes if p.pid == pid), None) for sample in kept]
        if all(proc is None for proc in found):
            continue
        processes.append(
            SoakProcess(
                pid=pid,
                role=role,
                name=name,
                shared=tuple(None if proc is None else proc.shared for proc in found),
                uss=tuple(None if proc is None else proc.uss for proc in found),
                pss=tuple(None if proc is None else proc.pss for proc in found),
            )
        )
    ended_by: Literal["requests", "duration"] = (
        "requests" if target.requests is not None and requests >= target.requests else "duration"
    )
    return SoakSeries(
        target_requests=target.requests,
        target_duration_s=target.duration_s,
        ended_by=ended_by,
        interval_s=interval_s,
        samples=len(samples),
        window_start_s=round(window_start_s, 3),
        window_end_s=round(window_end_s, 3),
        t=tuple(round(s.t, 3) for s in kept),
        processes=tuple(processes),
    )


def downsample_memory(memory: Memory, limit: int = MAX_POINTS) -> Memory:
    """The memory record with at most ``limit`` samples (the peak of summed PSS kept)."""
    samples = memory.samples
    if len(samples) <= limit:
        return memory
    keep = set(_indices(len(samples), limit - 1))
    keep.add(max(range(len(samples)), key=lambda i: samples[i].pss_total))
    return replace(memory, samples=tuple(samples[i] for i in sorted(keep)))
