"""The user's data is safe: the servers run against a copy of the project's database.

``isolate(facts, work_dir, as_is=False)``
    A context manager yielding ``Isolation``: a settings module of the suite's
    (``bench_settings_<hash>``, written into ``work_dir``, under ``.data/``: never into
    the project) that imports the project's settings, points ``DATABASES["default"]`` at
    the copy, and adds ``127.0.0.1``, ``localhost`` and ``[::1]`` to ``ALLOWED_HOSTS``
    (theirs are kept). The servers run with ``DJANGO_SETTINGS_MODULE`` set to it and
    ``Isolation.pythonpath`` before the project's folder on ``PYTHONPATH``.

    - SQLite: the file (and its ``-wal``, ``-shm`` and ``-journal`` side files, when
      present) is copied into ``work_dir`` and served from the copy, removed at the end.
    - PostgreSQL: ``CREATE DATABASE bench_scratch_<name>_<random> TEMPLATE <theirs>``,
      dropped at the end (``DROP DATABASE ... WITH (FORCE)``), also after an exception or
      Ctrl-C. The scratch database is in the driver's ledger while it exists
      (``runners.serving.ledger``, kind ``postgres-scratch``): after a ``kill -9`` the
      next driver's ``stop_strays`` drops it with ``drop_scratch``, registered when this
      module is imported. The ledger holds a URL without the password; that cleaner
      authenticates the way libpq does by itself (``PGPASSWORD``, ``~/.pgpass``, a
      service file, trust or peer), so a scratch database behind a password found only
      in the project's settings stays listed until one of those can reach it.
    - ``as_is=True`` (``--database-as-is``), a database-less project, or an in-memory
      SQLite: nothing is copied; the settings module still adds the local hosts.
    - Any other engine: ``ProjectError`` unless ``as_is``.

    ``Isolation.database`` is the record of what was served: engine, kind (``copy``,
    ``clone``, ``as-is`` or ``none``), the source (a path, or a URL without password)
    and the scratch copy's path or database name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runners.project.errors import ProjectError
from runners.project.inspect import ProjectFacts, database_params
from runners.serving import ledger

SCRATCH_KIND = "postgres-scratch"

SCRATCH_PREFIX = "bench_scratch_"

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

# Databases to connect to while creating or dropping another (never the template:
# CREATE DATABASE ... TEMPLATE needs it without sessions).
MAINTENANCE_DATABASES = ("postgres", "template1")

CONNECT_TIMEOUT_S = 10

# PostgreSQL's identifiers are at most 63 bytes.
MAX_IDENTIFIER = 63

ServedKind = Literal["copy", "clone", "as-is", "none"]


@dataclass(frozen=True)
class ServedDatabase:
    """What the servers ran against, for the record: the ``engine``, the ``kind`` of
    isolation, the user's database (``source``: a path, or a URL without password) and
    the ``scratch`` copy's path or database name (None when it was served as it is)."""

    engine: str | None
    kind: ServedKind
    source: str | None
    scratch: str | None


@dataclass(frozen=True)
class Isolation:
    """The settings module to serve with, the folder to put first on ``PYTHONPATH`` for
    it (the project's folder after it), and what the database is."""

    settings_module: str
    pythonpath: Path
    database: ServedDatabase


@contextlib.contextmanager
def isolate(
    facts: ProjectFacts,
    work_dir: Path,
    as_is: bool = False,
    say: Callable[[str], None] = lambda text: None,
) -> Iterator[Isolation]:
    """Serve ``facts``' project from a copy of its database while the block runs (see the
    module's docstring). ``ProjectError`` (one line) before anything is copied when it
    cannot be."""
    work = Path(work_dir).resolve()
    root = facts.layout.root
    if work == root or root in work.parents:
        raise ProjectError(f"the work folder {work} is inside the project {root}")
    work.mkdir(parents=True, exist_ok=True)
    db = facts.database
    vendor = _vendor(facts)
    if vendor in (None, "dummy"):
        yield _isolation(facts, work, ServedDatabase(db.engine, "none", None, None), {})
        return
    if vendor == "sqlite" and _in_memory(db.name):
        yield _isolation(facts, work, ServedDatabase(db.engine, "as-is", db.name, None), {})
        return
    if vendor not in ("sqlite", "postgresql") and not as_is:
        raise ProjectError(
            f"the database engine {db.engine} is not copied by the suite: use "
            "--database-as-is to serve it unchanged"
        )
    if as_is:
        given = str(_sqlite_path(facts)) if vendor == "sqlite" else _source_without_secret(facts)
        yield _isolation(facts, work, ServedDatabase(db.engine, "as-is", given, None), {})
        return
    if facts.forced_settings is not None:
        raise ProjectError(
            f"{facts.wsgi.partition(':')[0]} sets DJANGO_SETTINGS_MODULE to "
            f"{facts.forced_settings} itself, so the servers would bypass the copy of the "
            "database: make it os.environ.setdefault(...), or use --database-as-is"
        )
    if vendor == "sqlite":
        with _sqlite_copy(facts, work) as (source, copy):
            served = ServedDatabase(db.engine, "copy", str(source), str(copy))
            yield _isolation(facts, work, served, {"NAME": str(copy)})
        return
    with _postgres_clone(facts, say) as (source, scratch):
        served = ServedDatabase(db.engine, "clone", source, scratch)
        yield _isolation(facts, work, served, {"NAME": scratch})


def _vendor(facts: ProjectFacts) -> str | None:
    db = facts.database
    if db.vendor:
        return db.vendor
    engine = db.engine or ""
    if not engine:
        return None
    if "sqlite" in engine:
        return "sqlite"
    if "postg" in engine:
        return "postgresql"
    return engine.rpartition(".")[2]


# -- the settings module ---------------------------------------------------------------


def _isolation(
    facts: ProjectFacts, work: Path, served: ServedDatabase, default: dict[str, str]
) -> Isolation:
    module = wrapper_name(facts, served)
    text = wrapper_source(facts.settings, default)
    target = work / f"{module}.py"
    fd, tmp = tempfile.mkstemp(prefix=f".{module}.", suffix=".tmp", dir=work)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    return Isolation(settings_module=module, pythonpath=work, database=served)


def wrapper_name(facts: ProjectFacts, served: ServedDatabase) -> str:
    """``bench_settings_<hash>``: a name no project module has, one per project, settings
    module and scratch copy."""
    key = "\0".join((str(facts.layout.root), facts.settings, served.kind, served.scratch or ""))
    return f"bench_settings_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def wrapper_source(settings: str, default: dict[str, str]) -> str:
    """The settings module: the project's, the local hosts allowed, and ``default``'s keys
    replacing those of ``DATABASES["default"]``."""
    lines = [
        '"""Written by the suite (runners/project/data.py): the project\'s settings as the',
        'benchmark serves them. Not part of the project."""',
        "",
        f"from {settings} import *  # noqa: F403",
        f"import {settings} as _project_settings",
        "",
        "_theirs = list(getattr(_project_settings, 'ALLOWED_HOSTS', []))",
        f"ALLOWED_HOSTS = _theirs + [h for h in {list(LOCAL_HOSTS)!r} if h not in _theirs]",
    ]
    if default:
        lines += [
            "DATABASES = {",
            "    **_project_settings.DATABASES,",
            f"    'default': {{**_project_settings.DATABASES['default'], **{default!r}}},",
            "}",
        ]
    return "\n".join(lines) + "\n"


# -- SQLite ----------------------------------------------------------------------------


def _in_memory(name: str | None) -> bool:
    return not name or name == ":memory:" or (name.startswith("file:") and "memory" in name)


def _sqlite_path(facts: ProjectFacts) -> Path:
    """The SQLite file (a relative ``NAME`` is taken from the project's folder)."""
    path = Path(facts.database.name or "").expanduser()
    return path if path.is_absolute() else facts.layout.root / path


@contextlib.contextmanager
def _sqlite_copy(facts: ProjectFacts, work: Path) -> Iterator[tuple[Path, Path]]:
    source = _sqlite_path(facts)
    if not source.is_file():
        raise ProjectError(
            f"the SQLite database {source} does not exist: run the project's migrate first, "
            "or use --database-as-is"
        )
    copy = work / f"{source.stem}-{secrets.token_hex(4)}{source.suffix or '.sqlite3'}"
    copies = [(source, copy)] + [
        (Path(f"{source}{side}"), Path(f"{copy}{side}")) for side in SQLITE_SIDE_FILES
    ]
    try:
        for original, duplicate in copies:
            if original.is_file():
                shutil.copyfile(original, duplicate)
        yield source, copy
    finally:
        for _, duplicate in copies:
            duplicate.unlink(missing_ok=True)


# -- PostgreSQL ----------------------------------------------------------------------------


def _libpq(params: dict[str, Any]) -> dict[str, str]:
    """The parameters libpq knows (Django's backend adds some of its own)."""
    known = {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()}
    return {k: str(v) for k, v in params.items() if k in known}


def postgres_url(params: dict[str, str], dbname: str) -> str:
    """``postgresql://user@host:port/dbname?sslmode=...``, never with a password."""
    user = params.get("user", "")
    host = params.get("host", "")
    shown_host = f"[{host}]" if ":" in host and not host.startswith("/") else quote(host, safe="")
    port = f":{params['port']}" if params.get("port") else ""
    auth = f"{quote(user, safe='')}@" if user else ""
    left_out = {"user", "host", "port", "dbname", "password", "client_encoding"}
    extra = sorted((k, v) for k, v in params.items() if k not in left_out)
    query = f"?{urlencode(extra)}" if extra else ""
    return f"postgresql://{auth}{shown_host}{port}/{quote(dbname, safe='')}{query}"


def _source_without_secret(facts: ProjectFacts) -> str:
    db = facts.database
    params = {k: v for k, v in (("user", db.user), ("host", db.host), ("port", db.port)) if v}
    return postgres_url(params, db.name or "")


def scratch_name(template: str) -> str:
    """``bench_scratch_<name>_<8 hex>``, within PostgreSQL's 63 bytes."""
    suffix = f"_{secrets.token_hex(4)}"
    room = MAX_IDENTIFIER - len(SCRATCH_PREFIX) - len(suffix)
    name = re.sub(r"[^a-z0-9_]+", "_", template.lower()).strip("_") or "db"
    return f"{SCRATCH_PREFIX}{name[:room]}{suffix}"


def _connect(params: dict[str, str]) -> psycopg.Connection[Any]:
    """An autocommit connection to a maintenance database of the server in ``params``."""
    first: psycopg.Error | None = None
    for dbname in MAINTENANCE_DATABASES:
        try:
            conninfo = make_conninfo("", **{**params, "dbname": dbname})
            return psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            first = first or exc
    assert first is not None
    raise first


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def _postgres_clone(facts: ProjectFacts, say: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    params = _libpq(database_params(facts))
    template = params.get("dbname") or facts.database.name or ""
    if not template:
        raise ProjectError(f"settings {facts.settings}: the PostgreSQL database has no NAME")
    source = postgres_url(params, template)
    scratch = scratch_name(template)
    server = {k: v for k, v in params.items() if k != "dbname"}
    resource = ledger.Resource(SCRATCH_KIND, postgres_url(server, scratch))
    ledger.acquired(resource)
    try:
        _create(server, scratch, template, source)
        yield source, scratch
    finally:
        try:
            _drop(server, scratch)
        except psycopg.Error as exc:
            say(
                f"could not drop the scratch database {scratch} now ({_one_line(exc)}); "
                "the next driver drops it"
            )
        else:
            ledger.released(resource)


def _create(server: dict[str, str], scratch: str, template: str, source: str) -> None:
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(scratch), sql.Identifier(template)
    )
    try:
        with _connect(server) as conn:
            conn.execute(statement)
    except psycopg.errors.ObjectInUse:
        raise ProjectError(
            f"cannot clone {source}: other sessions are connected to it, and PostgreSQL "
            "copies a template only while none is (stop the project's own servers and "
            "shells, or use --database-as-is)"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ProjectError(
            f"cannot clone {source}: {_one_line(exc)} (the user needs CREATEDB, or use "
            "--database-as-is)"
        ) from None
    except psycopg.Error as exc:
        raise ProjectError(f"cannot clone {source}: {_one_line(exc)}") from None


def _drop(server: dict[str, str], scratch: str) -> bool:
    """Drop ``scratch`` (only a scratch database of the suite); whether it existed."""
    if not scratch.startswith(SCRATCH_PREFIX):
        raise ValueError(f"{scratch} is not a scratch database of the suite")
    with _connect(server) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,))
        if found.fetchone() is None:
            return False
        name = sql.Identifier(scratch)
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        except psycopg.errors.SyntaxError:  # before PostgreSQL 13
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (scratch,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
    return True


def drop_scratch(ident: str) -> str | None:
    """The ledger's cleaner of ``postgres-scratch``: drop the scratch database the URL
    ``ident`` names (None when it was already gone). ``RuntimeError`` when it cannot now
    (it stays listed)."""
    try:
        params = conninfo_to_dict(ident)
    except psycopg.Error as exc:
        raise RuntimeError(f"not a database URL: {_one_line(exc)}") from None
    scratch = str(params.pop("dbname", "") or "")
    if not scratch.startswith(SCRATCH_PREFIX):
        raise RuntimeError(f"{scratch!r} is not a scratch database of the suite: left alone")
    try:
        existed = _drop({k: str(v) for k, v in params.items()}, scratch)
    except psycopg.Error as exc:
        raise RuntimeError(f"cannot drop {scratch}: {_one_line(exc)}") from None
    return f"dropped the scratch database {scratch}" if existed else None


ledger.register_cleaner(SCRATCH_KIND, drop_scratch)
