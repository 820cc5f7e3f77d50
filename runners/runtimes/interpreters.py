"""Interpreters and Django releases the servers run on: finding them, and one
virtual environment per (interpreter, Django) with the suite's locked versions.

``find_interpreter(spec)``
    ``"3.12"`` (or ``"3.12.1"``, ``"python3.12"``): ``python3.12`` on ``PATH``
    (every match, in order: a pyenv shim that cannot run it is skipped), then
    ``$PYENV_ROOT/versions/3.12.*/bin/python3`` (``PYENV_ROOT`` defaults to
    ``~/.pyenv``), newest patch first. A path (anything with a ``/``) is used
    as given. Every candidate is run once to learn its implementation,
    version and real executable (a shim resolves to what it runs).
    ``InterpreterNotFound`` says in one line what was looked for and where.

``runtime_env(interpreter, django)``
    The server side's environment: ``.data/venvs/py<version>-django<X>/``
    (``BENCH_VENVS_DIR`` moves it), made with ``uv venv --python <path>
    --no-python-downloads`` (uv never downloads an interpreter) and filled
    with ``uv pip install`` from ``uv export --locked`` (the app's and the
    servers' pinned versions: ``[project].dependencies``). ``django`` (``"6.1"``)
    overrides the lock's Django with ``django==6.1.*`` through an override
    file, unless the locked release already is a 6.1. A marker file holds a
    hash of uv.lock, the Django requirement and the interpreter: an
    environment is reused while they are unchanged, rebuilt otherwise. A file
    lock keeps two processes from building the same one at once.

``check_djangos(specs, interpreters)``
    Refuses (``DjangoUnavailable``, one line) a Django release that is not on
    the package index, or that does not install on one of the interpreters
    (Django 6 needs Python 3.12 or newer): the releases per Python version come
    from ``pip index versions django --python-version X.Y``, looked up once and
    cached for a day in ``.data/venvs/django-index.json``.

Locust and the driver never change interpreter: only the servers (and the
database preparation, which runs the app) do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from runners import REPO_ROOT

LOCK_FILE = REPO_ROOT / "uv.lock"
PYPROJECT = REPO_ROOT / "pyproject.toml"
VENVS_ENV = "BENCH_VENVS_DIR"
MARKER = "bench-runtime.json"
INDEX_CACHE = "django-index.json"
INDEX_TTL_S = 24 * 3600.0
PROBE_TIMEOUT_S = 30.0
BUILD_TIMEOUT_S = 900.0
# pip filters releases by the Python it is told about; a version above every
# real one keeps all releases whose requires-python has a lower bound only.
ANY_PYTHON = "3.99"

# What a candidate interpreter reports about itself (standard library only).
_PROBE = (
    "import json, platform, sys; print(json.dumps({"
    "'implementation': platform.python_implementation(), "
    "'version': platform.python_version(), "
    "'executable': sys.executable, "
    "'version_info': list(sys.version_info[:3])}))"
)
# What a runtime's python reports: the interpreter, Django, and package versions.
_RUNTIME_PROBE = """
import json, platform, sys
from importlib import metadata
names = json.loads(sys.argv[1])
versions = {}
for name in names:
    try:
        versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        versions[name] = None
import django
print(json.dumps({
    "implementation": platform.python_implementation(),
    "version": platform.python_version(),
    "executable": sys.executable,
    "django": django.get_version(),
    "packages": versions,
}))
"""

_VERSION_SPEC = re.compile(r"^(?:python)?(\d+)\.(\d+)(?:\.(\d+))?$")
_PYENV_DIR = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_DJANGO_SPEC = re.compile(r"^\d+\.\d+(?:\.\d+)?$")


class InterpreterNotFound(LookupError):
    """No interpreter matches a spec; the message is one line naming where it looked."""


class DjangoUnavailable(ValueError):
    """A Django release that is not on the index or does not install on an interpreter."""


class RuntimeSetupError(RuntimeError):
    """Building a runtime environment failed; the message starts with one summary line."""


# --- interpreters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interpreter:
    """A Python that ran and told us what it is.

    ``path`` is its real executable (``sys.executable`` as it reports it, so a
    pyenv shim is resolved); ``spec`` is what the user asked for.
    """

    implementation: str
    version: str
    path: str
    spec: str = ""

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return _version_tuple(self.version)

    @property
    def minor(self) -> str:
        """``"3.12"``."""
        return ".".join(str(n) for n in self.version_tuple[:2])

    @property
    def label(self) -> str:
        """``"CPython 3.12.1"``."""
        return f"{self.implementation} {self.version}"

    @property
    def tag(self) -> str:
        """``"py3.12.1"`` (``"pypy3.10.14"`` for PyPy): folder names and run ids."""
        prefix = "py" if self.implementation == "CPython" else self.implementation.lower()
        return f"{prefix}{self.version}"

    def as_dict(self) -> dict[str, str]:
        return {"implementation": self.implementation, "version": self.version, "path": self.path}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def current_interpreter() -> Interpreter:
    """The interpreter running this code (the default server interpreter)."""
    return Interpreter(
        implementation=platform.python_implementation(),
        version=platform.python_version(),
        path=sys.executable,
        spec="current",
    )


def _clean_env() -> dict[str, str]:
    """Our environment without what would make a probed Python import our packages."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def probe(executable: str, timeout: float = PROBE_TIMEOUT_S) -> Interpreter:
    """Run ``executable`` once; what it is. ``OSError`` or ``ValueError`` if it is not a Python."""
    try:
        done = subprocess.run(
            [executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=_clean_env(),
            cwd=tempfile.gettempdir(),
        )
    except subprocess.TimeoutExpired:
        raise ValueError(f"no answer within {timeout:g}s") from None
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()
        raise ValueError(first[0][:160] if first else f"exit status {done.returncode}")
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return Interpreter(
            implementation=str(data["implementation"]),
            version=str(data["version"]),
            path=str(data["executable"] or executable),
        )
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"unexpected answer {done.stdout.strip()[:80]!r}") from None


def _on_path(name: str, search_path: str | None) -> list[str]:
    """Every executable called ``name`` on the search path, in order."""
    found: list[str] = []
    path = os.environ.get("PATH", "") if search_path is None else search_path
    for folder in path.split(os.pathsep):
        if not folder:
            continue
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and candidate not in found:
            found.append(candidate)
    return found


def pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or "~/.pyenv").expanduser()


def _pyenv_candidates(root: Path, want: tuple[int, ...]) -> list[Path]:
    """``root/versions/X.Y.Z/bin/python...`` matching ``want``, newest patch first."""
    versions = root / "versions"
    try:
        entries = list(versions.iterdir())
    except OSError:
        return []
    matches: list[tuple[tuple[int, ...], Path]] = []
    for entry in entries:
        m = _PYENV_DIR.match(entry.name)
        if m is None:
            continue
        version = tuple(int(g) for g in m.groups())
        if version[: len(want)] != want:
            continue
        for name in (f"python{version[0]}.{version[1]}", f"python{version[0]}", "python"):
            exe = entry / "bin" / name
            if exe.is_file() and os.access(exe, os.X_OK):
                matches.append((version, exe))
                break
    return [exe for _, exe in sorted(matches, key=lambda item: item[0], reverse=True)]


def find_interpreter(
    spec: str, *, search_path: str | None = None, root: Path | None = None
) -> Interpreter:
    """The interpreter ``spec`` names: a version (``3.12``, ``3.12.1``, ``python3.12``), a
    command name on PATH (``pypy3``) or a path. ``InterpreterNotFound`` otherwise."""
    spec = spec.strip()
    if not spec:
        raise InterpreterNotFound("empty interpreter name (expected e.g. 3.12 or a path)")
    if "/" in spec or spec.startswith("~"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InterpreterNotFound(f"no Python at {path}: no such file")
        try:
            found = probe(str(path))
        except (OSError, ValueError) as exc:
            raise InterpreterNotFound(f"{path} is not a working Python: {exc}") from None
        return _checked(found, spec)
    match = _VERSION_SPEC.match(spec)
    path_dirs = os.environ.get("PATH", "") if search_path is None else search_path
    failed: list[str] = []
    if match is None:
        for candidate in _on_path(spec, search_path):
            try:
                return _checked(probe(candidate), spec)
            except (OSError, ValueError) as exc:
                failed.append(f"{candidate}: {exc}")
        raise InterpreterNotFound(
            f"no Python {spec!r}: looked for {spec} on PATH ({path_dirs})" + _tried(failed)
        )
    want = tuple(int(g) for g in match.groups() if g is not None)
    name = f"python{want[0]}.{want[1]}"
    for candidate in _on_path(name, search_path):
        try:
            found = probe(candidate)
        except (OSError, ValueError) as exc:
            failed.append(f"{candidate}: {exc}")
            continue
        if found.version_tuple[: len(want)] == want:
            return _checked(found, spec)
        failed.append(f"{candidate}: is {found.version}")
    base = root if root is not None else pyenv_root()
    for exe in _pyenv_candidates(base, want):
        try:
            found = probe(str(exe))
        except (OSError, ValueError) as exc:
            failed.append(f"{exe}: {exc}")
            continue
        if found.version_tuple[: len(want)] == want:
            return _checked(found, spec)
    pattern = ".".join(str(n) for n in want) + ("" if len(want) == 3 else ".*")
    raise InterpreterNotFound(
        f"no Python {spec}: looked for {name} on PATH ({path_dirs}) and for "
        f"{base / 'versions' / pattern / 'bin' / 'python3'}" + _tried(failed)
    )


def _tried(failed: Sequence[str]) -> str:
    if not failed:
        return ""
    return "; found but not usable: " + "; ".join(failed[:4])


@cache
def minimum_python() -> tuple[int, ...]:
    """The lower bound of ``requires-python`` in pyproject.toml (``(3, 11)``)."""
    try:
        text = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return (3, 11)
    m = re.search(r">=\s*(\d+(?:\.\d+)*)", str(text))
    return _version_tuple(m.group(1)) if m else (3, 11)


def _checked(found: Interpreter, spec: str) -> Interpreter:
    low = minimum_python()
    if found.version_tuple < low:
        raise InterpreterNotFound(
            f"{found.label} at {found.path} is too old: the suite needs Python "
            f">= {'.'.join(map(str, low))} (requires-python in pyproject.toml)"
        )
    return Interpreter(found.implementation, found.version, found.path, spec)


def find_interpreters(specs: Sequence[str]) -> tuple[Interpreter, ...]:
    """Every spec resolved, in order; the same interpreter named twice counts once.

    ``InterpreterNotFound`` for the first that is missing, ``ValueError`` when
    two different interpreters report the same version (runs would collide).
    """
    found: dict[str, Interpreter] = {}
    for spec in specs:
        interp = find_interpreter(spec)
        real = os.path.realpath(interp.path)
        if real in found:
            continue
        for other in found.values():
            if other.tag == interp.tag:
                raise ValueError(
                    f"{spec} ({interp.path}) and {other.spec} ({other.path}) are both "
                    f"{interp.label}: give one of them"
                )
        found[real] = interp
    return tuple(found.values())


# --- Django releases ----------------------------------------------------------------------------


def parse_django(text: str) -> str:
    """``"6.1"`` or ``"5.2.19"``; ``ValueError`` otherwise."""
    value = text.strip().removeprefix("django").removeprefix("==").strip()
    if not _DJANGO_SPEC.match(value):
        raise ValueError(f"{text!r} is not a Django release like 5.2 or 5.2.19")
    return value


def version_matches(version: str, spec: str) -> bool:
    """``5.2.19`` matches ``5.2`` and ``5.2.19``; ``5.2`` (a .0 release) matches ``5.2.0``."""
    have, want = _version_tuple(version), _version_tuple(spec)
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
                env=_clean_env(),
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
            env={**_clean_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DjangoUnavailable(f"cannot list Django releases ({' '.join(argv)}): {exc}") from None
    for line in done.stdout.splitlines():
        if line.startswith("Available versions:"):
            versions = [v.strip() for v in line.partition(":")[2].split(",") if v.strip()]
            return sorted(versions, key=_version_tuple, reverse=True)
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
    for version in sorted(versions, key=_version_tuple, reverse=True):
        parts = _version_tuple(version)
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
        newer = not versions or _version_tuple(spec) > _version_tuple(newest)
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


# --- runtime environments -----------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """What the servers of a run execute: ``python`` (a venv's, or the current one)."""

    interpreter: Interpreter
    python: str
    django: str
    django_spec: str | None = None
    venv: Path | None = None
    packages: tuple[tuple[str, str | None], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.interpreter.label}, Django {self.django}"

    def python_record(self) -> dict[str, str]:
        """The run's ``python`` key: the interpreter (plus the venv it ran from)."""
        record = self.interpreter.as_dict()
        if self.venv is not None:
            record["venv"] = self.python
        return record

    def as_dict(self) -> dict[str, Any]:
        return {
            "python": self.python_record(),
            "django": self.django,
            "django_requested": self.django_spec,
            "venv": None if self.venv is None else str(self.venv),
            "packages": dict(self.packages),
        }


def current_runtime() -> Runtime:
    """The driver's own interpreter and packages (no extra environment)."""
    from runners.results.environment import PACKAGES, package_versions

    versions = package_versions(PACKAGES)
    return Runtime(
        interpreter=current_interpreter(),
        python=sys.executable,
        django=versions.get("django") or "",
        packages=tuple(versions.items()),
    )


def venv_name(interp: Interpreter, django: str | None) -> str:
    """``py3.12.1-django5.2.19`` (the lock's release) or ``py3.12.1-django6.1``."""
    locked = locked_django() or "lock"
    chosen = locked if django is None or version_matches(locked, django) else django
    return f"{interp.tag}-django{chosen}"


def _override(django: str | None) -> str | None:
    """The requirement replacing the lock's Django, if one is needed."""
    locked = locked_django()
    if django is None or (locked is not None and version_matches(locked, django)):
        return None
    return f"django=={django}" if len(_version_tuple(django)) == 3 else f"django=={django}.*"


def _fingerprint(interp: Interpreter, override: str | None) -> str:
    digest = hashlib.sha256()
    digest.update(LOCK_FILE.read_bytes() if LOCK_FILE.exists() else b"")
    digest.update(json.dumps([interp.path, interp.version, override, EXPORT_ARGS]).encode())
    return digest.hexdigest()


EXPORT_ARGS = (
    "export",
    "--locked",
    "--no-hashes",
    "--no-emit-project",
    "--no-default-groups",
    "--format",
    "requirements.txt",
)
"""The lock's ``[project].dependencies`` (the app and its servers), pinned."""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        # tox-uv installs uv next to the Python that runs tox, which may not be on PATH.
        for python in (sys.executable, getattr(sys, "_base_executable", "")):
            beside = Path(python).parent / "uv" if python else None
            if beside is not None and beside.is_file() and os.access(beside, os.X_OK):
                return str(beside)
    if uv is None:
        raise RuntimeSetupError(
            "uv is needed to build the interpreter environments (it is on PATH inside tox; "
            "`python3 -m pip install uv` otherwise)"
        )
    return uv


def _run(argv: Sequence[str], what: str, timeout: float = BUILD_TIMEOUT_S) -> str:
    env = {**_clean_env(), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO_ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeSetupError(f"{what}: no result within {timeout:g}s") from None
    except OSError as exc:
        raise RuntimeSetupError(f"{what}: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr + done.stdout).strip().splitlines()
        useful = [line for line in lines if line.strip()][-12:]
        first = next((line.strip() for line in useful if "error" in line.lower()), None)
        summary = first or (useful[-1].strip() if useful else f"exit status {done.returncode}")
        raise RuntimeSetupError(
            f"{what} failed: {summary}\n$ {subprocess.list2cmdline(list(argv))}\n"
            + "\n".join(useful)
        )
    return done.stdout


def query_runtime(python: str) -> dict[str, Any]:
    """Interpreter, Django and package versions as ``python`` sees them."""
    from runners.results.environment import PACKAGES

    out = _run(
        [python, "-c", _RUNTIME_PROBE, json.dumps(list(PACKAGES))],
        f"asking {python} for its versions",
        timeout=120,
    )
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def _runtime_from(
    interp: Interpreter, venv: Path, spec: str | None, data: dict[str, Any]
) -> Runtime:
    packages = data.get("packages") or {}
    return Runtime(
        interpreter=interp,
        python=str(venv / "bin" / "python"),
        django=str(data["django"]),
        django_spec=spec,
        venv=venv,
        packages=tuple(sorted((str(k), v) for k, v in packages.items())),
    )


def runtime_env(
    interp: Interpreter,
    django: str | None = None,
    *,
    root: Path | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> Runtime:
    """The environment of ``interp`` with the locked packages (and ``django``'s release
    instead of the lock's when given), built once and reused. ``RuntimeSetupError``."""
    folder = root or venvs_dir()
    name = venv_name(interp, django)
    venv = folder / name
    marker = venv / MARKER
    override = _override(django)
    fingerprint = _fingerprint(interp, override)
    with _file_lock(folder / f".{name}.lock"):
        try:
            saved = json.loads(marker.read_text())
        except (OSError, ValueError):
            saved = None
        python = venv / "bin" / "python"
        if saved and saved.get("fingerprint") == fingerprint and python.exists():
            return _runtime_from(interp, venv, django, saved["runtime"])
        say(f"Building {venv} ({interp.label}, Django {override or 'as locked'})...")
        began = time.monotonic()
        uv = _uv()
        if venv.exists():
            shutil.rmtree(venv)
        with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
            requirements = Path(tmp) / "requirements.txt"
            _run([uv, *EXPORT_ARGS, "-o", str(requirements)], "uv export (the locked versions)")
            _run(
                [uv, "venv", "--python", interp.path, "--no-python-downloads", str(venv)],
                f"uv venv with {interp.path}",
            )
            install = [uv, "pip", "install", "--python", str(python), "-r", str(requirements)]
            if override is not None:
                overrides = Path(tmp) / "overrides.txt"
                overrides.write_text(override + "\n")
                install += ["--override", str(overrides)]
            try:
                _run(install, f"installing the locked packages into {venv}")
            except RuntimeSetupError:
                shutil.rmtree(venv, ignore_errors=True)
                raise
        data = query_runtime(str(python))
        if django is not None and not version_matches(str(data["django"]), django):
            raise RuntimeSetupError(
                f"{venv} holds Django {data['django']}, not the {django} that was asked for"
            )
        marker.write_text(
            json.dumps(
                {"fingerprint": fingerprint, "built_at": time.time(), "runtime": data}, indent=1
            )
            + "\n"
        )
        say(f"Built {venv.name} in {time.monotonic() - began:.1f}s (Django {data['django']}).")
        return _runtime_from(interp, venv, django, data)


def server_python(spec: str, say: Callable[[str], None] = lambda text: None) -> str:
    """The python to serve with for ``--python SPEC`` (``runners.cli.serve``): the interpreter
    ``spec`` names, from its virtual environment with the locked versions.
    ``ValueError`` (one line) when it is missing or its environment cannot be built."""
    try:
        return runtime_env(find_interpreter(spec), None, say=say).python
    except InterpreterNotFound as exc:
        raise ValueError(str(exc)) from None
    except RuntimeSetupError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
