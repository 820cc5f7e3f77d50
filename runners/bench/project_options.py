"""``--project`` and its options, checked before anything starts.

A project is found where it is (``runners.project.options``, shared with ``tox -e
serve`` and ``tox -e ui``: its ``manage.py`` and settings, read without running them),
and its traffic is read from its files (``loadtests.traffic``; ``add_traffic_options`` and
``project_traffic``, shared with ``tox -e ui``): each source is a workload named after
its file. Everything that can be wrong with them is one line and exit status 2 before
any server starts: a path that is not a Django project, a traffic file that does not
parse, an empty URL list, a locustfile with a syntax error, a write (POST, PUT...)
without ``--allow-writes``, and options that belong to the built-in app.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from loadtests.traffic import (
    DEFAULT_TOP,
    Traffic,
    TrafficError,
    check_locustfile,
    parse_access_log,
    parse_urls,
    writes,
)
from runners.cli.args import UsageError
from runners.project.layout import ProjectLayout
from runners.project.options import DEFAULT_HEALTH, project_target

BUILT_IN_ONLY = (
    "workloads",
    "django",
    "variant",
    "database",
    "seed",
    "middleware",
    "upstream_ms",
    "agent",
    "micro",
)
"""The bench's options that belong to the built-in app: refused with ``--project``
(``runners.project.options.BUILT_IN_OPTIONS`` says why)."""

TRAFFIC_OPTIONS = ("urls", "locustfile", "access_log", "top", "allow_writes")
"""The project's traffic: only with ``--project`` (``add_traffic_options``)."""


@dataclass(frozen=True)
class ProjectOptions:
    """The user's project, as the command line gives it."""

    layout: ProjectLayout
    settings: str | None
    """``--settings`` (None: the one ``manage.py`` names, in ``layout``)."""
    wsgi: str | None
    asgi: str | None
    requirements: Path | None
    traffic: tuple[Traffic, ...]
    """One workload per source, named after its file."""
    files: tuple[Path, ...] = ()
    """The source file of each of ``traffic``."""
    allow_writes: bool = False
    allow_errors: bool = False
    database_as_is: bool = False
    health: str = DEFAULT_HEALTH

    @property
    def workloads(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.traffic)

    def traffic_of(self, workload: str) -> Traffic:
        return next(t for t in self.traffic if t.name == workload)

    def file_of(self, workload: str) -> Path:
        return next(f for t, f in zip(self.traffic, self.files, strict=True) if t.name == workload)


def add_traffic_options(g: argparse._ActionsContainer) -> None:
    """``--urls``, ``--locustfile``, ``--access-log`` (with ``--top``) and
    ``--allow-writes``: what the project's users request (``project_traffic`` reads them)."""
    g.add_argument(
        "--urls",
        metavar="FILE",
        help="its traffic: lines of WEIGHT METHOD PATH [@BODYFILE] [Header:Value] [status=N]",
    )
    g.add_argument(
        "--locustfile",
        metavar="FILE",
        help="its traffic: your own Locust user classes (each task execution one arrival)",
    )
    g.add_argument(
        "--access-log",
        metavar="FILE",
        help="its traffic: a common, combined or gunicorn access log, weighted by frequency",
    )
    g.add_argument(
        "--top",
        type=int,
        metavar="N",
        help=f"--access-log: keep the N most frequent requests (default {DEFAULT_TOP})",
    )
    g.add_argument(
        "--allow-writes",
        action="store_true",
        help="send requests other than GET and HEAD (to the copy or clone of its database)",
    )


def parse_project(a: argparse.Namespace) -> ProjectOptions | None:
    """The project options of ``a`` (None without ``--project``); ``UsageError`` (one line)
    for anything wrong with them."""
    target = project_target(a, BUILT_IN_ONLY, (*TRAFFIC_OPTIONS, "allow_errors"))
    if target is None:
        return None
    traffic, files = project_traffic(a)
    return ProjectOptions(
        layout=target.layout,
        settings=target.settings,
        wsgi=target.wsgi,
        asgi=target.asgi,
        requirements=target.requirements,
        traffic=traffic,
        files=files,
        allow_writes=bool(a.allow_writes),
        allow_errors=bool(a.allow_errors),
        database_as_is=target.database_as_is,
        health=target.health,
    )


def project_traffic(a: argparse.Namespace) -> tuple[tuple[Traffic, ...], tuple[Path, ...]]:
    """The traffic sources of ``a`` read (``read_traffic``), and no write among them
    without ``--allow-writes``."""
    traffic, files = read_traffic(a)
    if not a.allow_writes:
        for source in traffic:
            found = writes(source)
            if found:
                entry = found[0]
                raise UsageError(
                    f"{source.name}: {entry.method} {entry.path} would write to the "
                    f"project's data ({len(found)} such request(s)); give --allow-writes "
                    "to send them (they go to the suite's copy or clone of its database)"
                )
    return traffic, files


def read_traffic(a: argparse.Namespace) -> tuple[tuple[Traffic, ...], tuple[Path, ...]]:
    """Each traffic source given, parsed, and its file; at least one, and no two of the
    same name."""
    if a.top is not None and a.access_log is None:
        raise UsageError("--top: belongs to --access-log FILE")
    if a.top is not None and a.top < 1:
        raise UsageError(f"--top: {a.top} is not positive")
    found: list[Traffic] = []
    files: list[Path] = []
    try:
        if a.urls:
            found.append(parse_urls(Path(a.urls)))
            files.append(Path(a.urls).resolve())
        if a.locustfile:
            found.append(check_locustfile(Path(a.locustfile)))
            files.append(Path(a.locustfile).resolve())
        if a.access_log:
            top = a.top if a.top is not None else DEFAULT_TOP
            found.append(parse_access_log(Path(a.access_log), top, bool(a.allow_writes)))
            files.append(Path(a.access_log).resolve())
    except TrafficError as exc:
        raise UsageError(str(exc)) from None
    if not found:
        raise UsageError(
            "--project: say what its users request: --urls FILE, --locustfile FILE or "
            "--access-log FILE"
        )
    names = [t.name for t in found]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise UsageError(f"two traffic files are both named {duplicate!r}: rename one")
    return tuple(found), tuple(files)
