"""The derived figures: rates per GiB of memory, per CPU-second, CPU use in percent.

Pure functions with no dependency, so that the Locust side (``loadtests/ui_memory.py``)
can import them too.
"""

from __future__ import annotations

GIB = 2**30
MIB = 2**20


def per_gib(rate: float, pss_bytes: int | float | None) -> float | None:
    """``rate`` (e.g. requests per second) per GiB of ``pss_bytes``; None without memory."""
    if not pss_bytes or pss_bytes <= 0:
        return None
    return rate / (pss_bytes / GIB)


def per_cpu_second(requests: int, cpu_seconds: float | None) -> float | None:
    if cpu_seconds is None or cpu_seconds <= 0:
        return None
    return requests / cpu_seconds


def cpu_percent(cpu_seconds: float | None, window_s: float, cpus: int) -> float | None:
    """``cpu_seconds`` over a window, in percent of ``cpus`` CPUs."""
    if cpu_seconds is None or window_s <= 0 or cpus <= 0:
        return None
    return 100.0 * cpu_seconds / (window_s * cpus)
