"""The HTML side of the reports: number formats, the Jinja2 environment (autoescaping
on), the inlined assets (Chart.js, the stylesheet) and writing a page atomically."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from runners.report.capacity import bound_reason, slo_text
from runners.report.compare import ASSUMED_NOISE, NOISE_FLOOR
from runners.results.cells import Stat
from runners.results.criteria import INTERFERENCE_SHARE, NOISY_SPREAD
from runners.results.figures import MIB
from runners.results.flags import help_texts

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


# --------------------------------------------------------------------------
# Formatting filters


def fmt_num(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ms(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if abs(value) < 10 else f"{value:,.0f}"


def fmt_mib(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value / MIB:,.1f}"


def fmt_pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    if signed and round(value * 100, 1) == 0:
        return "0.0 %"
    return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"


def fmt_spread(value: Stat | None) -> str:
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
    return fmt_num(value.mean if value is not None else None, digits)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=fmt_num,
        ms=fmt_ms,
        mib=fmt_mib,
        pct=fmt_pct,
        spread=fmt_spread,
        time=fmt_time,
        mean=fmt_mean,
    )
    env.globals.update(
        flag_help=help_texts(),
        bound_reason=bound_reason,
        slo_text=slo_text,
        css=inline_style(_asset("report.css")),
        noise={"floor": NOISE_FLOOR, "assumed": ASSUMED_NOISE, "noisy": NOISY_SPREAD},
        interference_share=INTERFERENCE_SHARE,
    )
    return env


# --------------------------------------------------------------------------
# Inlined assets


@cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


def inline_script(source: str) -> Markup:
    """JavaScript safe to write between <script> and </script>."""
    source = _SOURCE_MAP.sub("", source)
    source = _SCRIPT_END.sub(r"<\\/\1", source).replace("<!--", "<\\!--")
    return Markup(source)  # noqa: S704 - our own vendored files, made inert above


def inline_style(source: str) -> Markup:
    """CSS safe to write between <style> and </style>."""
    if "</style" in source.lower():
        raise ValueError("a stylesheet must not contain '</style'")
    return Markup(source)  # noqa: S704 - our own stylesheet


@cache
def chart_scripts() -> tuple[Markup, ...]:
    return tuple(
        inline_script(_asset(name))
        for name in ("chart.umd.min.js", "chartjs-plugin-datalabels.min.js", "report.js")
    )


def write_page(path: Path, text: str) -> Path:
    """Write atomically: a crash never leaves half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
