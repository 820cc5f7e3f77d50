"""How the reports write numbers and times: the templates' filters
(``runners.report.html``) and the sentences the report composes in Python."""

from __future__ import annotations

from datetime import UTC, datetime

from runners.results.cells import Stat
from runners.results.figures import MIB


def fmt_num(value: float | int | None, digits: int = 0) -> str:
    """``1,234`` (``digits`` decimals); ``—`` for no value."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ms(value: float | int | None) -> str:
    """Milliseconds: one decimal under 10, none above; ``—`` for no value."""
    if value is None:
        return "—"
    return f"{value:,.1f}" if abs(value) < 10 else f"{value:,.0f}"


def fmt_mib(value: float | int | None) -> str:
    """Bytes in MiB, one decimal; ``—`` for no value."""
    if value is None:
        return "—"
    return f"{value / MIB:,.1f}"


def fmt_pct(value: float | None, signed: bool = False) -> str:
    """A share as ``12.3 %`` (``+12.3 %`` when ``signed``); ``—`` for no value."""
    if value is None:
        return "—"
    if signed and round(value * 100, 1) == 0:
        return "0.0 %"
    return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"


def fmt_spread(value: Stat | None) -> str:
    """``±1.2 %``: half the range of a figure's repetitions, relative to their mean;
    nothing for a single one."""
    if value is None or value.n < 2:
        return ""
    return f"±{value.spread * 100:.1f} %"


def fmt_time(value: str | None) -> str:
    """'2026-11-21 10:00 UTC' from an ISO 8601 time (the text itself if not)."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def fmt_mean(value: Stat | None, digits: int = 0) -> str:
    """The mean of a figure over its repetitions, as ``fmt_num``."""
    return fmt_num(value.mean if value is not None else None, digits)
