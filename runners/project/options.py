"""``--project PATH`` and the options that say how it is served, the same for ``tox -e
bench``, ``tox -e serve`` and ``tox -e ui``.

``add_project_options(group)``
    ``--project``, ``--settings``, ``--wsgi``, ``--asgi``, ``--requirements``,
    ``--health`` and ``--database-as-is`` on a parser (or one of its groups).
``project_target(a, built_in, project_only=())``
    The ``ProjectTarget`` they name (None without ``--project``), checked before anything
    starts: the folder is found (``layout.find_project``: read, never run) and every
    problem is a ``UsageError`` of one line. ``built_in`` names the command's options
    that belong to the built-in app (refused with ``--project``, each with the reason of
    ``BUILT_IN_OPTIONS``); ``project_only`` the command's other options that belong to
    ``--project`` (its traffic: refused without it, as the ones above are).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.cli.args import UsageError
from runners.project.errors import ProjectError
from runners.project.layout import ProjectLayout, find_project

DEFAULT_HEALTH = "/"

SERVING_OPTIONS = ("settings", "wsgi", "asgi", "requirements", "health", "database_as_is")
"""What says how the project is served: only with ``--project``."""

BUILT_IN_OPTIONS = {
    "workloads": "--workloads (a project's workloads are its traffic: --urls, --locustfile, "
    "--access-log)",
    "workload": "--workload (a project's traffic is --urls, --locustfile or --access-log)",
    "django": "--django (the project is served with its own Django)",
    "variant": "--variant (the built-in app's /sync/ and /async/ views)",
    "database": "--database (the project's database is its settings', copied or cloned)",
    "seed": "--seed (the built-in app's data)",
    "no_prepare": "--no-prepare (a project is never migrated or seeded by the suite)",
    "middleware": "--middleware (the project's settings say which it runs)",
    "upstream_ms": "--upstream-ms (the built-in app's upstream service)",
    "with_upstream": "--with-upstream (the built-in app's upstream service)",
    "agent": "--agent (a project is served on this host)",
    "micro": "--micro (the built-in app's request path)",
}
"""Options of the built-in app, and why each does not apply to a project."""


@dataclass(frozen=True)
class ProjectTarget:
    """The user's project and how it is served, as the command line gives it."""

    layout: ProjectLayout
    settings: str | None
    """``--settings`` (None: the one ``manage.py`` names, in ``layout``)."""
    wsgi: str | None
    asgi: str | None
    requirements: Path | None
    database_as_is: bool = False
    health: str = DEFAULT_HEALTH


def add_project_options(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--project",
        metavar="PATH",
        help="your Django project's folder (with manage.py): served from where it is, never "
        "written to",
    )
    g.add_argument("--settings", metavar="MOD", help="its settings module (default: manage.py's)")
    g.add_argument(
        "--wsgi", metavar="MOD:ATTR", help="its WSGI callable (default: WSGI_APPLICATION)"
    )
    g.add_argument(
        "--asgi",
        metavar="MOD:ATTR",
        help="its ASGI callable (default: ASGI_APPLICATION, or <package>.asgi; none: the "
        "suite builds Django's get_asgi_application() for it, and says so)",
    )
    g.add_argument(
        "--requirements",
        metavar="FILE",
        help="its dependencies (pip format; default: its uv.lock, pyproject.toml or "
        "requirements.txt), installed with the suite's servers into .data/venvs/",
    )
    g.add_argument(
        "--health", metavar="PATH", help="its readiness path (default /: any status below 500)"
    )
    g.add_argument(
        "--database-as-is",
        action="store_true",
        help="serve its database unchanged (default: an SQLite copy, a PostgreSQL clone)",
    )


def given(a: argparse.Namespace, name: str) -> bool:
    """Whether the option ``name`` (its ``dest``) was given: options that may belong to
    one subject only have None or False as their default."""
    return getattr(a, name) not in (None, False)


def project_target(
    a: argparse.Namespace, built_in: Sequence[str], project_only: Sequence[str] = ()
) -> ProjectTarget | None:
    """The project of ``a`` (None without ``--project``); ``UsageError`` (one line) for
    anything wrong with it, or with the options around it."""
    if a.project is None:
        extra = next((n for n in (*SERVING_OPTIONS, *project_only) if given(a, n)), None)
        if extra is not None:
            flag = "--" + extra.replace("_", "-")
            raise UsageError(f"{flag}: belongs to --project PATH (your own Django project)")
        return None
    for name in built_in:
        if given(a, name):
            raise UsageError(f"--project: {BUILT_IN_OPTIONS[name]} does not apply")
    try:
        layout = find_project(Path(a.project), a.settings)
    except ProjectError as exc:
        raise UsageError(f"--project {a.project}: {exc}") from None
    health = a.health or DEFAULT_HEALTH
    if not health.startswith("/"):
        raise UsageError(f"--health {health}: a path starting with /")
    return ProjectTarget(
        layout=layout,
        settings=a.settings,
        wsgi=a.wsgi,
        asgi=a.asgi,
        requirements=Path(a.requirements) if a.requirements else None,
        database_as_is=bool(a.database_as_is),
        health=health,
    )
