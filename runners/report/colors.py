"""The report's one palette: chart colours for runners, users levels, percentiles,
memory parts and gc modes."""

from __future__ import annotations

# Okabe-Ito, readable by the colour-blind; one colour per runner line.
RUNNER_COLORS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#999933",
    "#000000",
)
LEVEL_COLORS = ("#1f4e89", "#5b9be0", "#0b2a4f", "#9cc2ec")  # users levels, bar charts
PERCENTILE_COLORS = {"p50": "#fdd0a2", "p90": "#fd8d3c", "p95": "#d94801", "p99": "#7f2704"}
MEMORY_COLORS = {"private": "#1a5e8a", "charged_shared": "#6fa8d6", "other_shared": "#d9e6f2"}
GC_COLORS = {"default": "#D55E00", "freeze": "#0072B2", "off": "#009E73"}
FADED = "55"  # alpha suffix for the bars of flagged cells


def runner_color(index: int) -> str:
    return RUNNER_COLORS[index % len(RUNNER_COLORS)]
