"""Latency percentiles from HDR histograms: one window's, or several merged.

The load generator records every request's latency in an HdrHistogram
(``loadtests/pacing.py``: microseconds, 3 significant digits) and ships it
encoded (base64, compressed). Percentiles are read from the histogram, never
averaged: the p99 of three repeats is the p99 of their merged histograms.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from runners.results.record import Latency

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded)


def merged(encoded: Iterable[str]) -> HdrHistogram | None:
    """The sum of the histograms (None when there is none)."""
    total: HdrHistogram | None = None
    for text in encoded:
        if not text:
            continue
        hist = decode(text)
        if total is None:
            total = hist
        else:
            total.add(hist)
    return total


def latency(hist: HdrHistogram | None) -> Latency:
    """Milliseconds: p50, p90, p95, p99, max and mean of ``hist`` (all None when empty)."""
    if hist is None or hist.get_total_count() == 0:
        return Latency()
    values = {name: hist.get_value_at_percentile(p) / 1000.0 for name, p in PERCENTILES.items()}
    return Latency(**values, max=hist.get_max_value() / 1000.0, mean=hist.get_mean_value() / 1000.0)


def encode(hist: HdrHistogram | None) -> str | None:
    if hist is None or hist.get_total_count() == 0:
        return None
    encoded: bytes = hist.encode()
    return encoded.decode("ascii")


def share_over(hist: HdrHistogram | None, ms: float) -> float:
    """The share of ``hist``'s recorded latencies above ``ms`` milliseconds (0 when empty)."""
    if hist is None:
        return 0.0
    total = int(hist.get_total_count())
    if total == 0:
        return 0.0
    below: int = sum(
        item.count_added_in_this_iter_step
        for item in hist.get_recorded_iterator()
        if item.value_iterated_to <= ms * 1000.0
    )
    return max(0.0, (total - below) / total)
