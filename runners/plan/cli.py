"""``python -m runners.plan RESULTS_DIR... --cores N --memory SIZE [--slo-p99 MS]
[--headroom PCT] [--pod-memory SIZE --pod-cpu CORES [--price-vcpu-hour X
--price-gib-hour Y]]`` (``tox -e plan -- ...``): the capacity plan of a host from a
worker sweep and, with a pod's limits, the pods (``runners.plan.pods``).

Exit status 0 with the plan printed and written; 2 with one line on stderr for
a bad option, an unreadable results folder, or folders without a sweep (no
runner measured at two worker or thread counts); 1 when plan.json cannot be
written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from runners.cli.args import Parser, UsageError, parse_cores
from runners.cli.args import parse_size as parse_size  # re-exported: sizes were parsed here
from runners.plan.model import Host, build_models, plan
from runners.plan.observe import growth, observations
from runners.plan.output import print_plan, print_pods, write_plan
from runners.plan.pods import PodShape, Prices, plan_pods
from runners.results.document import Results, ResultsError, read_results, results_path

PROG = "python -m runners.plan"
DEFAULT_HEADROOM = 10.0


def parser() -> Parser:
    p = Parser(
        prog=PROG,
        description=(
            "Fit memory and capacity models to a worker sweep (one or more results "
            "folders) and plan the runners and worker counts for a host."
        ),
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="RESULTS_DIR")
    p.add_argument("--cores", required=True, help="the host's CPU cores")
    p.add_argument("--memory", required=True, help="the host's memory, e.g. 32GiB")
    p.add_argument("--slo-p99", help="latency target in ms for closed-loop runs")
    p.add_argument(
        "--headroom",
        default=str(DEFAULT_HEADROOM),
        help=f"percent of the memory kept free (default {DEFAULT_HEADROOM:g})",
    )
    p.add_argument("--no-report", action="store_true", help="do not rebuild the HTML report")
    p.add_argument(
        "--pod-memory", metavar="SIZE", help="plan pods of this memory limit, e.g. 512MiB"
    )
    p.add_argument("--pod-cpu", metavar="CORES", help="the pods' CPU limit, e.g. 1 or 500m")
    p.add_argument(
        "--price-vcpu-hour", metavar="X", help="what a vCPU-hour costs: gives cost per million"
    )
    p.add_argument("--price-gib-hour", metavar="Y", help="what a GiB-hour of memory costs")
    return p


def pod_of(memory: str | None, cpu: str | None) -> PodShape | None:
    """``--pod-memory`` and ``--pod-cpu`` (both or neither)."""
    if memory is None and cpu is None:
        return None
    if memory is None or cpu is None:
        raise UsageError("--pod-memory and --pod-cpu: a pod needs both")
    return PodShape(parse_size(memory, "--pod-memory"), parse_cores(cpu, "--pod-cpu"))


def prices_of(vcpu: str | None, gib: str | None, pod: PodShape | None) -> Prices | None:
    """``--price-vcpu-hour`` and ``--price-gib-hour`` (both or neither, with a pod)."""
    if vcpu is None and gib is None:
        return None
    if vcpu is None or gib is None or pod is None:
        raise UsageError(
            "--price-vcpu-hour and --price-gib-hour: give both, with --pod-memory and --pod-cpu"
        )
    values = (_number(vcpu, "--price-vcpu-hour"), _number(gib, "--price-gib-hour"))
    if any(v < 0 or v != v for v in values):
        raise UsageError("--price-vcpu-hour/--price-gib-hour: prices are numbers >= 0")
    return Prices(*values)


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a number") from None


def host_of(cores: str, memory: str, headroom: str, slo: str | None) -> Host:
    try:
        count = int(cores)
    except ValueError:
        raise UsageError(f"--cores: {cores!r} is not a whole number") from None
    if count < 1:
        raise UsageError(f"--cores: {cores!r}: a host has at least one core")
    percent = _number(headroom, "--headroom")
    if not 0 <= percent < 100:
        raise UsageError(f"--headroom: {headroom!r} is not a percentage in [0, 100)")
    slo_ms = _number(slo, "--slo-p99") if slo is not None else None
    if slo_ms is not None and slo_ms <= 0:
        raise UsageError(f"--slo-p99: {slo!r} is not a positive number of ms")
    return Host(count, parse_size(memory), percent / 100, slo_ms)


def load(dirs: Sequence[Path]) -> list[Results]:
    return [read_results(d) for d in dirs]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        host = host_of(args.cores, args.memory, args.headroom, args.slo_p99)
        pod = pod_of(args.pod_memory, args.pod_cpu)
        prices = prices_of(args.price_vcpu_hour, args.price_gib_hour, pod)
        results = load(args.dirs)
        obs = observations(results, host.slo_p99_ms)
        if not any(m.memory is not None for m in build_models(obs)):
            names = ", ".join(str(d) for d in args.dirs)
            raise UsageError(
                f"{names}: no sweep: no runner was measured at two worker or thread counts "
                "(run tox -e bench -- --workers 1,2,3 or --sweep)"
            )
    except (UsageError, ResultsError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    folders = [results_path(d).parent for d in args.dirs]
    doc = plan(obs, growth(results, folders), host, [str(f) for f in folders])
    if pod is not None:
        doc["pods"] = plan_pods(build_models(obs), pod, host, prices)
    print_plan(doc)
    print_pods(doc)
    try:
        path = write_plan(folders[0], doc)
    except OSError as exc:
        print(f"{PROG}: error: cannot write plan.json: {exc}", file=sys.stderr)
        return 1
    print(f"Plan: {path}")
    if not args.no_report:
        from runners.report.render import render_run

        try:
            print(f"Report: {render_run(folders[0])}")
        except (ResultsError, OSError) as exc:
            print(f"{PROG}: the report was not rebuilt: {exc}", file=sys.stderr)
    return 0
