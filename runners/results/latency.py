"""Latency percentiles from HDR histograms: one window's, or several merged.

The load generator records every request's latency in an HdrHistogram
(``loadtests/pacing.py``: microseconds, 3 significant digits) and ships it
encoded (base64, compressed). Percentiles are read from the histogram, never
averaged: the p99 of three repeats is the p99 of their merged histograms.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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


def _buckets(hist: HdrHistogram) -> Iterator[tuple[int, int]]:
    """``(index, count)`` of every non-empty bucket, in value order: one pass over the
    counts in C (hdrh's own iterators step through every bucket in Python, a quarter
    of a second per window)."""
    # A decoded histogram's counts array may be shorter than counts_len (zeros past it).
    length = min(hist.counts_len, hist.encoder.payload.counts_len)
    counts: list[int] = hist.counts[:length]
    return ((index, count) for index, count in enumerate(counts) if count)


def latency(hist: HdrHistogram | None) -> Latency:
    """Milliseconds: p50, p90, p95, p99, max and mean of ``hist`` (all None when empty).

    The values hdrh's ``get_value_at_percentile`` and ``get_mean_value`` give, in one
    pass over the non-empty buckets."""
    if hist is None or hist.get_total_count() == 0:
        return Latency()
    targets = sorted(
        (hist.get_target_count_at_percentile(p), name) for name, p in PERCENTILES.items()
    )
    values: dict[str, float] = {}
    seen = 0
    weighted = 0
    for index, count in _buckets(hist):
        value = hist.get_value_from_index(index)
        low, high = (
            hist.get_lowest_equivalent_value(value),
            hist.get_highest_equivalent_value(value),
        )
        weighted += count * (low + ((high - low + 1) >> 1))  # the bucket's median value
        seen += count
        while targets and targets[0][0] <= seen:
            values[targets.pop(0)[1]] = high / 1000.0
    return Latency(
        p50=values["p50"],
        p90=values["p90"],
        p95=values["p95"],
        p99=values["p99"],
        max=hist.get_max_value() / 1000.0,
        mean=weighted / hist.get_total_count() / 1000.0,
    )


def encode(hist: HdrHistogram | None) -> str | None:
    if hist is None or hist.get_total_count() == 0:
        return None
    encoded: bytes = hist.encode()
    return encoded.decode("ascii")


def share_over(hist: HdrHistogram | None, ms: float) -> float:
    """The share of ``hist``'s recorded latencies above ``ms`` milliseconds (0 when empty):
    a bucket counts as above when its highest equivalent value is."""
    if hist is None:
        return 0.0
    total = int(hist.get_total_count())
    if total == 0:
        return 0.0
    limit = ms * 1000.0
    below = sum(
        count
        for index, count in _buckets(hist)
        if hist.get_highest_equivalent_value(hist.get_value_from_index(index)) <= limit
    )
    return max(0.0, (total - below) / total)
