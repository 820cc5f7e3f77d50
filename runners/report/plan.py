"""The "Capacity plan" section of a run report, from the plan.json beside
results.json (written by ``python -m runners.plan``); nothing when there is none.

The section's chart data goes into its own JSON block and is drawn by
``static/plan.js`` (predicted capacity against workers per runner, predicted
memory on a second axis, and the memory budget as a line), so the run page's
own charts are untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runners.report.colors import runner_color
from runners.report.html import STATIC, inline_script
from runners.results.document import PLAN_NAME
from runners.results.figures import GIB

JSON = dict[str, Any]


def _chart(workload: JSON, budget: float, colors: dict[str, str]) -> JSON:
    datasets: list[JSON] = []
    for row in workload["rows"]:
        color = colors[row["runner"]]
        datasets.append(
            {
                "label": f"{row['runner']} req/s",
                "data": [{"x": p["workers"], "y": p["capacity_rps"]} for p in row["curve"]],
                "color": color,
                "axis": "y",
            }
        )
        datasets.append(
            {
                "label": f"{row['runner']} memory",
                "data": [
                    {"x": p["workers"], "y": round(p["memory_bytes"] / GIB, 3)}
                    for p in row["curve"]
                ],
                "color": color,
                "axis": "memory",
                "dash": True,
            }
        )
    top = max((p["workers"] for r in workload["rows"] for p in r["curve"]), default=1)
    datasets.append(
        {
            "label": "memory budget",
            "data": [
                {"x": 1, "y": round(budget / GIB, 3)},
                {"x": top, "y": round(budget / GIB, 3)},
            ],
            "color": "#B00020",
            "axis": "memory",
            "budget": True,
        }
    )
    return {"datasets": datasets}


def plan_view(folder: Path) -> JSON | None:
    """The section's context, or None without plan.json."""
    path = folder / PLAN_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        budget = float(doc["host"]["budget_bytes"])
        runners = [r["runner"] for w in doc["workloads"] for r in w["rows"]]
        colors = {name: runner_color(i) for i, name in enumerate(dict.fromkeys(runners))}
        charts = {f"plan-{i}": _chart(w, budget, colors) for i, w in enumerate(doc["workloads"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {
            "error": f"{PLAN_NAME} could not be read: {exc}",
            "doc": None,
            "charts": {},
            "script": None,
        }
    return {
        "error": None,
        "doc": doc,
        "charts": charts,
        "script": inline_script((STATIC / "plan.js").read_text(encoding="utf-8")),
    }
