"""Production-like settings for the benchmark subject.

Everything that varies between runs comes from the environment:

- ``DJANGO_SECRET_KEY``: the secret key. Without it a random key is generated
  once and kept in the data folder, so every worker of a server shares it.
- ``BENCH_ALLOWED_HOSTS``: extra allowed hosts, comma separated.
- ``BENCH_MIDDLEWARE``: ``minimal`` (no middleware, as the TechEmpower Django
  entry runs) or ``default`` (what ``django-admin startproject`` generates).
- ``DATABASE_URL``: ``postgres://user@host:port/name`` selects PostgreSQL
  (psycopg 3); without it an SQLite file in ``BENCH_DATA_DIR`` is used.
- ``REDIS_URL``: selects Django's RedisCache; without it the local-memory cache.
- ``BENCH_UPSTREAM_URL``: base URL of the upstream service (``apps.upstream``).
- ``BENCH_DATA_DIR``: where the SQLite file and the generated key live
  (default ``.data/`` at the repository root, git-ignored).
- ``BENCH_INTERFACE``: ``wsgi`` (default) or ``asgi``, how the app is served
  (``asgi-pooled``: the experimental one-executor-per-process ASGI handler of
  ``runners/serving/servers/pooled_handler.py``, with persistent connections).
  The entry points (``apps/project/wsgi.py``, ``asgi.py``) set it before the
  settings load; it selects the database connection handling (see
  ``_database``).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS_DIR = REPO_ROOT / "apps"
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR", REPO_ROOT / ".data"))


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "secret_key"
    try:
        # O_EXCL: the first process to get here writes the key, the others read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path.read_text().strip()
        if existing:
            return existing
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    generated = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as fh:
        fh.write(generated)
    return generated


INTERFACES = ("wsgi", "asgi", "asgi-pooled")


def _interface() -> str:
    value = os.environ.get("BENCH_INTERFACE", "wsgi")
    if value not in INTERFACES:
        raise ValueError(f"BENCH_INTERFACE={value!r}: expected one of {', '.join(INTERFACES)}")
    return value


# Database connections: persistent under WSGI, per request (pooled on
# PostgreSQL) under ASGI, as Django's deployment documentation prescribes
# ("Persistent connections", docs/ref/databases: "When using ASGI, persistent
# connections should be disabled. Instead, use your database backend's
# built-in connection pooling if available"; ticket #33497).
#
# Why it differs by interface: Django's connections are per thread. A WSGI
# worker thread serves request after request, so CONN_MAX_AGE=None reuses one
# connection per thread for the life of the process. Django's ASGIHandler runs
# each request in its own asgiref ThreadSensitiveContext, whose sync work (the
# async ORM's hops included) goes to a fresh one-thread executor that is shut
# down when the request ends: a persistent connection is never reused, and as
# close_old_connections() keeps it open, it outlives its thread as cyclic
# garbage until a full gc pass. Measured with uvicorn on /async/feed, 32
# concurrent clients for 20 s: 183 SQLite connections left open (each with
# its own 2 MiB page cache; PSS 48 -> 488 MiB, not released once the load
# stopped); on PostgreSQL the server's 100 connection slots ran out within
# seconds ("too many clients"). With the settings below: as many SQLite
# connections as requests in flight (PSS peak 126 MiB, none left when idle),
# and 4 PostgreSQL connections.
#
# CONN_MAX_AGE=0 makes Django close each request's connection when the request
# finishes, on the thread that opened it. On PostgreSQL Django 5.1+ returns it
# to psycopg's pool (OPTIONS["pool"], needs psycopg[pool]) instead. SQLite has
# no pool: each request opens the file (about 0.6 ms of CPU here).


def _has_psycopg_pool() -> bool:
    return importlib.util.find_spec("psycopg_pool") is not None


def _database(url: str | None, interface: str) -> dict[str, object]:
    asgi = interface == "asgi"
    if not url:
        # The folder is git-ignored; SQLite creates the file, not the folder.
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "bench.sqlite3"),
            "CONN_MAX_AGE": 0 if asgi else None,
            "OPTIONS": {
                # WAL lets readers and one writer work at once; the rest is
                # what Django 5.1+ recommends for concurrent web serving.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got scheme {parts.scheme!r}")
    options: dict[str, object] = {}
    if asgi:
        if not _has_psycopg_pool():
            # Fail at startup, not with a 500 on every request.
            raise ImproperlyConfigured(
                "PostgreSQL under ASGI uses psycopg's connection pool: install psycopg[pool]"
            )
        # psycopg_pool's defaults spelled out: at most 4 connections per
        # process (what a gthread worker with 4 threads holds), waiting up to
        # 30 s for a free one. A request holds its connection from its first
        # query to its end.
        options["pool"] = {"min_size": 4, "max_size": 4, "timeout": 30.0}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0 if asgi else None,
        # CONN_HEALTH_CHECKS stays off (Django's default, and TechEmpower's
        # setting): on it costs a "SELECT 1" round trip at the start of every
        # request that reuses a connection (measured, wrk on /sync/db under
        # gunicorn gthread with PostgreSQL: 8 to 15 % fewer requests/s).
        # A connection the database dropped fails one request; Django then
        # closes it at the end of that request and the next one reconnects.
        "OPTIONS": options,
    }


def _cache(url: str | None) -> dict[str, object]:
    if url:
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    return {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "bench",
        # Room for every World row (cached-queries) without culling; the
        # default of 300 entries would make the cache thrash.
        "OPTIONS": {"MAX_ENTRIES": 20_000},
    }


SECRET_KEY = _secret_key()
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"] + [
    h.strip() for h in os.environ.get("BENCH_ALLOWED_HOSTS", "").split(",") if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "apps.bench",
]

MIDDLEWARE_PROFILES: dict[str, list[str]] = {
    "minimal": [],
    "default": [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
}
MIDDLEWARE_PROFILE = os.environ.get("BENCH_MIDDLEWARE", "minimal")
if MIDDLEWARE_PROFILE not in MIDDLEWARE_PROFILES:
    raise ValueError(
        f"BENCH_MIDDLEWARE={MIDDLEWARE_PROFILE!r}: expected one of {', '.join(MIDDLEWARE_PROFILES)}"
    )
MIDDLEWARE = MIDDLEWARE_PROFILES[MIDDLEWARE_PROFILE]
# The admin is installed (as startproject has it) but not routed; without
# middleware its checks for the session/auth/messages middleware would fail.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"] if not MIDDLEWARE else []

ROOT_URLCONF = "apps.project.urls"
WSGI_APPLICATION = "apps.project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": False,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # Spelled out (DEBUG is off, so Django would pick it too): the
            # cached loader compiles each template once per process.
            "loaders": [
                (
                    "django.template.loaders.cached.Loader",
                    [
                        "django.template.loaders.filesystem.Loader",
                        "django.template.loaders.app_directories.Loader",
                    ],
                )
            ],
        },
    }
]

INTERFACE = _interface()
DATABASES = {"default": _database(os.environ.get("DATABASE_URL"), INTERFACE)}
CACHES = {"default": _cache(os.environ.get("REDIS_URL"))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False
STATIC_URL = "static/"

UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8081")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
