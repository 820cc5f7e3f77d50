"""A user's own Django project: found, inspected and served from a copy of its data.

Real projects made by ``django-admin startproject`` (the suite's Django) with a small app
of their own. The inspection runs the real probe; here with the suite's interpreter as
the project's environment (it has Django), while ``test_project_environment.py`` builds
real project environments. PostgreSQL (``TEST_DATABASE_URL``): a template database of the
test's own, cloned, checked and dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from runners.project.data import (
    SCRATCH_KIND,
    Isolation,
    drop_scratch,
    isolate,
    postgres_url,
    wrapper_source,
)
from runners.project.environment import (
    ProjectEnv,
    ServerPins,
    explain_failure,
    project_requirements,
)
from runners.project.errors import ProjectError
from runners.project.inspect import DatabaseFacts, ProjectFacts, inspect_project
from runners.project.layout import find_project
from runners.serving import ledger, supervisor

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")

needs_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="set TEST_DATABASE_URL (postgres://...) to clone a database"
)

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


def served(iso: Isolation, root: Path, python: str, code: str) -> str:
    """Run ``code`` with Django set up on the isolation's settings, as a server would."""
    done = subprocess.run(
        [python, "-B", "-c", "import django; django.setup()\n" + code],
        cwd=tempfile.gettempdir(),
        env={
            **os.environ,
            "PYTHONPATH": f"{iso.pythonpath}{os.pathsep}{root}",
            "DJANGO_SETTINGS_MODULE": iso.settings_module,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


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


def test_a_wsgi_module_that_forces_its_settings_is_not_isolated(
    project: Path, tmp_path: Path
) -> None:
    wsgi = project / "mysite" / "wsgi.py"
    wsgi.write_text(
        wsgi.read_text().replace(
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')",
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'mysite.settings'",
        )
    )
    (project / "mysite" / "local.py").write_text("from mysite.settings import *\n")
    facts = inspect_project(find_project(project, settings="mysite.local"), suite_env())
    assert facts.forced_settings == "mysite.settings"
    make_sqlite(project / "db.sqlite3", [])
    with pytest.raises(ProjectError) as excinfo, isolate(facts, tmp_path / "work"):
        pass
    assert "sets DJANGO_SETTINGS_MODULE to mysite.settings itself" in problem(excinfo)
    with isolate(facts, tmp_path / "work", as_is=True) as iso:
        assert iso.database.kind == "as-is"


# -- the data ----------------------------------------------------------------------------


def test_sqlite_is_served_from_a_copy_and_the_original_is_untouched(
    project: Path, tmp_path: Path
) -> None:
    database = project / "db.sqlite3"
    make_sqlite(database, ["first", "second"])
    (project / "db.sqlite3-wal").write_bytes(b"")  # a side file is copied with it
    original = database.read_bytes()
    before = fingerprint(project)
    facts = inspect_project(find_project(project), suite_env())
    work = tmp_path / "work"
    with isolate(facts, work) as iso:
        copy = Path(str(iso.database.scratch))
        assert iso.database == replace(iso.database, kind="copy", source=str(database))
        assert copy.parent == work and copy != database and copy.read_bytes() == original
        assert Path(f"{copy}-wal").exists()
        assert iso.pythonpath == work and iso.settings_module.startswith("bench_settings_")
        assert (work / f"{iso.settings_module}.py").is_file()
        out = served(
            iso,
            project,
            sys.executable,
            "import json\nfrom django.conf import settings\nfrom notes.models import Note\n"
            "Note.objects.create(title='written by a server')\n"
            "print(json.dumps([settings.DATABASES['default']['NAME'], "
            "settings.ALLOWED_HOSTS, Note.objects.count()]))",
        )
        assert json.loads(out) == [str(copy), ["127.0.0.1", "localhost", "[::1]"], 3]
    assert not copy.exists() and not Path(f"{copy}-wal").exists()
    assert database.read_bytes() == original
    assert fingerprint(project) == before


def test_allowed_hosts_keep_the_projects_own(tmp_path: Path) -> None:
    text = wrapper_source("mysite.settings", {"NAME": "/x.sqlite3"})
    scope: dict[str, object] = {}
    fake = tmp_path / "mysite"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "settings.py").write_text(
        "ALLOWED_HOSTS = ['example.com', 'localhost']\n"
        "DATABASES = {'default': {'ENGINE': 'x', 'NAME': 'theirs', 'USER': 'u'}, 'other': {}}\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        exec(compile(text, "wrapper", "exec"), scope)
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("mysite.settings", "mysite"):
            sys.modules.pop(name, None)
    assert scope["ALLOWED_HOSTS"] == ["example.com", "localhost", "127.0.0.1", "[::1]"]
    assert scope["DATABASES"] == {
        "default": {"ENGINE": "x", "NAME": "/x.sqlite3", "USER": "u"},
        "other": {},
    }


def facts_with(project: Path, engine: str, vendor: str, name: str) -> ProjectFacts:
    layout = find_project(project)
    return ProjectFacts(
        layout=layout,
        settings=layout.settings,
        wsgi="mysite.wsgi:application",
        asgi=None,
        database=DatabaseFacts(engine, vendor, name, "db.example", "3306", "app"),
        django="5.2",
        asgiref=None,
        git_commit=None,
        installed_hash="x",
        python=sys.executable,
        installed_apps=7,
    )


def test_other_engines_only_as_is(project: Path, tmp_path: Path) -> None:
    facts = facts_with(project, "django.db.backends.mysql", "mysql", "shop")
    with pytest.raises(ProjectError) as excinfo, isolate(facts, tmp_path / "work"):
        pass
    assert problem(excinfo) == (
        "the database engine django.db.backends.mysql is not copied by the suite: use "
        "--database-as-is to serve it unchanged"
    )
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
    with isolate(facts, tmp_path / "work", as_is=True) as iso:
        assert (iso.database.kind, iso.database.scratch) == ("as-is", None)
        text = (iso.pythonpath / f"{iso.settings_module}.py").read_text()
        assert "ALLOWED_HOSTS" in text and "DATABASES" not in text
    # A project without a database (DATABASES = {}: Django's dummy backend) has none to copy.
    facts = facts_with(project, "", "dummy", "")
    with isolate(facts, tmp_path / "work") as iso:
        assert (iso.database.kind, iso.database.source, iso.database.scratch) == (
            "none",
            None,
            None,
        )


def test_a_missing_sqlite_file_and_a_work_folder_inside_the_project(
    project: Path, tmp_path: Path
) -> None:
    facts = facts_with(project, "django.db.backends.sqlite3", "sqlite", str(project / "db.sqlite3"))
    with pytest.raises(ProjectError) as excinfo, isolate(facts, tmp_path / "work"):
        pass
    assert "does not exist: run the project's migrate first" in problem(excinfo)
    with pytest.raises(ProjectError) as excinfo, isolate(facts, project / ".data"):
        pass
    assert "is inside the project" in problem(excinfo)
    assert not (project / ".data").exists()


# -- PostgreSQL ------------------------------------------------------------------------

SECRET = "not-shown-7f3a9c"


@pytest.fixture
def template_db() -> Iterator[str]:
    """A database of the test's own with the notes table and three rows."""
    name = f"bench_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres_url({k: str(v) for k, v in conninfo_to_dict(TEST_DATABASE_URL).items()}, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes_note (id bigserial PRIMARY KEY, title varchar(100))")
        conn.execute("INSERT INTO notes_note (title) VALUES ('a'), ('b'), ('c')")
    try:
        yield name
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def databases() -> set[str]:
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


@pytest.fixture
def pg_project(project: Path, template_db: str) -> ProjectFacts:
    server = conninfo_to_dict(TEST_DATABASE_URL)
    password = server.get("password") or SECRET
    append_settings(
        project,
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', "
        f"'NAME': {template_db!r}, 'HOST': {server.get('host', '')!r}, "
        f"'PORT': {str(server.get('port', ''))!r}, 'USER': {server.get('user', '')!r}, "
        f"'PASSWORD': {password!r}}}}}",
    )
    return inspect_project(find_project(project), suite_env())


@needs_postgres
def test_postgres_is_served_from_a_clone_dropped_at_the_end(
    pg_project: ProjectFacts, template_db: str, tmp_path: Path
) -> None:
    facts = pg_project
    assert facts.database.vendor == "postgresql" and facts.database.name == template_db
    work = tmp_path / "work"
    with ledger.active(tmp_path / "running") as book, isolate(facts, work) as iso:
        scratch = str(iso.database.scratch)
        assert scratch.startswith(f"bench_scratch_{template_db}_")
        assert scratch in databases()
        assert iso.database.kind == "clone"
        assert iso.database.source is not None and template_db in iso.database.source
        listed = json.loads(book.path.read_text())["resources"]
        assert [r["kind"] for r in listed] == [SCRATCH_KIND]
        assert scratch in listed[0]["ident"]
        out = served(
            iso,
            facts.layout.root,
            sys.executable,
            "from django.db import connection\nfrom notes.models import Note\n"
            "Note.objects.create(title='d')\n"
            "print(connection.settings_dict['NAME'], Note.objects.count())",
        )
        assert out == f"{scratch} 4"
        # Nothing shows the password: the facts, the record, the ledger, the settings module.
        shown = [repr(facts), repr(iso), book.path.read_text()]
        shown.append((work / f"{iso.settings_module}.py").read_text())
        assert not any(SECRET in text for text in shown)
        assert json.loads(book.path.read_text())["resources"]
    assert scratch not in databases()
    assert not book.path.exists()  # released: nothing left listed
    # The template kept its three rows: the server wrote to the clone.
    url = postgres_url(
        {k: str(v) for k, v in conninfo_to_dict(TEST_DATABASE_URL).items()}, template_db
    )
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM notes_note").fetchone() == (3,)


@needs_postgres
def test_postgres_clone_is_dropped_after_an_exception(
    pg_project: ProjectFacts, tmp_path: Path
) -> None:
    scratch = ""
    with pytest.raises(KeyboardInterrupt), isolate(pg_project, tmp_path / "work") as iso:
        scratch = str(iso.database.scratch)
        assert scratch in databases()
        raise KeyboardInterrupt
    assert scratch and scratch not in databases()


@needs_postgres
@pytest.mark.slow  # PostgreSQL waits 5 s for the template's other sessions to leave
def test_a_template_in_use_is_one_line(
    pg_project: ProjectFacts, template_db: str, tmp_path: Path
) -> None:
    url = postgres_url(
        {k: str(v) for k, v in conninfo_to_dict(TEST_DATABASE_URL).items()}, template_db
    )
    before = databases()
    with (
        psycopg.connect(url),
        pytest.raises(ProjectError) as excinfo,
        isolate(pg_project, tmp_path / "work"),
    ):
        pass
    assert "other sessions are connected to it" in problem(excinfo)
    assert databases() == before


@needs_postgres
def test_a_killed_drivers_scratch_database_is_dropped_by_the_next_driver(
    template_db: str, tmp_path: Path
) -> None:
    scratch = f"bench_scratch_{template_db}_dead0001"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(scratch), sql.Identifier(template_db)
            )
        )
    server = {k: str(v) for k, v in conninfo_to_dict(TEST_DATABASE_URL).items() if k != "dbname"}
    ident = postgres_url(server, scratch)
    folder = tmp_path / "running"
    folder.mkdir()
    driver = {"name": "driver", "pid": 999_999_999, "create_time": 1.0, "cmdline": []}
    path = folder / "999999999.json"
    path.write_text(
        json.dumps(
            {
                "driver": driver,
                "processes": [],
                "resources": [{"kind": SCRATCH_KIND, "ident": ident}],
            }
        )
    )
    try:
        found = supervisor.stop_strays(folder)
        assert found == [f"{SCRATCH_KIND}: dropped the scratch database {scratch}"]
        assert scratch not in databases()
        assert not path.exists()
    finally:
        drop_scratch(ident)


def test_the_cleaner_drops_only_scratch_databases() -> None:
    with pytest.raises(RuntimeError, match="not a scratch database of the suite"):
        drop_scratch("postgresql://postgres@127.0.0.1:5432/test")
    assert ledger.CLEANERS[SCRATCH_KIND] is drop_scratch


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
