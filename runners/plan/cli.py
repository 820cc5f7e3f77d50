"""``python -m runners.plan RESULTS_DIR... --cores N --memory SIZE [--slo-p99 MS]
[--headroom PCT]`` (``tox -e plan -- ...``): the capacity plan of a host from a
worker sweep.

Exit status 0 with the plan printed and written; 2 with one line on stderr for
a bad option, an unreadable results folder, or folders without a sweep (no
runner measured at two worker or thread counts); 1 when plan.json cannot be
written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from runners.cli.args import Parser, UsageError, parse_size
from runners.plan.model import Host, build_models, plan
from runners.plan.observe import growth, observations
from runners.plan.output import print_plan, write_plan
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
    return p


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
    print_plan(doc)
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
