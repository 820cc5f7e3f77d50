"""One virtual environment per (interpreter, Django) with the suite's locked versions.

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

    ``asgiref`` (``"3.11"``, for ``python -m runners.micro --asgiref``) overrides
    the lock's asgiref the same way, and ``extras`` are further requirements
    (the micro-benchmarks' pyperf); both are part of the name and the hash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners import REPO_ROOT
from runners.runtimes.interpreters import (
    Interpreter,
    InterpreterNotFound,
    clean_env,
    current_interpreter,
    find_interpreter,
    version_tuple,
)
from runners.runtimes.releases import (
    LOCK_FILE,
    PACKAGES,
    locked_django,
    locked_versions,
    package_versions,
    venvs_dir,
    version_matches,
)

MARKER = "bench-runtime.json"


BUILD_TIMEOUT_S = 900.0


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


class RuntimeSetupError(RuntimeError):
    """Building a runtime environment failed; the message starts with one summary line."""


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


def current_runtime() -> Runtime:
    """The driver's own interpreter and packages (no extra environment)."""
    versions = package_versions(PACKAGES)
    return Runtime(
        interpreter=current_interpreter(),
        python=sys.executable,
        django=versions.get("django") or "",
        packages=tuple(versions.items()),
    )


def venv_name(
    interp: Interpreter, django: str | None, asgiref: str | None = None, extras: Sequence[str] = ()
) -> str:
    """``py3.12.1-django5.2.19`` (the lock's release) or ``py3.12.1-django6.1``, then
    ``-asgiref3.11`` and ``-x<hash of extras>`` when asked for."""
    locked = locked_django() or "lock"
    chosen = locked if django is None or version_matches(locked, django) else django
    name = f"{interp.tag}-django{chosen}"
    if asgiref is not None:
        name += f"-asgiref{asgiref}"
    if extras:
        name += "-x" + hashlib.sha256("\n".join(extras).encode()).hexdigest()[:8]
    return name


def _pin(package: str, version: str) -> str:
    """``django==6.1.*`` for ``6.1``, ``django==5.2.19`` for ``5.2.19``."""
    return (
        f"{package}=={version}" if len(version_tuple(version)) == 3 else f"{package}=={version}.*"
    )


def _override(django: str | None) -> str | None:
    """The requirement replacing the lock's Django, if one is needed."""
    locked = locked_django()
    if django is None or (locked is not None and version_matches(locked, django)):
        return None
    return _pin("django", django)


def _overrides(django: str | None, asgiref: str | None) -> str | None:
    """Every line of the override file (None: the lock as it is)."""
    lines = [line for line in (_override(django),) if line is not None]
    locked = locked_versions().get("asgiref")
    if asgiref is not None and not (locked is not None and version_matches(locked, asgiref)):
        lines.append(_pin("asgiref", asgiref))
    return "\n".join(lines) or None


def _fingerprint(interp: Interpreter, override: str | None, extras: Sequence[str] = ()) -> str:
    digest = hashlib.sha256()
    digest.update(LOCK_FILE.read_bytes() if LOCK_FILE.exists() else b"")
    payload: list[Any] = [interp.path, interp.version, override, EXPORT_ARGS]
    if extras:
        payload.append(list(extras))
    digest.update(json.dumps(payload).encode())
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
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made if missing) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def find_uv() -> str:
    """The uv executable (on PATH, or beside the Python that runs us). ``RuntimeSetupError``."""
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


def uv_env() -> dict[str, str]:
    """The environment uv runs in: ours without what points a Python at our packages, and
    never downloading an interpreter."""
    return {**clean_env(), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}


def run_captured(
    argv: Sequence[str],
    what: str,
    *,
    timeout: float = BUILD_TIMEOUT_S,
    cwd: Path = REPO_ROOT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end, output captured (``env``: ``uv_env()``), whatever its exit
    status. ``RuntimeSetupError`` (one line, starting with ``what``) when it cannot start
    or has not ended within ``timeout``."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
            env=uv_env() if env is None else env,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeSetupError(f"{what}: no result within {timeout:g}s") from None
    except OSError as exc:
        raise RuntimeSetupError(f"{what}: {exc}") from None


def _run(argv: Sequence[str], what: str, timeout: float = BUILD_TIMEOUT_S) -> str:
    done = run_captured(argv, what, timeout=timeout)
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
    asgiref: str | None = None,
    extras: Sequence[str] = (),
) -> Runtime:
    """The environment of ``interp`` with the locked packages (and ``django``'s and
    ``asgiref``'s releases instead of the lock's when given, plus ``extras``), built
    once and reused. ``RuntimeSetupError``."""
    folder = root or venvs_dir()
    name = venv_name(interp, django, asgiref, extras)
    venv = folder / name
    marker = venv / MARKER
    override = _overrides(django, asgiref)
    fingerprint = _fingerprint(interp, override, extras)
    with file_lock(folder / f".{name}.lock"):
        try:
            saved = json.loads(marker.read_text())
        except (OSError, ValueError):
            saved = None
        python = venv / "bin" / "python"
        if saved and saved.get("fingerprint") == fingerprint and python.exists():
            return _runtime_from(interp, venv, django, saved["runtime"])
        say(f"Building {venv} ({interp.label}, {override or 'the locked versions'})...")
        began = time.monotonic()
        uv = find_uv()
        if venv.exists():
            shutil.rmtree(venv)
        with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
            requirements = Path(tmp) / "requirements.txt"
            _run([uv, *EXPORT_ARGS, "-o", str(requirements)], "uv export (the locked versions)")
            if extras:
                with requirements.open("a") as fh:
                    fh.write("".join(f"{line}\n" for line in extras))
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
        have = str((data.get("packages") or {}).get("asgiref"))
        if asgiref is not None and not version_matches(have, asgiref):
            raise RuntimeSetupError(
                f"{venv} holds asgiref {have}, not the {asgiref} that was asked for"
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
