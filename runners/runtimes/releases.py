"""Django releases: the locked one, and which releases exist for an interpreter.

``check_djangos(specs, interpreters)``
    Refuses (``DjangoUnavailable``, one line) a Django release that is not on
    the package index, or that does not install on one of the interpreters
    (Django 6 needs Python 3.12 or newer): the releases per Python version come
    from ``pip index versions django --python-version X.Y``, looked up once and
    cached for a day in ``.data/venvs/django-index.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from runners import REPO_ROOT
from runners.runtimes.interpreters import Interpreter, clean_env, version_tuple

LOCK_FILE = REPO_ROOT / "uv.lock"

# Distribution names whose versions are recorded (None when not installed).
PACKAGES: tuple[str, ...] = (
    "django",
    "asgiref",
    "gunicorn",
    "uvicorn",
    "uvicorn-worker",
    "uvloop",
    "httptools",
    "granian",
    "waitress",
    "hypercorn",
    "daphne",
    "twisted",
    "pyuwsgi",
    "psycopg",
    "psycopg-binary",
    "redis",
    "httpx",
    "locust",
    "gevent",
    "psutil",
    "pyperf",
)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


VENVS_ENV = "BENCH_VENVS_DIR"


INDEX_CACHE = "django-index.json"


INDEX_TTL_S = 24 * 3600.0


# pip filters releases by the Python it is told about; a version above every
# real one keeps all releases whose requires-python has a lower bound only.
ANY_PYTHON = "3.99"


_DJANGO_SPEC = re.compile(r"^\d+\.\d+(?:\.\d+)?$")


class DjangoUnavailable(ValueError):
    """A Django release that is not on the index or does not install on an interpreter."""


def parse_django(text: str) -> str:
    """``"6.1"`` or ``"5.2.19"``; ``ValueError`` otherwise."""
    value = text.strip().removeprefix("django").removeprefix("==").strip()
    if not _DJANGO_SPEC.match(value):
        raise ValueError(f"{text!r} is not a Django release like 5.2 or 5.2.19")
    return value


def version_matches(version: str, spec: str) -> bool:
    """``5.2.19`` matches ``5.2`` and ``5.2.19``; ``5.2`` (a .0 release) matches ``5.2.0``."""
    have, want = version_tuple(version), version_tuple(spec)
    if len(want) == 3 and len(have) == 2:
        have = (*have, 0)
    return have[: len(want)] == want


@cache
def locked_versions() -> dict[str, str]:
    """Package versions pinned in uv.lock (names normalised to lower case with dashes)."""
    try:
        lock = tomllib.loads(LOCK_FILE.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return {
        str(p["name"]).lower().replace("_", "-"): str(p["version"])
        for p in lock.get("package", [])
        if "version" in p
    }


def locked_django() -> str | None:
    return locked_versions().get("django")


def venvs_dir() -> Path:
    return Path(os.environ.get(VENVS_ENV) or REPO_ROOT / ".data" / "venvs")


def _pip_commands() -> list[list[str]]:
    """Ways to run pip's ``index`` command, most local first."""
    pythons = [sys.executable, getattr(sys, "_base_executable", "")]
    commands = [[p, "-m", "pip"] for p in dict.fromkeys(pythons) if p]
    uv = shutil.which("uv")
    if uv:
        commands.append([uv, "tool", "run", "--quiet", "pip"])
    return commands


@cache
def _pip() -> list[str] | None:
    for command in _pip_commands():
        try:
            done = subprocess.run(
                [*command, "--version"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=clean_env(),
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return command
    return None


def _index_lookup(python_minor: str) -> list[str]:
    """Django releases installable on ``python_minor``, newest first (pip's view of the index)."""
    pip = _pip()
    if pip is None:
        raise DjangoUnavailable(
            "cannot list Django releases: no pip to run `pip index versions django` "
            "(install pip, or uv for `uv tool run pip`)"
        )
    argv = [*pip, "index", "versions", "django", "--python-version", python_minor]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={**clean_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DjangoUnavailable(f"cannot list Django releases ({' '.join(argv)}): {exc}") from None
    for line in done.stdout.splitlines():
        if line.startswith("Available versions:"):
            versions = [v.strip() for v in line.partition(":")[2].split(",") if v.strip()]
            return sorted(versions, key=version_tuple, reverse=True)
    if "No matching distribution" in done.stdout + done.stderr:
        return []
    tail = (done.stderr or done.stdout).strip().splitlines()
    raise DjangoUnavailable(
        f"cannot list Django releases ({' '.join(argv)} exited with {done.returncode}: "
        f"{tail[-1] if tail else 'no output'})"
    )


DjangoLookup = Callable[[str], list[str]]


def django_releases(python_minor: str, *, cache_dir: Path | None = None) -> list[str]:
    """Django releases for ``python_minor`` (``ANY_PYTHON``: every release), newest
    first, from the index at most once a day."""
    folder = cache_dir or venvs_dir()
    path = folder / INDEX_CACHE
    try:
        cached: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    entry = cached.get(python_minor)
    if isinstance(entry, dict) and time.time() - float(entry.get("at", 0)) < INDEX_TTL_S:
        return [str(v) for v in entry.get("versions", [])]
    versions = _index_lookup(python_minor)
    cached[python_minor] = {"at": time.time(), "versions": versions}
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cached, indent=1) + "\n")
        os.replace(tmp, path)
    return versions


def _series(versions: Sequence[str], limit: int = 8) -> str:
    """``6.1 (6.1.3), 6.0 (6.0.10), ...``: the newest release of each X.Y."""
    newest: dict[str, str] = {}
    for version in sorted(versions, key=version_tuple, reverse=True):
        parts = version_tuple(version)
        if len(parts) < 2:
            continue
        newest.setdefault(f"{parts[0]}.{parts[1]}", version)
    items = [f"{k} ({v})" if k != v else k for k, v in list(newest.items())[:limit]]
    return ", ".join(items) + (", ..." if len(newest) > limit else "")


def check_djangos(
    specs: Sequence[str],
    interpreters: Sequence[Interpreter],
    lookup: DjangoLookup | None = None,
) -> None:
    """``DjangoUnavailable`` (one line) for a release that cannot be installed on
    one of ``interpreters``. The lock's own release is always accepted."""
    releases = lookup or django_releases
    locked = locked_django()
    for spec in specs:
        if locked is not None and version_matches(locked, spec):
            continue
        usable: list[Interpreter] = []
        refused: list[tuple[Interpreter, list[str]]] = []
        for interp in interpreters:
            versions = releases(interp.minor)
            if any(version_matches(v, spec) for v in versions):
                usable.append(interp)
            else:
                refused.append((interp, versions))
        if not refused:
            continue
        everything = releases(ANY_PYTHON)
        if not any(version_matches(v, spec) for v in everything):
            raise DjangoUnavailable(
                f"--django {spec}: no such Django release on the package index "
                f"(available: {_series(everything) or 'none found'})"
            )
        interp, versions = refused[0]
        newest = versions[0] if versions else "none"
        newer = not versions or version_tuple(spec) > version_tuple(newest)
        oldest_ok = min((i.version_tuple for i in usable), default=None)
        hint = (
            f"give --python {'.'.join(map(str, oldest_ok[:2]))} or newer with it"
            if newer and oldest_ok is not None
            else f"give {'a newer' if newer else 'another'} --python with it"
        )
        raise DjangoUnavailable(
            f"--django {spec} does not install on {interp.label} ({interp.path}): Django "
            f"{spec} {'needs a newer' if newer else 'has no release for this'} Python "
            f"(the newest Django for Python {interp.minor} is {newest}); {hint}, "
            "or choose another --django"
        )
