"""Finding the interpreters the servers run on.

``find_interpreter(spec)``
    ``"3.12"`` (or ``"3.12.1"``, ``"python3.12"``): ``python3.12`` on ``PATH``
    (every match, in order: a pyenv shim that cannot run it is skipped), then
    ``$PYENV_ROOT/versions/3.12.*/bin/python3`` (``PYENV_ROOT`` defaults to
    ``~/.pyenv``), newest patch first. A path (anything with a ``/``) is used
    as given. Every candidate is run once to learn its implementation,
    version and real executable (a shim resolves to what it runs).
    ``InterpreterNotFound`` says in one line what was looked for and where.

Locust and the driver never change interpreter: only the servers (and the
database preparation, which runs the app) do.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from runners import REPO_ROOT

PYPROJECT = REPO_ROOT / "pyproject.toml"


PROBE_TIMEOUT_S = 30.0


# What a candidate interpreter reports about itself (standard library only).
_PROBE = (
    "import json, platform, sys; print(json.dumps({"
    "'implementation': platform.python_implementation(), "
    "'version': platform.python_version(), "
    "'executable': sys.executable, "
    "'version_info': list(sys.version_info[:3])}))"
)


_VERSION_SPEC = re.compile(r"^(?:python)?(\d+)\.(\d+)(?:\.(\d+))?$")


_PYENV_DIR = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class InterpreterNotFound(LookupError):
    """No interpreter matches a spec; the message is one line naming where it looked."""


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
        return version_tuple(self.version)

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


def version_tuple(text: str) -> tuple[int, ...]:
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


def clean_env() -> dict[str, str]:
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
            env=clean_env(),
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
    return version_tuple(m.group(1)) if m else (3, 11)


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
