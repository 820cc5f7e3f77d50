"""The command line of ``python -m runners.micro`` (``tox -e micro``): pyperf's runner over the
benchmarks of ``runners.micro.benchmarks``. Every pyperf option works as
usual; pyperf re-executes this module in its worker processes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyperf

from runners import REPO_ROOT
from runners.micro.benchmarks import (
    SETTINGS_ENVIRON,
    SETTINGS_MODULE,
    Prepared,
    build,
    database_vendor,
    default_output,
    prepare_database,
    response_metadata,
    select_specs,
    setup_django,
)
from runners.micro.summary import format_overhead, format_summary, overhead, summarize


def _add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runners.micro options")
    group.add_argument(
        "--benchmarks",
        metavar="GLOBS",
        help="comma-separated glob patterns of benchmark names to run, e.g. "
        "'*/minimal/json,asgi-*/*/feed' (default: all 18)",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder of the SQLite database and secret key "
        "(default: $BENCH_DATA_DIR, else .data/ at the repository root)",
    )
    group.add_argument(
        "--skip-prepare",
        action="store_true",
        help="do not run 'python -m apps.manage prepare' first",
    )
    group.add_argument("--list", action="store_true", help="print the benchmark names and exit")


def _worker_args(cmd: list[str], args: argparse.Namespace) -> None:
    """Pass this module's own options on to pyperf's worker processes."""
    if args.benchmarks:
        cmd.extend(["--benchmarks", args.benchmarks])
    if args.data_dir:
        cmd.extend(["--data-dir", args.data_dir])


def _never() -> None:
    raise AssertionError("pyperf ran a benchmark that this worker did not build")


def _configure_environ(args: argparse.Namespace) -> None:
    """Environment of this process and of the workers pyperf spawns (which get a clean one)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    if args.data_dir:
        os.environ["BENCH_DATA_DIR"] = str(Path(args.data_dir).resolve())
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), *paths] if p)
    if not args.worker:
        inherited = list(args.inherit_environ or [])
        args.inherit_environ = inherited + [n for n in SETTINGS_ENVIRON if n not in inherited]


def main(argv: Sequence[str] | None = None) -> int:
    import django

    runner = pyperf.Runner(program_args=("-m", "runners.micro"), add_cmdline_args=_worker_args)
    parser = runner.argparser
    parser.prog = "python -m runners.micro"
    parser.description = (
        "pyperf micro-benchmarks of Django's request path, in-process: WSGIHandler with a "
        "sync view, ASGIHandler with an async view and ASGIHandler with a sync view, per "
        "middleware profile and view. All pyperf options apply."
    )
    parser.epilog = (
        "Without -o/--append the results go to reports/<timestamp>/micro.json. "
        "Read them with 'python -m pyperf show FILE'; compare two runs with "
        "'python -m pyperf compare_to OLD.json NEW.json --table'."
    )
    _add_options(parser)
    args = runner.parse_args(None if argv is None else list(argv))

    specs = select_specs(args.benchmarks)
    if args.list:
        for spec in specs:
            print(spec.name)
        return 0
    if not specs:
        print(f"micro: no benchmark matches {args.benchmarks!r}", file=sys.stderr)
        return 2
    _configure_environ(args)

    runner.metadata["django_version"] = django.__version__
    runner.metadata["description"] = "Django handler in-process, one GET per loop"

    prepared: dict[int, Prepared] = {}
    if args.worker:
        # pyperf calls each bench_*() in order and runs only the --worker-task'th.
        # A worker started by hand without --worker-task runs them all.
        wanted = range(len(specs)) if args.worker_task is None else [args.worker_task]
        wanted = [i for i in wanted if i < len(specs)]
        # The profile and interface are selected before the settings load, as a
        # server would (under ASGI Django's docs say: no persistent connections).
        setup_django(
            specs[wanted[0]].profile if wanted else None,
            specs[wanted[0]].interface if wanted else None,
        )
        runner.metadata["database"] = database_vendor()
        from django.conf import settings

        runner.metadata["conn_max_age"] = str(settings.DATABASES["default"]["CONN_MAX_AGE"])
        for index in wanted:
            prepared[index] = build(specs[index])
    else:
        if not (args.output or args.append or args.compare_to):
            args.output = str(default_output())
        for target in (args.output, args.append):
            if target:
                Path(target).resolve().parent.mkdir(parents=True, exist_ok=True)
        if not args.skip_prepare:
            prepare_database(os.environ)
        # Fail fast, before any worker starts: every path must answer 200.
        setup_django()
        for spec in specs:
            build(spec)
        if not args.quiet:
            print(f"micro: {len(specs)} benchmarks, Django {django.__version__}", flush=True)

    results: list[pyperf.Benchmark] = []
    for index, spec in enumerate(specs):
        metadata: dict[str, Any] = {
            "handler": spec.handler,
            "interface": spec.interface,
            "view_kind": spec.variant,
            "middleware_profile": spec.profile,
            "view": spec.view,
            "path": spec.path,
            "tags": [spec.handler, spec.profile],
        }
        item = prepared.get(index)
        if item is not None:
            metadata.update(response_metadata(item.response))
        func = item.func if item is not None else _never
        if spec.interface == "wsgi":
            bench = runner.bench_func(spec.name, func, metadata=metadata)
        else:
            bench = runner.bench_async_func(spec.name, func, metadata=metadata)
        if bench is not None and not args.worker:
            results.append(bench)

    if results and not args.worker:
        rows = summarize(results)
        print()
        print("Mean time per request (microseconds):")
        print("\n".join(format_summary(rows)))
        table = overhead(rows)
        if table:
            print()
            print("ASGI cost over WSGI per request (microseconds; extra = ASGI mean - WSGI mean):")
            print("\n".join(format_overhead(table)))
        if args.output:
            print(f"\nmicro: results in {args.output}")
            print(f"  python -m pyperf show {args.output}")
    return 0
