"""What is known of a figure: a band, not a point.

The capacity search (``runners.bench.capacity``) records per run the band it found
(``Capacity.low_rps``: the highest rate that passed twice, a probe and the
confirmation window; ``Capacity.high_rps``: the lowest rate that failed after its
retake, None when none did) and whether the figure is a lower bound
(``Capacity.lower_bound``). Here a run's band is made of them, per GiB with the
run's own PSS peak, and a cell's band of its repeats':

- a run's capacity band is ``[low, high]``, its low end lowered to the rate served
  when that is below the rate offered (the figure always lies in its band);
- it is open above (``high`` None: ``≥ low``) when the figure is a lower bound: the
  search's ``lower_bound``, a file from before the bands whose search stopped at the
  load generator (``bound == "loadgen"``), or a run flagged with a ``LOWER_BOUND``
  flag (``runners.results.flags``);
- a run without a band of its own (a closed loop, a file from before the bands, an
  unconfirmed capacity) counts as its figure: a point, open above when a lower bound;
- a cell's band is the union of its repeats' bands: the lowest low to the highest
  high (open when any repeat's is), so the repeats' spread is inside it. It is
  ``measured`` only when every repeat's band came from the search.

Two cells whose bands overlap cannot be told apart: the report ranks them equal and a
comparison calls the change noise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runners.results.figures import per_gib
from runners.results.flags import LOWER_BOUND
from runners.results.record import Run


@dataclass(frozen=True)
class Band:
    """A figure's band: ``[low, high]``, or ``≥ low`` (``high`` None)."""

    low: float
    high: float | None
    measured: bool = False
    """From the capacity search's band (else: the repeats' own figures)."""

    @property
    def open(self) -> bool:
        """Open above: the figure is a lower bound."""
        return self.high is None

    @property
    def point(self) -> bool:
        """A single value (closed, and no wider than a rounding)."""
        return self.high is not None and self.high - self.low <= 1e-9 * max(abs(self.low), 1.0)

    def overlaps(self, other: Band) -> bool:
        """Whether the two bands share a value (an open band reaches every higher one)."""
        return (other.high is None or self.low <= other.high) and (
            self.high is None or other.low <= self.high
        )

    def scaled(self, factor: float) -> Band:
        """Both ends multiplied by ``factor`` (> 0)."""
        high = None if self.high is None else self.high * factor
        return Band(self.low * factor, high, self.measured)


def union(bands: Iterable[Band | None]) -> Band | None:
    """The lowest low to the highest high (open when one is); None without a band."""
    found = [b for b in bands if b is not None]
    if not found:
        return None
    highs = [b.high for b in found]
    return Band(
        low=min(b.low for b in found),
        high=None if None in highs else max(h for h in highs if h is not None),
        measured=all(b.measured for b in found),
    )


def points(values: Iterable[float | None], lower_bound: bool = False) -> Band | None:
    """The band of figures with no band of their own: their range (open above when a
    lower bound); None without a value."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None
    return Band(min(kept), None if lower_bound else max(kept))


def is_lower_bound(run: Run) -> bool:
    """The run's figure is what the server did at least: the search says so, it stopped
    at the load generator (files from before the bands), or a flag says so."""
    capacity = run.capacity
    if capacity is not None and (capacity.lower_bound or capacity.bound == "loadgen"):
        return True
    return any(flag in LOWER_BOUND for flag in run.flags)


def capacity_band(run: Run) -> Band | None:
    """The run's capacity band in req/s (None when no rate passed)."""
    capacity = run.capacity
    if not run.ok or capacity is None or capacity.rps is None:
        return None
    rps = capacity.rps
    lower = is_lower_bound(run)
    if capacity.low_rps is None:
        return Band(rps, None if lower else rps)
    high = None if lower or capacity.high_rps is None else max(capacity.high_rps, rps)
    return Band(min(capacity.low_rps, rps), high, measured=True)


def capacity_band_per_gib(run: Run) -> Band | None:
    """The run's capacity band per GiB of its own PSS peak (None without memory)."""
    band = capacity_band(run)
    pss = run.memory.pss_peak_bytes if run.memory is not None else None
    factor = per_gib(1.0, pss)
    if band is None or factor is None:
        return None
    return band.scaled(factor)


def band_text(band: Band | None, digits: int = 0, thousands: bool = True) -> str:
    """``[1,200, 1,350]``, ``≥ 1,200``, or '' for no band or a point."""
    if band is None or band.point:
        return ""
    spec = f"{',' if thousands else ''}.{digits}f"
    if band.high is None:
        return f"≥ {band.low:{spec}}"
    return f"[{band.low:{spec}}, {band.high:{spec}}]"
