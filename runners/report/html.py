"""The HTML side of the reports: the Jinja2 environment (autoescaping on, the number
formats of ``runners.report.formats`` as filters, the thresholds the pages name), the
inlined assets (Chart.js, the stylesheet) and writing a page atomically."""

from __future__ import annotations

import os
import re
import tempfile
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from runners.report.capacity import bound_reason, slo_text
from runners.report.compare import ASSUMED_NOISE, NOISE_FLOOR
from runners.report.formats import (
    fmt_mean,
    fmt_mib,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_spread,
    fmt_time,
)
from runners.results.criteria import (
    INTERFERENCE_SHARE,
    MAX_ERROR_RATE,
    NOISY_SPREAD,
    STEAL_SHARE,
)
from runners.results.flags import LOWER_BOUND, UNRANKED, help_texts, order_flags

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


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
        steal_share=STEAL_SHARE,
        max_error_rate=MAX_ERROR_RATE,
        unranked_flags=order_flags(UNRANKED),
        lower_bound_flags=order_flags(LOWER_BOUND),
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
