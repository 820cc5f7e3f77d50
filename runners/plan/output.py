"""The plan on the console (a rich table per workload on a terminal, plain columns
otherwise) and plan.json on disk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from runners.results.document import PLAN_NAME, write_json_atomic
from runners.results.figures import GIB, MIB

JSON = dict[str, Any]

HEADERS = (
    "runner",
    "workers",
    "threads",
    "capacity req/s",
    "memory GiB",
    "req/s per GiB",
    "req/s per core",
    "limit",
    "max_requests",
    "2xcores+1",
    "WEB_CONCURRENCY",
)


def _rule(cell: JSON | None) -> str:
    if cell is None:
        return "—"
    memory = cell["memory_bytes"] / GIB
    text = f"{cell['workers']}: {cell['capacity_rps']:,.0f} req/s, {memory:.1f} GiB"
    if not cell["fits_memory"]:
        return text + " OVER MEMORY"
    if not cell["fits_budget"]:
        return text + " over budget"
    return text


def _assumed(row: JSON) -> str:
    """``*`` when the cores limit the row and the per-core rate is not from a run at
    saturation."""
    return "*" if row["limit"] == "cores" and row["per_core_from"] != "runs at saturation" else ""


def rows_of(workload: JSON) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in workload["rows"]:
        recycle = row["max_requests"]
        workers = str(row["workers"])
        if row["extrapolation"] > 1:
            workers += f" (x{row['extrapolation']:.0f} measured)"
        out.append(
            (
                row["runner"] + (" (model misses)" if row["within_target"] is False else ""),
                workers,
                "—" if row["threads"] is None else str(row["threads"]),
                f"{row['capacity_rps']:,.0f}",
                f"{row['memory_bytes'] / GIB:.2f}",
                f"{row['capacity_per_gib']:,.0f}",
                f"{row['capacity_per_core']:,.0f}",
                row["limit"] + _assumed(row),
                "—"
                if recycle is None or recycle["max_requests"] is None
                else f"{recycle['max_requests']:,}",
                _rule(row["rules"]["gunicorn"]),
                _rule(row["rules"]["web_concurrency"]),
            )
        )
    return out


def title_of(doc: JSON, workload: JSON) -> str:
    host = doc["host"]
    return (
        f"{workload['workload']}: {host['cores']} cores, {host['memory_bytes'] / GIB:g} GiB, "
        f"{host['headroom']:.0%} headroom"
        + (f", p99 <= {host['slo_p99_ms']:g} ms" if host["slo_p99_ms"] else "")
    )


def footer(doc: JSON) -> list[str]:
    lines = []
    for workload in doc["workloads"]:
        for skip in workload["skipped"]:
            lines.append(f"{workload['workload']}: {skip['runner']} not planned: {skip['reason']}")
    if any(_assumed(r) for w in doc["workloads"] for r in w["rows"]):
        lines.append(
            "* no run reached CPU saturation: the per-core rate is the requests per "
            "CPU-second, an optimistic figure"
        )
    for workload in doc["workloads"]:
        lines.extend(workload["summary"])
    rules = doc["rules"]
    lines.append(
        f"Rules on this host: gunicorn {rules['gunicorn']['formula']} = "
        f"{rules['gunicorn']['workers']} workers; WEB_CONCURRENCY "
        f"{rules['web_concurrency']['formula']} = {rules['web_concurrency']['workers']}."
    )
    for v in doc["validation"]:
        parts = []
        for what in ("memory", "capacity"):
            fig = v[what]
            parts.append(f"{what} {fig['error']:+.1%}" if fig else f"{what} —")
        lines.append(
            f"Held out {v['runner']} {v['workload']} at {v['held_out']['workers']} workers: "
            + ", ".join(parts)
        )
    lines.extend(f"MISSES 15 %: {miss}" for miss in doc["misses"])
    return lines


def print_plan(doc: JSON, out: TextIO = sys.stdout) -> None:
    if not out.isatty():
        _print_plain(doc, out)
        return
    console = Console(file=out)
    for workload in doc["workloads"]:
        table = Table(title=title_of(doc, workload), title_justify="left")
        for header in HEADERS:
            table.add_column(header, justify="left" if header in ("runner", "limit") else "right")
        for row in rows_of(workload):
            table.add_row(*row)
        console.print(table)
    for line in footer(doc):
        console.print(line, markup=False, highlight=False)


def _columns(rows: list[tuple[str, ...]], out: TextIO) -> None:
    """Plain columns, the first row a header underlined."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _print_plain(doc: JSON, out: TextIO) -> None:
    for workload in doc["workloads"]:
        print(title_of(doc, workload), file=out)
        _columns([HEADERS, *rows_of(workload)], out)
        print(file=out)
    for line in footer(doc):
        print(line, file=out)


POD_HEADERS = (
    "runner",
    "workers/pod",
    "threads",
    "capacity/pod req/s",
    "memory/pod MiB",
    "memory from",
    "limit",
    "pods/node",
    "node req/s",
    "cost/1M req",
    "host rule",
)


def pod_rows(workload: JSON) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in workload["rows"]:
        trap = row["host_rule"]
        cost = row["cost_per_million"]
        out.append(
            (
                row["runner"],
                str(row["workers"]),
                "—" if row["threads"] is None else str(row["threads"]),
                f"{row['capacity_rps']:,.0f}",
                f"{row['memory_bytes'] / MIB:,.0f}",
                row["memory_basis"],
                row["limit"],
                str(row["pods_per_node"]),
                f"{row['node_capacity_rps']:,.0f}",
                "—" if cost is None else f"{cost:.4f}",
                f"{trap['workers']}: {trap['memory_bytes'] / MIB:,.0f} MiB"
                + (" OOM" if trap["oom"] else ""),
            )
        )
    return out


def print_pods(doc: JSON, out: TextIO | None = None) -> None:
    """The pods section of the plan, when asked for (``--pod-memory``/``--pod-cpu``)."""
    pods = doc.get("pods")
    if pods is None:
        return
    out = out or sys.stdout
    host = doc["host"]
    prices = pods["prices"]
    price = (
        f"; prices {prices['vcpu_hour']:g}/vCPU-hour, {prices['gib_hour']:g}/GiB-hour "
        f"(a pod-hour {pods['pod_hour_cost']:.4f})"
        if prices
        else ""
    )
    print(file=out)
    for workload in pods["workloads"]:
        print(
            f"{workload['workload']}: pods of {pods['memory_bytes'] / MIB:,.0f} MiB and "
            f"{pods['cpu_cores']:g} CPU, {pods['headroom']:.0%} headroom; "
            f"{pods['pods_per_node']} per node of {host['cores']} cores, "
            f"{host['memory_bytes'] / GIB:g} GiB{price}",
            file=out,
        )
        _columns([POD_HEADERS, *pod_rows(workload)], out)
        for skip in workload["skipped"]:
            print(f"  {skip['runner']} not planned: {skip['reason']}", file=out)
        print(file=out)
    print(
        "host rule: the workers a rule reading the node's cores (os.cpu_count() in a "
        "container) starts in the pod, and its predicted memory (OOM: over the limit).",
        file=out,
    )


def write_plan(folder: Path, doc: JSON) -> Path:
    path = folder / PLAN_NAME
    write_json_atomic(path, doc)
    return path
