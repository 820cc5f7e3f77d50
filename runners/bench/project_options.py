"""``--project`` and its options, checked before anything starts.

A project is found where it is (``runners.project.find_project``: its ``manage.py`` and
settings, read without running them), and its traffic is read from its files
(``loadtests.traffic``): each source is a workload named after its file. Everything that
can be wrong with them is one line and exit status 2 before any server starts: a path
that is not a Django project, a traffic file that does not parse, an empty URL list, a
locustfile with a syntax error, a write (POST, PUT...) without ``--allow-writes``, and
options that belong to the built-in app.
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
from runners.project.errors import ProjectError
from runners.project.layout import ProjectLayout, find_project

DEFAULT_HEALTH = "/"

BUILT_IN_ONLY = {
    "workloads": "--workloads (a project's workloads are its traffic: --urls, --locustfile, "
    "--access-log)",
    "django": "--django (the project is served with its own Django)",
    "variant": "--variant (the built-in app's /sync/ and /async/ views)",
    "database": "--database (the project's database is its settings', copied or cloned)",
    "seed": "--seed (the built-in app's data)",
    "middleware": "--middleware (the project's settings say which it runs)",
    "upstream_ms": "--upstream-ms (the built-in app's upstream service)",
    "agent": "--agent (a project is served on this host)",
    "micro": "--micro (the built-in app's request path)",
}
"""Options that belong to the built-in app: refused with ``--project``."""

PROJECT_ONLY = (
    "settings",
    "wsgi",
    "asgi",
    "requirements",
    "urls",
    "locustfile",
    "access_log",
    "top",
    "allow_writes",
    "allow_errors",
    "health",
    "database_as_is",
)


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


def parse_project(a: argparse.Namespace) -> ProjectOptions | None:
    """The project options of ``a`` (None without ``--project``); ``UsageError`` (one line)
    for anything wrong with them."""
    if a.project is None:
        given = [name for name in PROJECT_ONLY if getattr(a, name) not in (None, False)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag}: belongs to --project PATH (your own Django project)")
        return None
    for key, what in BUILT_IN_ONLY.items():
        if getattr(a, key) not in (None, False):
            raise UsageError(f"--project: {what} does not apply")
    try:
        layout = find_project(Path(a.project), a.settings)
    except ProjectError as exc:
        raise UsageError(f"--project {a.project}: {exc}") from None
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
    health = a.health or DEFAULT_HEALTH
    if not health.startswith("/"):
        raise UsageError(f"--health {health}: a path starting with /")
    return ProjectOptions(
        layout=layout,
        settings=a.settings,
        wsgi=a.wsgi,
        asgi=a.asgi,
        requirements=Path(a.requirements) if a.requirements else None,
        traffic=traffic,
        files=files,
        allow_writes=bool(a.allow_writes),
        allow_errors=bool(a.allow_errors),
        database_as_is=bool(a.database_as_is),
        health=health,
    )


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
