"""What a project is, asked of its own environment's interpreter.

``inspect_project(layout, env, settings=None, wsgi=None, asgi=None)``
    Runs ``probe.py`` with ``env.python`` (``-I -B``, from a temporary folder, the
    project's folder first on ``sys.path``, ``DJANGO_SETTINGS_MODULE`` set) and returns
    ``ProjectFacts``: the settings module, the WSGI and ASGI entry points as
    ``module:attribute`` (from ``--wsgi``/``--asgi``, else ``WSGI_APPLICATION`` /
    ``ASGI_APPLICATION``, else ``<package>.wsgi:application`` /
    ``<package>.asgi:application`` when that module exists; no ASGI entry is
    ``asgi=None``), the default database (never its password), Django's and asgiref's
    releases, the number of installed apps and the project's git commit. Settings that
    fail to import, a WSGI entry that is missing or not callable, an ASGI entry named but
    broken, a database backend that cannot load, or a project that opens a database
    connection while it is imported: ``ProjectError``, one line.

``database_params(facts)``
    The default database's connection parameters as the project's Django builds them,
    password included: for the clone of ``runners.project.data``, kept in memory and
    never written or printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.project import probe
from runners.project.environment import ProjectEnv
from runners.project.errors import ProjectError
from runners.project.layout import ProjectLayout
from runners.runtimes.interpreters import clean_env
from runners.runtimes.venvs import RuntimeSetupError, run_captured

PROBE = Path(probe.__file__).resolve()

PROBE_TIMEOUT_S = 180.0

GIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DatabaseFacts:
    """``DATABASES["default"]`` as the settings give it, without the password; ``vendor``
    is Django's name for its backend (``sqlite``, ``postgresql``, ``mysql``...)."""

    engine: str | None
    vendor: str | None
    name: str | None
    host: str | None
    port: str | None
    user: str | None


@dataclass(frozen=True)
class ProjectFacts:
    """A project ready to serve: where it is, what to serve and with what.

    ``wsgi``/``asgi`` are ``module:attribute`` targets (``asgi`` None: the project has
    none). ``python`` is its environment's interpreter and ``installed_hash`` that
    environment's package set. ``forced_settings`` is the settings module the WSGI or
    ASGI module writes into ``os.environ`` itself when it is not ``settings`` (the
    servers would then ignore a settings module given to them)."""

    layout: ProjectLayout
    settings: str
    wsgi: str
    asgi: str | None
    database: DatabaseFacts
    django: str
    asgiref: str | None
    git_commit: str | None
    installed_hash: str
    python: str
    installed_apps: int
    forced_settings: str | None = None


def inspect_project(
    layout: ProjectLayout,
    env: ProjectEnv,
    settings: str | None = None,
    wsgi: str | None = None,
    asgi: str | None = None,
) -> ProjectFacts:
    """What ``layout``'s project serves, as ``env``'s interpreter imports it."""
    module = settings or layout.settings
    package = module.split(".")[0]
    request = {
        "mode": "inspect",
        "root": str(layout.root),
        "settings": module,
        "package": package,
        "wsgi": wsgi,
        "asgi": asgi,
    }
    answer = run_probe(env.python, request)
    if "problem" in answer:
        raise ProjectError(_problem(answer, module, package))
    facts: dict[str, Any] = answer["facts"]
    db: dict[str, Any] = facts["database"]
    return ProjectFacts(
        layout=layout,
        settings=module,
        wsgi=str(facts["wsgi"]),
        asgi=facts["asgi"],
        database=DatabaseFacts(
            engine=db.get("engine"),
            vendor=db.get("vendor"),
            name=db.get("name"),
            host=db.get("host"),
            port=db.get("port"),
            user=db.get("user"),
        ),
        django=str(facts["django"]),
        asgiref=facts.get("asgiref"),
        git_commit=git_commit(layout.root),
        installed_hash=env.installed_hash,
        python=env.python,
        installed_apps=int(facts["installed_apps"]),
        forced_settings=facts.get("forced_settings"),
    )


def database_params(facts: ProjectFacts) -> dict[str, str | int]:
    """The default database's connection parameters, password included (keep them in
    memory: never print, log or write them)."""
    package = facts.settings.split(".")[0]
    request = {
        "mode": "connection",
        "root": str(facts.layout.root),
        "settings": facts.settings,
        "package": package,
    }
    answer = run_probe(facts.python, request)
    if "problem" in answer:
        raise ProjectError(_problem(answer, facts.settings, package))
    params: dict[str, str | int] = answer["params"]
    return params


def _problem(answer: dict[str, Any], settings: str, package: str) -> str:
    kind, detail, target = answer["problem"], answer.get("detail"), answer.get("target")
    if kind == "settings":
        return f"settings {settings}: {detail}"
    if kind == "backend":
        engine = f" {target}" if target else ""
        return (
            f"the database backend{engine} of {settings} cannot be loaded: {detail} "
            "(is its driver in the project's requirements?)"
        )
    if kind == "database":
        return (
            f"importing {target} opens a database connection ({detail}); the suite inspects "
            "a project without touching its database: make the import connection-free"
        )
    if kind == "wsgi" and target is None:
        return (
            f"no WSGI callable: {settings} has no WSGI_APPLICATION and there is no "
            f"{package}.wsgi module (give --wsgi MODULE:ATTR)"
        )
    label = "WSGI" if kind == "wsgi" else "ASGI"
    return f"no {label} callable: {target}: {detail} (give --{kind} MODULE:ATTR)"


def run_probe(python: str, request: dict[str, Any]) -> dict[str, Any]:
    """The probe's answer (``probe.py``): run from a temporary folder, isolated (``-I``:
    no ``PYTHONPATH``, no user site, and not the probe's own folder, whose ``inspect.py``
    would shadow the standard library's), writing no bytecode (``-B``)."""
    env = {**clean_env(), "DJANGO_SETTINGS_MODULE": str(request["settings"])}
    argv = [python, "-I", "-B", str(PROBE), json.dumps(request)]
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        try:
            done = run_captured(
                argv,
                f"inspecting {request['settings']} with {python}",
                timeout=PROBE_TIMEOUT_S,
                cwd=Path(tmp),
                env=env,
            )
        except RuntimeSetupError as exc:
            raise ProjectError(str(exc)) from None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(probe.MARK):
            answer: dict[str, Any] = json.loads(line[len(probe.MARK) :])
            return answer
    tail = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    reason = tail[-1] if tail else f"exit status {done.returncode}"
    raise ProjectError(f"the project's python {python} could not inspect it: {reason}")


def git_commit(root: Path) -> str | None:
    """``git rev-parse HEAD`` of the project (None when it is not in a repository or git
    is missing); git is asked not to take optional locks, so nothing is written."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None
