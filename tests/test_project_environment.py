"""The project's own environment, built for real by uv (PyPI or uv's cache), and the
promise that nothing is written into the project while it is found, built, inspected
and served from a copy.

Each build takes a few seconds with a warm uv cache; the environments live in a
temporary ``BENCH_VENVS_DIR`` of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from runners.project.data import isolate
from runners.project.environment import (
    SERVERS,
    ProjectEnv,
    frozen_packages,
    installed_hash,
    project_environment,
)
from runners.project.errors import ProjectError
from runners.project.inspect import inspect_project
from runners.project.layout import find_project
from runners.runtimes.releases import locked_django, locked_versions
from runners.runtimes.venvs import MARKER, find_uv, uv_env
from tests.test_project import (
    copy_project,
    fingerprint,
    make_project,
    make_sqlite,
    problem,
    served,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# The modules the runners' command lines import (runners/serving/commands.py, registry.py).
SERVER_MODULES = (
    "gunicorn",
    "uvicorn",
    "uvloop",
    "httptools",
    "uvicorn_worker",
    "granian",
    "waitress",
    "hypercorn",
    "daphne",
    "pyuwsgi",
)


class Said(list[str]):
    def __call__(self, text: str) -> None:
        self.append(text)


@pytest.fixture(scope="module")
def startproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("template"))


@dataclass(frozen=True)
class Built:
    root: Path
    venvs: Path
    env: ProjectEnv
    before: str
    seconds: float
    said: list[str]


def build(root: Path, venvs: Path, say: Callable[[str], None]) -> tuple[ProjectEnv, float]:
    began = time.monotonic()
    env = project_environment(find_project(root), None, sys.executable, say, venvs=venvs)
    return env, time.monotonic() - began


@pytest.fixture(scope="module")
def built(startproject: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A project pinning Django 5.1 (the suite locks 5.2), with an SQLite database,
    fingerprinted before its environment is built."""
    root = copy_project(startproject, tmp_path_factory.mktemp("projects"))
    (root / "requirements.txt").write_text("django==5.1.*\n")
    make_sqlite(root / "db.sqlite3", ["one", "two"])
    before = fingerprint(root)
    said = Said()
    venvs = tmp_path_factory.mktemp("venvs")
    env, seconds = build(root, venvs, said)
    return Built(root, venvs, env, before, seconds, said)


def test_a_project_gets_its_own_django_release_and_the_servers(built: Built) -> None:
    env = built.env
    suites = locked_django()
    assert suites is not None and not suites.startswith("5.1")
    assert env.django.startswith("5.1.") and env.packages["django"] == env.django
    assert env.source == "requirements.txt"
    assert env.venv.parent == built.venvs and env.venv.name.startswith("project-mysite-")
    assert env.python == str(env.venv / "bin" / "python")
    locked = locked_versions()
    for name, _ in SERVERS:
        assert env.packages[name] == locked[name], name
    done = subprocess.run(
        [
            env.python,
            "-c",
            f"import {', '.join(SERVER_MODULES)}; import django; print(django.get_version())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == env.django
    # installed_hash is the installed set's, as uv lists it now.
    packages = frozen_packages(find_uv(), env.python, built.venvs)
    assert packages == env.packages
    assert env.installed_hash == installed_hash(packages)
    assert env.asgiref == packages["asgiref"]
    assert any(line.startswith("Built project-mysite-") for line in built.said)
    print(f"first build: {built.seconds:.1f}s")


def test_the_environment_is_reused_while_its_files_are_unchanged(built: Built) -> None:
    marker = json.loads((built.env.venv / MARKER).read_text())
    said = Said()
    env, seconds = build(built.root, built.venvs, said)
    print(f"second (reused) build: {seconds:.2f}s")
    assert env == built.env
    assert said == []
    assert json.loads((built.env.venv / MARKER).read_text()) == marker
    assert seconds < 2.0


def test_a_changed_dependency_file_rebuilds_and_none_means_only_django(
    startproject: Path, tmp_path: Path
) -> None:
    root = copy_project(startproject, tmp_path)
    said = Said()
    env, _ = build(root, tmp_path / "venvs", said)
    assert env.django == locked_django()
    assert env.source == "no dependency file"
    assert any("installing only Django" in line for line in said)
    (root / "requirements.txt").write_text("django==5.1.*\nsqlparse==0.5.3\n")
    said.clear()
    rebuilt, _ = build(root, tmp_path / "venvs", said)
    assert rebuilt.venv == env.venv
    assert rebuilt.django.startswith("5.1.") and rebuilt.packages["sqlparse"] == "0.5.3"
    assert rebuilt.installed_hash != env.installed_hash
    assert any(line.startswith("Building") for line in said)


def test_a_conflicting_pin_is_one_line_naming_both_sides(
    startproject: Path, tmp_path: Path
) -> None:
    root = copy_project(startproject, tmp_path)
    # Django 3.2 takes asgiref 3.4; the suite's daphne needs 3.5.2 or newer.
    (root / "requirements.txt").write_text("django==3.2.*\nasgiref==3.4.1\n")
    venvs = tmp_path / "venvs"
    with pytest.raises(ProjectError) as excinfo:
        build(root, venvs, Said())
    daphne = locked_versions()["daphne"]
    assert problem(excinfo) == (
        f"the project pins asgiref==3.4.1 but daphne {daphne} (the suite's server) needs "
        "asgiref>=3.5.2"
    )
    assert [p.name for p in venvs.iterdir() if not p.name.startswith(".")] == []


def test_a_server_the_project_pins_is_the_suites_release(
    startproject: Path, tmp_path: Path
) -> None:
    root = copy_project(startproject, tmp_path)
    (root / "requirements.txt").write_text("django==5.1.*\ngunicorn==21.2.0\n")
    said = Said()
    env, _ = build(root, tmp_path / "venvs", said)
    gunicorn = locked_versions()["gunicorn"]
    assert env.packages["gunicorn"] == gunicorn
    assert (
        f"the project asks for gunicorn==21.2.0; the suite serves its own gunicorn {gunicorn} "
        "(the runners' command lines are written for it)"
    ) in said


def test_nothing_is_written_into_the_project(built: Built, tmp_path: Path) -> None:
    """Found, built (the fixture), inspected with its own environment and served from a
    copy: the project's folder is as it was, byte for byte."""
    layout = find_project(built.root)
    facts = inspect_project(layout, built.env)
    assert facts.django == built.env.django
    assert facts.installed_hash == built.env.installed_hash
    assert facts.python == built.env.python
    with isolate(facts, tmp_path / "work") as iso:
        out = served(
            iso,
            built.root,
            built.env.python,
            "from notes.models import Note\nNote.objects.create(title='three')\n"
            "print(Note.objects.count())",
        )
        assert out == "3"
    assert fingerprint(built.root) == built.before
    assert not (built.root / ".venv").exists() and not (built.root / "uv.lock").exists()


def test_a_uv_lock_is_exported_without_touching_the_project(
    startproject: Path, tmp_path: Path
) -> None:
    root = copy_project(startproject, tmp_path)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "mysite"\nversion = "1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["django==5.1.*"]\n\n[dependency-groups]\ndev = ["pytest"]\n'
    )
    env_vars = {**uv_env(), "UV_PROJECT_ENVIRONMENT": str(tmp_path / "unused")}
    subprocess.run([find_uv(), "lock", "-q"], cwd=root, env=env_vars, check=True)
    locked = [
        p
        for p in root.joinpath("uv.lock").read_text().split("[[package]]")
        if 'name = "django"' in p
    ]
    assert locked and 'version = "5.1.' in locked[0]
    before = fingerprint(root)
    env, _ = build(root, tmp_path / "venvs", Said())
    assert env.source == "uv.lock"
    assert env.django.startswith("5.1.") and f'version = "{env.django}"' in locked[0]
    assert "pytest" not in env.packages  # the dev group is not the project's to serve
    assert fingerprint(root) == before
    assert not (root / ".venv").exists()
