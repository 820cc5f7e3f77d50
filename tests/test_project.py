"""A user's own Django project: found from its folder, its settings from its manage.py.

Real projects made by ``django-admin startproject`` (the suite's Django) with a small app
of their own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runners.project.errors import ProjectError
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
