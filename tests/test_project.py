"""A user's own Django project: found from its folder, its settings from its manage.py,
its dependencies read as uv will install them, what it serves as its interpreter sees it.

Real projects made by ``django-admin startproject`` (the suite's Django) with a small app
of their own. The inspection runs the real probe; here with the suite's interpreter as
the project's environment (it has Django), while ``test_project_environment.py`` builds
real project environments.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runners.project.environment import (
    ProjectEnv,
    ServerPins,
    explain_failure,
    project_requirements,
)
from runners.project.errors import ProjectError
from runners.project.inspect import DatabaseFacts, inspect_project
from runners.project.layout import find_project

NOTES_APP = {
    "__init__.py": "",
    "apps.py": (
        "from django.apps import AppConfig\n\n\n"
        "class NotesConfig(AppConfig):\n"
        '    name = "notes"\n'
        '    default_auto_field = "django.db.models.BigAutoField"\n'
    ),
    "models.py": (
        "from django.db import models\n\n\n"
        "class Note(models.Model):\n"
        "    title = models.CharField(max_length=100)\n"
    ),
    "migrations/__init__.py": "",
    "migrations/0001_initial.py": (
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    initial = True\n"
        "    dependencies = []\n"
        "    operations = [\n"
        "        migrations.CreateModel(\n"
        '            name="Note",\n'
        "            fields=[\n"
        '                ("id", models.BigAutoField(auto_created=True, primary_key=True)),\n'
        '                ("title", models.CharField(max_length=100)),\n'
        "            ],\n"
        "        ),\n"
        "    ]\n"
    ),
}


# -- making projects ---------------------------------------------------------------------


def make_project(folder: Path) -> Path:
    """``django-admin startproject mysite`` in ``folder/mysite``, with the app ``notes``."""
    root = folder / "mysite"
    root.mkdir(parents=True)
    # From an empty folder: startproject refuses a name that is importable from the cwd.
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run(
            [sys.executable, "-m", "django", "startproject", "mysite", str(root)],
            cwd=cwd,
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    for rel, text in NOTES_APP.items():
        path = root / "notes" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    settings = root / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + '\nINSTALLED_APPS = [*INSTALLED_APPS, "notes"]\n')
    return root


@pytest.fixture(scope="module")
def startproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project every test of the module copies (made once)."""
    return make_project(tmp_path_factory.mktemp("template"))


def copy_project(template: Path, folder: Path, name: str = "mysite") -> Path:
    root = folder / name
    shutil.copytree(template, root)
    return root


@pytest.fixture
def project(startproject: Path, tmp_path: Path) -> Path:
    return copy_project(startproject, tmp_path / "projects")


def append_settings(root: Path, text: str, module: str = "mysite/settings.py") -> None:
    path = root / module
    path.write_text(path.read_text() + "\n" + text + "\n")


def make_sqlite(path: Path, titles: list[str]) -> None:
    """The notes app's table, as its migration makes it, with rows."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE notes_note (id integer PRIMARY KEY AUTOINCREMENT, "
            "title varchar(100) NOT NULL)"
        )
        conn.executemany("INSERT INTO notes_note (title) VALUES (?)", [(t,) for t in titles])
    conn.close()


def suite_env() -> ProjectEnv:
    """The suite's own interpreter standing in for a project environment (it has Django)."""
    return ProjectEnv(
        python=sys.executable,
        venv=Path(sys.prefix),
        django="",
        asgiref=None,
        installed_hash="suite",
        packages={},
        source="the suite's own",
    )


def fingerprint(root: Path) -> str:
    """Every path under ``root`` with its content: equal before and after means nothing
    was written, created or removed there."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def problem(excinfo: pytest.ExceptionInfo[ProjectError]) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    return text


# -- finding a project: one line for bad input -------------------------------------------


def test_a_path_that_is_not_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "manage.py"
    file.write_text("")
    with pytest.raises(ProjectError) as excinfo:
        find_project(file)
    assert (
        problem(excinfo) == f"{file} is a file, not a folder (give the folder that holds manage.py)"
    )
    with pytest.raises(ProjectError) as excinfo:
        find_project(tmp_path / "missing")
    assert "no such folder" in problem(excinfo)


def test_a_folder_without_manage_py_or_settings(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProjectError) as excinfo:
        find_project(empty)
    assert problem(excinfo).startswith(f"{empty} is not a Django project: no manage.py in it")
    # A repository whose project sits one folder down is pointed there.
    with pytest.raises(ProjectError) as excinfo:
        find_project(project.parent)
    assert f"found mysite/manage.py: give {project}" in problem(excinfo)
    # A manage.py that sets no settings module.
    (project / "manage.py").write_text("import sys\nprint(sys.argv)\n")
    with pytest.raises(ProjectError) as excinfo:
        find_project(project)
    assert "does not set DJANGO_SETTINGS_MODULE (give --settings MODULE)" in problem(excinfo)


def test_an_unknown_settings_module(project: Path) -> None:
    with pytest.raises(ProjectError) as excinfo:
        find_project(project, settings="mysite.production")
    assert problem(excinfo) == (
        f"{project} is not a Django project: its settings module mysite.production (from "
        "--settings) is not there (looked for mysite/production.py or "
        "mysite/production/__init__.py)"
    )
    with pytest.raises(ProjectError) as excinfo:
        find_project(project, settings="mysite/settings.py")
    assert "is not a module name like mysite.settings" in problem(excinfo)


def test_settings_come_from_manage_py_read_never_run(project: Path) -> None:
    (project / "mysite" / "config.py").write_text("from .settings import *\n")
    manage = project / "manage.py"
    text = manage.read_text().replace("'mysite.settings'", "'mysite.config'")
    assert "'mysite.config'" in text
    # Were manage.py executed, this would end the test run.
    manage.write_text("raise SystemExit('executed')\n" + text)
    layout = find_project(project)
    assert (layout.root, layout.name, layout.settings, layout.package) == (
        project,
        "mysite",
        "mysite.config",
        "mysite",
    )
    assert layout.manage_py == manage
    # An assignment instead of setdefault, through ``from os import environ``.
    manage.write_text(
        "from os import environ\nenviron['DJANGO_SETTINGS_MODULE'] = 'mysite.settings'\n"
    )
    assert find_project(project).settings == "mysite.settings"


def test_settings_option_overrides_manage_py(project: Path) -> None:
    package = project / "mysite" / "conf"
    package.mkdir()
    (package / "__init__.py").write_text("from mysite.settings import *\nDEBUG = False\n")
    layout = find_project(project, settings="mysite.conf")
    assert layout.settings == "mysite.conf"
    # Without manage.py, --settings alone names the project.
    (project / "manage.py").unlink()
    assert find_project(project, settings="mysite.conf").manage_py is None


# -- inspecting it ---------------------------------------------------------------------


def test_settings_that_raise_show_the_exceptions_last_line(project: Path) -> None:
    append_settings(project, "import foo_not_installed")
    with pytest.raises(ProjectError) as excinfo:
        inspect_project(find_project(project), suite_env())
    assert problem(excinfo) == (
        "settings mysite.settings: ModuleNotFoundError: No module named 'foo_not_installed'"
    )


def test_a_missing_wsgi_callable(project: Path) -> None:
    layout = find_project(project)
    with pytest.raises(ProjectError) as excinfo:
        inspect_project(layout, suite_env(), wsgi="mysite.wsgi:app")
    assert problem(excinfo) == (
        "no WSGI callable: mysite.wsgi:app: AttributeError: module 'mysite.wsgi' has no "
        "attribute 'app' (give --wsgi MODULE:ATTR)"
    )
    append_settings(project, "WSGI_APPLICATION = None")
    (project / "mysite" / "wsgi.py").unlink()
    with pytest.raises(ProjectError) as excinfo:
        inspect_project(layout, suite_env())
    assert problem(excinfo) == (
        "no WSGI callable: mysite.settings has no WSGI_APPLICATION and there is no "
        "mysite.wsgi module (give --wsgi MODULE:ATTR)"
    )


def test_entry_points_and_database_from_settings(project: Path) -> None:
    """WSGI_APPLICATION and ASGI_APPLICATION (dotted) win over the modules' defaults."""
    (project / "mysite" / "entry.py").write_text(
        "from django.core.asgi import get_asgi_application\n"
        "from django.core.wsgi import get_wsgi_application\n"
        "wsgi_app = get_wsgi_application()\n"
        "asgi_app = get_asgi_application()\n"
    )
    append_settings(
        project,
        'WSGI_APPLICATION = "mysite.entry.wsgi_app"\nASGI_APPLICATION = "mysite.entry.asgi_app"',
    )
    layout = find_project(project)
    facts = inspect_project(layout, suite_env())
    assert (facts.wsgi, facts.asgi) == ("mysite.entry:wsgi_app", "mysite.entry:asgi_app")
    assert facts.settings == "mysite.settings"
    assert facts.database == DatabaseFacts(
        engine="django.db.backends.sqlite3",
        vendor="sqlite",
        name=str(project / "db.sqlite3"),
        host=None,
        port=None,
        user=None,
    )
    import django

    assert facts.django == django.get_version()
    assert facts.asgiref is not None
    assert facts.installed_apps == 7  # startproject's six and notes
    assert facts.git_commit is None
    assert facts.installed_hash == "suite"
    # The options override the settings.
    facts = inspect_project(
        layout, suite_env(), wsgi="mysite.wsgi:application", asgi="mysite.asgi.application"
    )
    assert (facts.wsgi, facts.asgi) == ("mysite.wsgi:application", "mysite.asgi:application")
    # The probe opened no database: the SQLite file it names was not created.
    assert not (project / "db.sqlite3").exists()


def test_without_asgi_py_asgi_is_none(project: Path) -> None:
    (project / "mysite" / "asgi.py").unlink()
    facts = inspect_project(find_project(project), suite_env())
    assert facts.wsgi == "mysite.wsgi:application"
    assert facts.asgi is None


def test_the_git_commit_is_recorded(project: Path) -> None:
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    before = fingerprint(project)
    facts = inspect_project(find_project(project), suite_env())
    assert facts.git_commit == head
    assert fingerprint(project) == before


def test_a_project_that_queries_while_imported_is_refused(project: Path) -> None:
    """The probe never reaches the real database, even when the project tries."""
    make_sqlite(project / "db.sqlite3", ["kept"])
    wsgi = project / "mysite" / "wsgi.py"
    wsgi.write_text(
        wsgi.read_text() + "\nfrom notes.models import Note\nNOTES = Note.objects.count()\n"
    )
    before = (project / "db.sqlite3").read_bytes()
    with pytest.raises(ProjectError) as excinfo:
        inspect_project(find_project(project), suite_env())
    assert problem(excinfo).startswith(
        "importing mysite.wsgi:application opens a database connection (the database "
        "'default'); the suite inspects a project without touching its database"
    )
    assert (project / "db.sqlite3").read_bytes() == before


# -- the project's requirements, read --------------------------------------------------


def test_requirements_files_are_read_as_uv_will_with_the_project_left_out(
    project: Path, tmp_path: Path
) -> None:
    (project / "requirements").mkdir()
    (project / "requirements" / "base.txt").write_text(
        "Django==5.1.*  # the framework\npsycopg[binary]>=3.2 ; python_version >= '3.10'\n"
        "-c constraints.txt\n"
    )
    (project / "requirements.txt").write_text(
        "-r requirements/base.txt\n-e .\n./vendored/lib\n"
        f"-e {tmp_path / 'elsewhere'}\nrequests \\\n  ==2.32.3\n"
    )
    wanted = project_requirements(project, None)
    assert wanted.kind == "requirements.txt"
    assert wanted.lines == (
        "Django==5.1.*",
        "psycopg[binary]>=3.2 ; python_version >= '3.10'",
        f"-c {project / 'requirements' / 'constraints.txt'}",
        f"-e {tmp_path / 'elsewhere'}",
        "requests ==2.32.3",
    )
    assert wanted.skipped == ("-e .", "./vendored/lib")
    assert set(wanted.pins) == {"django", "psycopg", "requests"}
    # The order: --requirements, then uv.lock, then pyproject.toml, then requirements.txt.
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['django<6']\n")
    assert project_requirements(project, None).lines == ("django<6",)
    (project / "pyproject.toml").write_text("[tool.ruff]\nline-length = 99\n")
    assert project_requirements(project, None).kind == "requirements.txt"
    (project / "uv.lock").write_text("version = 1\n")
    assert project_requirements(project, None).kind == "uv.lock"
    given = tmp_path / "prod.txt"
    given.write_text("django==4.2.*\n")
    assert project_requirements(project, given).lines == ("django==4.2.*",)
    with pytest.raises(ProjectError) as excinfo:
        project_requirements(project, tmp_path / "nope.txt")
    assert problem(excinfo) == f"--requirements {tmp_path / 'nope.txt'}: no such file"


UV_CONFLICTS = {
    # What uv 0.13 printed for these pins beside the suite's servers (dry runs).
    "asgiref": (
        "error: No solution found when resolving dependencies\n  cause: Because "
        "daphne>=4.2.3 depends on asgiref>=3.5.2 and you require asgiref==3.4.1, we can "
        "conclude that your requirements and daphne>=4.2.3 are incompatible.\n         And "
        "because you require daphne==4.2.3, we can conclude that your requirements are "
        "unsatisfiable.\n"
    ),
    "django": (
        "  × No solution found when resolving dependencies:\n  ╰─▶ Because django==5.2.19 "
        "depends on asgiref>=3.8.1 and you require asgiref<3.6, we can conclude that your "
        "requirements and django==5.2.19 are incompatible.\n"
    ),
    "reverse": (
        "error: No solution found when resolving dependencies\n  cause: Because "
        "channels==3.0.5 depends on daphne>=3.0,<4 and you require channels==3.0.5, we can "
        "conclude that your requirements and daphne==4.2.3 are incompatible.\n"
    ),
    "other": (
        "error: No solution found when resolving dependencies\n  cause: Because "
        "nosuch-pkg was not found in the package registry and you require nosuch-pkg==1.0, "
        "we can conclude that your requirements are unsatisfiable.\n"
    ),
}


def test_uvs_conflicts_become_one_line_naming_both_sides() -> None:
    servers = ServerPins(
        requirements=(),
        overrides=(),
        constraints=(),
        versions={"daphne": "4.2.3", "uvicorn": "0.54.0"},
        added_django="5.2.19",
    )
    pins = {"asgiref": "asgiref==3.4.1", "channels": "channels==3.0.5"}
    assert explain_failure(UV_CONFLICTS["asgiref"], pins, servers) == (
        "the project pins asgiref==3.4.1 but daphne 4.2.3 (the suite's server) needs asgiref>=3.5.2"
    )
    assert explain_failure(UV_CONFLICTS["django"], {"asgiref": "asgiref<3.6"}, servers) == (
        "the project pins asgiref<3.6 but Django 5.2.19 (the suite's release: the project "
        "names no Django) needs asgiref>=3.8.1"
    )
    assert explain_failure(UV_CONFLICTS["reverse"], pins, servers) == (
        "the project's channels==3.0.5 needs daphne>=3.0,<4 but the suite serves daphne 4.2.3"
    )
    assert explain_failure(UV_CONFLICTS["other"], {}, servers) == (
        "uv cannot install the project's requirements: nosuch-pkg was not found in the "
        "package registry and you require nosuch-pkg==1.0"
    )
