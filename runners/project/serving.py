"""A user's project as the servers serve it: its data isolated for as long as it is
served, and the ``Subject`` every server gets (``runners.serving.subject``).

Used by the bench driver, ``tox -e serve`` and ``tox -e ui`` alike: find the project
(``layout.find_project``), build its environment (``environment.project_environment``),
inspect it there (``inspect.inspect_project``), then ``serve_project`` inside an
``ExitStack``: a work folder under ``.data/projects/`` (in the driver's ledger, so that a
``kill -9`` leaves nothing the next command does not remove), the database copy or clone
and the settings wrapper in it (``data.isolate``). ``serve_target`` does all of it for
the one interpreter of ``tox -e serve`` and ``tox -e ui`` (``options.ProjectTarget``);
``ServedProject.describe`` is what their banners say of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runners import REPO_ROOT
from runners.project.data import Isolation, isolate
from runners.project.environment import ProjectEnv, project_environment
from runners.project.inspect import ProjectFacts, inspect_project
from runners.project.options import ProjectTarget
from runners.serving import ledger
from runners.serving.subject import PROJECT_ASGI_APP, Subject

PROJECTS_DIR = REPO_ROOT / ".data" / "projects"
"""Where a project's database copy and settings wrapper live while it is served."""
WORK_KIND = "project-work"


def remove_work(ident: str) -> str | None:
    """Remove a project's work folder (the ledger's cleaner of ``WORK_KIND``); only a
    folder of ``PROJECTS_DIR``."""
    folder = Path(ident)
    if folder.parent != PROJECTS_DIR:
        raise RuntimeError(f"{folder} is not a project work folder")
    if not folder.exists():
        return None
    shutil.rmtree(folder)
    return f"removed {folder}"


ledger.register_cleaner(WORK_KIND, remove_work)


@dataclass(frozen=True)
class ServedProject:
    """A project as the invocation serves it."""

    facts: ProjectFacts
    env: ProjectEnv
    isolation: Isolation
    subject: Subject

    def describe(self, interface: str) -> list[str]:
        """What a server of ``interface`` serves, for a banner: the project, its app,
        its environment and where its database is."""
        facts, subject = self.facts, self.subject
        if interface == "asgi" and subject.asgi_built:
            app = "Django's get_asgi_application() (built by the suite: it has no ASGI entry)"
        else:
            app = f"{interface.upper()} {subject.app(interface)}"
        return [
            f"  project:  {facts.layout.name} ({facts.layout.root}), settings {facts.settings}",
            f"  app:      {app}",
            f"  python:   {self.env.python} (Django {facts.django}; dependencies: "
            f"{self.env.source})",
            f"  database: {describe_database(self.isolation)}",
        ]


def describe_database(isolation: Isolation) -> str:
    """Where the servers' database is, and what becomes of it."""
    db = isolation.database
    if db.kind == "copy":
        return f"a copy of {db.source} at {db.scratch} (removed at the end)"
    if db.kind == "clone":
        return f"a clone of {db.source}, {db.scratch} (dropped at the end)"
    if db.kind == "as-is":
        return f"{db.source or db.engine} as it is (requests that write change it)"
    return "none"


def serve_project(
    env: ProjectEnv,
    facts: ProjectFacts,
    stack: contextlib.ExitStack,
    say: Callable[[str], None],
    *,
    as_is: bool = False,
    health: str = "/",
) -> ServedProject:
    """Isolate the project's data while ``stack`` lasts (``facts``: what its inspection
    found); ``ProjectError`` (one line) before anything is copied when it cannot be."""
    work = PROJECTS_DIR / f"{facts.layout.name}-{os.getpid()}"
    # Removed at the end (also by the next driver, after a kill -9: the ledger).
    resource = ledger.Resource(WORK_KIND, str(work))
    ledger.acquired(resource)
    stack.callback(ledger.released, resource)
    stack.callback(remove_work, str(work))
    isolation = stack.enter_context(isolate(facts, work, as_is, say))
    subject = Subject(
        name=facts.layout.name,
        wsgi=facts.wsgi,
        asgi=facts.asgi or PROJECT_ASGI_APP,
        asgi_built=facts.asgi is None,
        settings=isolation.settings_module,
        pythonpath=(str(isolation.pythonpath), str(facts.layout.root)),
        app_root=str(facts.layout.root),
        health=health,
        ready_below=500,
    )
    return ServedProject(facts, env, isolation, subject)


def serve_target(
    target: ProjectTarget,
    python: str,
    stack: contextlib.ExitStack,
    say: Callable[[str], None],
) -> ServedProject:
    """``target``'s environment on ``python`` (built or reused), inspected there, its data
    isolated while ``stack`` lasts; ``ProjectError`` (one line) when it cannot be served."""
    layout = target.layout
    say(f"Project environment for {layout.name} (built once, then reused)...")
    env = project_environment(layout, target.requirements, python, say)
    facts = inspect_project(layout, env, target.settings, target.wsgi, target.asgi)
    say(f"Isolating the project's database ({facts.database.engine or 'none'})...")
    return serve_project(env, facts, stack, say, as_is=target.database_as_is, health=target.health)
