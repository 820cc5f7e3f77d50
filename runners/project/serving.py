"""A user's project as the servers serve it: its data isolated for as long as it is
served, and the ``Subject`` every server gets (``runners.serving.subject``).

Used by the bench driver, ``tox -e serve`` and ``tox -e ui`` alike: find the project
(``layout.find_project``), build its environment (``environment.project_environment``),
inspect it there (``inspect.inspect_project``), then ``serve_project`` inside an
``ExitStack``: a work folder under ``.data/projects/`` (in the driver's ledger, so that a
``kill -9`` leaves nothing the next command does not remove), the database copy or clone
and the settings wrapper in it (``data.isolate``).
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
from runners.project.environment import ProjectEnv
from runners.project.inspect import ProjectFacts
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
