"""Checks made before any server starts, so that a bad value is one line, not a failed matrix.

Each function returns ``None`` when all is well, else a short problem
description (one line) for the caller's usage error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from urllib.parse import urlsplit, urlunsplit

DATABASE_TIMEOUT_S = 3
INTERPRETER_TIMEOUT_S = 20.0


def redact(url: str) -> str:
    """``url`` without its password (safe to print)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def database_problem(url: str, timeout: int = DATABASE_TIMEOUT_S) -> str | None:
    """Why the PostgreSQL database at ``url`` cannot be used (None if it answers)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (needed for a postgres:// database)"
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot connect: {text}"
    return None


def interpreter_problem(python: str) -> str | None:
    """Why ``python`` cannot run the servers (None if it is a working Python 3)."""
    path = shutil.which(python) if os.sep not in python else python
    if path is None or not os.path.isfile(path):
        return "no such interpreter"
    if not os.access(path, os.X_OK):
        return "not executable"
    try:
        result = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[0])"],
            capture_output=True,
            text=True,
            timeout=INTERPRETER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run: {exc}"
    if result.returncode != 0 or result.stdout.strip() != "3":
        return "is not a working Python 3 interpreter"
    return None
