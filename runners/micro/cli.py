"""The command line of ``python -m runners.micro`` (``tox -e micro``): pyperf's runner over the
benchmarks of ``runners.micro.benchmarks``. Every pyperf option works as
usual; pyperf re-executes this module in its worker processes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyperf

from runners import REPO_ROOT
from runners.micro.ablation import breakdown, format_breakdown, means_from_rows, sentence
from runners.micro.benchmarks import (
    SETTINGS_ENVIRON,
    SETTINGS_MODULE,
    Prepared,
    Spec,
    build,
    database_vendor,
    default_output,
    loop_factory,
    prepare_database,
    response_metadata,
    select_specs,
    setup_django,
)
from runners.micro.summary import format_overhead, format_summary, overhead, summarize, summary


def _add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runners.micro options")
    group.add_argument(
        "--benchmarks",
        metavar="GLOBS",
        help="comma-separated glob patterns of benchmark names to run, e.g. "
        "'*/minimal/json,asgi-*/*/feed' (default: all: the 18 handler benchmarks, "
        "the ablation and the connect cost)",
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
    group.add_argument(
        "--asgiref",
        metavar="X.Y,...",
        help="run the benchmarks once per asgiref release (e.g. 3.11,3.13), each in a "
        "virtual environment with the locked versions but that asgiref; names get "
        "'/asgiref-X.Y'",
    )
    group.add_argument("--name-tag", metavar="TAG", help=argparse.SUPPRESS)


def _worker_args(cmd: list[str], args: argparse.Namespace) -> None:
    """Pass this module's own options on to pyperf's worker processes."""
    if args.benchmarks:
        cmd.extend(["--benchmarks", args.benchmarks])
    if args.data_dir:
        cmd.extend(["--data-dir", args.data_dir])
    if getattr(args, "name_tag", None):
        cmd.extend(["--name-tag", args.name_tag])


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


def make_runner() -> pyperf.Runner:
    """pyperf's runner, its parser described and given the suite's options."""
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
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    import django

    runner = make_runner()
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
    if args.asgiref and not args.worker:
        return _per_asgiref(args, list(sys.argv[1:] if argv is None else argv))

    import asgiref

    runner.metadata["django_version"] = django.__version__
    runner.metadata["asgiref_version"] = asgiref.__version__
    if args.name_tag:
        runner.metadata["name_tag"] = args.name_tag
    runner.metadata["description"] = "Django handler in-process, one GET per loop"
    if args.worker:
        prepared = _prepare_worker(runner, args, specs)
    else:
        prepared = {}
        _prepare_parent(args, specs)
    results = _run_benchmarks(runner, args, specs, prepared)
    if results and not args.worker and not args.name_tag:
        _print_tables(summarize(results), args.output)
    return 0


def _prepare_worker(
    runner: pyperf.Runner, args: argparse.Namespace, specs: Sequence[Spec]
) -> dict[int, Prepared]:
    """A pyperf worker: Django set up as a server would set it up, the benchmarks it runs
    built (pyperf calls each bench_*() in order and runs only the --worker-task'th; a
    worker started by hand without --worker-task runs them all)."""
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
    return {index: build(specs[index]) for index in wanted}


def _prepare_parent(args: argparse.Namespace, specs: Sequence[Spec]) -> None:
    """pyperf's parent: the output folder, the database, and every benchmark built once so
    a path that does not answer 200 fails before any worker starts."""
    import django

    if not (args.output or args.append or args.compare_to):
        args.output = str(default_output())
    for target in (args.output, args.append):
        if target:
            Path(target).resolve().parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_prepare:
        prepare_database(os.environ)
    setup_django()
    for spec in specs:
        build(spec)
    if not args.quiet:
        print(f"micro: {len(specs)} benchmarks, Django {django.__version__}", flush=True)


def _run_benchmarks(
    runner: pyperf.Runner,
    args: argparse.Namespace,
    specs: Sequence[Spec],
    prepared: dict[int, Prepared],
) -> list[pyperf.Benchmark]:
    """Hand every benchmark to pyperf, with its metadata; the parent's results."""
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
        if spec.loop is not None:
            metadata["event_loop"] = spec.loop
        name = spec.name if not args.name_tag else f"{spec.name}/{args.name_tag}"
        item = prepared.get(index)
        if item is not None:
            metadata.update(response_metadata(item.response))
        func = item.func if item is not None else _never
        if spec.loop is None:
            bench = runner.bench_func(name, func, metadata=metadata)
        else:
            bench = runner.bench_async_func(
                name, func, metadata=metadata, loop_factory=loop_factory(spec.loop)
            )
        if bench is not None and not args.worker:
            results.append(bench)
    return results


def _print_tables(rows: list[dict[str, Any]], output: str | None) -> None:
    print()
    print("Time per request (microseconds):")
    print("\n".join(format_summary(rows)))
    table = overhead(rows)
    if table:
        print()
        print(
            "ASGI cost over WSGI per request (microseconds; extra = ASGI mean - WSGI mean; "
            "connect: the database connect ASGI pays per querying request):"
        )
        print("\n".join(format_overhead(table)))
    for tag in dict.fromkeys(r.get("asgiref") for r in rows):
        ablation = breakdown(
            means_from_rows([r for r in rows if r.get("asgiref") == tag and r["values"]])
        )
        if ablation is not None:
            print()
            print(f"Where it goes (asgiref {tag}):" if tag else "Where it goes:")
            print("\n".join(format_breakdown(ablation)))
            print(sentence(ablation))
    if output:
        print(f"\nmicro: results in {output}")
        print(f"  python -m pyperf show {output}")


def _per_asgiref(args: argparse.Namespace, argv: list[str]) -> int:
    """``--asgiref``: one child run per release, each in its own virtual environment."""
    # Imported here: the children run in environments with the app's packages only.
    from runners.micro import asgirefs
    from runners.runtimes.venvs import RuntimeSetupError

    try:
        releases = asgirefs.parse_asgirefs(args.asgiref)
    except ValueError as exc:
        print(f"micro: {exc}", file=sys.stderr)
        return 2
    output = args.output or args.append or str(default_output())
    Path(output).resolve().parent.mkdir(parents=True, exist_ok=True)
    if args.output and Path(output).exists():
        print(f"micro: {output} already exists", file=sys.stderr)
        return 2
    runtimes = {}
    for release in releases:
        try:
            runtimes[release] = asgirefs.runtime(release, say=lambda t: print(t, flush=True))
        except RuntimeSetupError as exc:
            print(f"micro: --asgiref {release}: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
    if not args.skip_prepare:
        prepare_database(os.environ)
    for release, rt in runtimes.items():
        command = [rt.python, "-m", "runners.micro", *asgirefs.child_args(argv, release, output)]
        print(f"micro: asgiref {rt.packages and dict(rt.packages).get('asgiref')}", flush=True)
        status = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ), check=False)
        if status.returncode != 0:
            print(f"micro: the asgiref {release} run failed (exit {status.returncode})")
            return status.returncode
    _print_tables(summary(output), output)
    return 0
