"""The probe: what a project is, as its own interpreter sees it.

Run as a script by the project environment's python (the suite imports it only for its
path and ``MARK``)::

    python -I -B probe.py '{"mode": "inspect", "root": ..., "settings": ..., ...}'

``-I`` keeps the user's ``PYTHONPATH`` and site packages out and ``-B`` writes no
``__pycache__`` into the project; the caller runs it from a temporary folder, and the
probe puts the project's folder first on ``sys.path`` and sets
``DJANGO_SETTINGS_MODULE``. It imports the settings, reads the entry points and the
default database, and imports the WSGI (and ASGI) application to check it is callable.
It opens no database connection: ``BaseDatabaseWrapper.connect`` raises inside the
probe, so a project that queries while it is imported is reported, not served from its
real database. Django's logging is not configured (a file handler would write into the
project).

Its answer is one line on stdout, ``@@project-probe {json}``: the facts, or a
``problem`` (``settings``, ``backend``, ``wsgi``, ``asgi``, ``database``) with the
exception's last line. ``"mode": "connection"`` answers the default database's
connection parameters instead (with its password: the caller keeps them in memory).

Standard library and Django only: it runs on whatever the project installs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from importlib import metadata
from typing import Any

MARK = "@@project-probe "

DATABASE_KEYS = ("ENGINE", "NAME", "HOST", "PORT", "USER")


class DatabaseTouched(Exception):
    """The project opened a database connection while the probe imported it."""


class Problem(Exception):
    """What the probe reports instead of facts."""

    def __init__(self, kind: str, detail: str, target: str | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.target = kind, detail, target


def last_line(exc: BaseException) -> str:
    """``ModuleNotFoundError: No module named 'foo'``: the exception's last line."""
    lines = traceback.format_exception_only(type(exc), exc)
    text = " ".join(lines[-1].split()) if lines else type(exc).__name__
    return text or type(exc).__name__


def answer(doc: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(doc) + "\n")
    sys.stdout.flush()


def refuse_connections() -> None:
    """No database connection from here on (the project's real database is behind it)."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    def refuse(self: BaseDatabaseWrapper, *args: Any, **kwargs: Any) -> None:
        raise DatabaseTouched(f"the database {self.alias!r}")

    BaseDatabaseWrapper.connect = refuse  # type: ignore[method-assign]


def load_settings(module: str) -> Any:
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 (imports the settings module)
    except (Exception, SystemExit) as exc:
        raise Problem("settings", last_line(exc)) from None
    # The probe's own logging is left unconfigured (django.setup() would open the
    # project's file handlers).
    settings.LOGGING_CONFIG = None
    return settings


def database(settings: Any) -> dict[str, Any]:
    """The default database as settings give it (never its password), and its vendor."""
    from django.db import connections

    config = settings.DATABASES.get("default") or {}
    facts: dict[str, Any] = {}
    for key in DATABASE_KEYS:
        value = config.get(key)
        facts[key.lower()] = None if value in (None, "") else str(value)
    try:
        facts["vendor"] = connections["default"].vendor
    except Exception as exc:
        raise Problem("backend", last_line(exc), facts["engine"]) from None
    return facts


def dotted_to_target(dotted: str) -> str:
    """``pkg.wsgi.application`` -> ``pkg.wsgi:application`` (a target stays as it is)."""
    if ":" in dotted:
        return dotted
    module, _, attr = dotted.rpartition(".")
    return f"{module}:{attr}" if module else dotted


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (Exception, SystemExit):
        return False


def entry(given: str | None, setting: Any, fallback: str) -> str | None:
    """The entry point to serve: ``given`` (an option), else the setting, else
    ``<fallback>:application`` when the module ``fallback`` exists."""
    if given:
        return dotted_to_target(given)
    if isinstance(setting, str) and setting:
        return dotted_to_target(setting)
    return f"{fallback}:application" if module_exists(fallback) else None


def load(target: str, kind: str, settings_module: str) -> str | None:
    """Import ``target`` and check it is callable; the settings module the import forced
    into the environment when it was not ``settings_module`` (None otherwise)."""
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise Problem(kind, "not a MODULE:ATTRIBUTE target", target)
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except DatabaseTouched as exc:
        raise Problem("database", str(exc), target) from None
    except (Exception, SystemExit) as exc:
        raise Problem(kind, last_line(exc), target) from None
    if not callable(obj):
        raise Problem(kind, f"{type(obj).__name__} is not callable", target)
    forced = os.environ.get("DJANGO_SETTINGS_MODULE")
    return forced if forced != settings_module else None


def version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def facts_of(request: dict[str, Any]) -> dict[str, Any]:
    settings_module = str(request["settings"])
    package = str(request["package"])
    settings = load_settings(settings_module)
    facts = database(settings)
    refuse_connections()
    wsgi = entry(
        request.get("wsgi"), getattr(settings, "WSGI_APPLICATION", None), f"{package}.wsgi"
    )
    if wsgi is None:
        raise Problem("wsgi", "missing")
    forced = load(wsgi, "wsgi", settings_module)
    asgi = entry(
        request.get("asgi"), getattr(settings, "ASGI_APPLICATION", None), f"{package}.asgi"
    )
    if asgi is not None:
        forced = forced or load(asgi, "asgi", settings_module)
    import django

    return {
        "wsgi": wsgi,
        "asgi": asgi,
        "database": facts,
        "django": django.get_version(),
        "asgiref": version_of("asgiref"),
        "installed_apps": len(settings.INSTALLED_APPS),
        "forced_settings": forced,
    }


def connection(request: dict[str, Any]) -> dict[str, Any]:
    """The default database's connection parameters as Django's backend builds them (the
    password included), the values JSON can carry."""
    load_settings(str(request["settings"]))
    from django.db import connections

    try:
        params = connections["default"].get_connection_params()
    except Exception as exc:
        raise Problem("backend", last_line(exc)) from None
    if "database" in params and "dbname" not in params:  # psycopg2 and MySQL's spelling
        params["dbname"] = params.pop("database")
    return {k: v for k, v in params.items() if isinstance(v, str | int) and v != ""}


def main(argv: list[str]) -> int:
    request: dict[str, Any] = json.loads(argv[1])
    sys.path.insert(0, str(request["root"]))
    os.environ["DJANGO_SETTINGS_MODULE"] = str(request["settings"])
    try:
        if request.get("mode") == "connection":
            answer({"params": connection(request)})
        else:
            answer({"facts": facts_of(request)})
    except Problem as problem:
        answer({"problem": problem.kind, "detail": problem.detail, "target": problem.target})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
