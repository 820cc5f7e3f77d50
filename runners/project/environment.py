"""The project's own virtual environment: its dependencies and the suite's servers.

``project_environment(layout, requirements, python, say)``
    A virtual environment in ``.data/venvs/project-<name>-<folder hash>-<interpreter>``
    (``BENCH_VENVS_DIR`` moves it) made by ``uv venv`` with ``python`` (a version or a
    path, as ``--python`` takes it; never downloaded) and filled by one ``uv pip
    install`` of

    - the project's dependencies, as the project pins them: ``requirements`` (pip's
      format) when given, else its ``uv.lock`` (``uv export --frozen`` of the project's
      own packages, without its dev groups, its workspace members or local path
      packages), else its ``pyproject.toml``'s ``[project].dependencies``, else its
      ``requirements.txt``; with none of these, Django at the suite's locked release;
    - the servers at the releases in the suite's ``uv.lock`` (``SERVERS``). They are
      also *overrides*: a project that pins gunicorn itself is served by the suite's
      gunicorn, whose command lines the runners are written for (said in one line).
      uvloop and httptools are held to the lock's releases as constraints.

    Lines of a requirements file that install a local folder inside the project (``-e .``)
    are left out, and said so: building them would write into the project. Everything
    runs in a temporary folder, so uv writes no ``.venv`` or ``uv.lock`` into the
    project. When the project's pins and the servers' requirements cannot be resolved
    together, ``ProjectError`` names both sides in one line.

    The marker file of ``runners.runtimes.venvs`` keeps a hash of the dependency files'
    content, the servers' releases and the interpreter: the environment is reused while
    they are unchanged, rebuilt otherwise, under the same file lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runners.project.errors import ProjectError
from runners.project.layout import ProjectLayout
from runners.runtimes.interpreters import Interpreter, InterpreterNotFound, find_interpreter
from runners.runtimes.releases import locked_versions, venvs_dir
from runners.runtimes.venvs import (
    MARKER,
    RuntimeSetupError,
    file_lock,
    find_uv,
    run_captured,
)

# The servers the runners start, with the extra the uvicorn runners need (uvloop,
# httptools); their releases come from the suite's uv.lock.
SERVERS: tuple[tuple[str, str], ...] = (
    ("gunicorn", ""),
    ("uvicorn", "[standard]"),
    ("uvicorn-worker", ""),
    ("granian", ""),
    ("waitress", ""),
    ("hypercorn", ""),
    ("daphne", ""),
    ("pyuwsgi", ""),
)

# Installed through the servers (uvicorn[standard]); held to the lock's releases where
# they are installed (a constraint keeps the markers that leave uvloop off PyPy).
SERVER_LIBRARIES = ("uvloop", "httptools")

EXPORT_ARGS = (
    "export",
    "--frozen",
    "--no-hashes",
    "--no-header",
    "--no-emit-workspace",
    "--no-emit-local",
    "--no-default-groups",
    "--format",
    "requirements.txt",
)
"""The lock's pins of the project's own packages: the project itself, its workspace
members and local path packages are not built (that would write into the project)."""

SourceKind = Literal["requirements", "uv.lock", "pyproject.toml", "requirements.txt", "none"]

# Bumped when what goes into an environment changes, so old ones are rebuilt.
_RECIPE = 1

# A requirement's name, where the line starts with one (not a URL or a path).
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?=$|[\[;@<>=!~ (])")

_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)$")

_FIND_LINKS = re.compile(r"^(-f|--find-links)(?:\s*=\s*|\s+)(\S+)$")

_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s*=\s*|\s+)(\S+)$")


@dataclass(frozen=True)
class ProjectEnv:
    """A built project environment: its ``python``, Django and asgiref releases, every
    installed package (``packages``, name to version) and ``installed_hash``, the sha256
    of the sorted ``name==version`` lines. ``source`` says where the project's
    dependencies came from: ``requirements.txt``, ``uv.lock``, ``pyproject.toml``, the
    ``--requirements`` file's path, or ``no dependency file``."""

    python: str
    venv: Path
    django: str
    asgiref: str | None
    installed_hash: str
    packages: dict[str, str]
    source: str


@dataclass(frozen=True)
class Requirements:
    """The project's dependencies as the environment receives them: ``lines`` (pip's
    format, local project folders left out), the ``pins`` they name (normalised name to
    its line), the ``skipped`` lines and the content the environment is keyed by."""

    kind: SourceKind
    label: str
    lines: tuple[str, ...]
    pins: dict[str, str]
    skipped: tuple[str, ...]
    key: str


def normalise(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_environment(
    layout: ProjectLayout,
    requirements: Path | None,
    python: str,
    say: Callable[[str], None] = lambda text: None,
    *,
    venvs: Path | None = None,
) -> ProjectEnv:
    """The environment of ``layout``'s project on the interpreter ``python``, built once
    and reused. ``ProjectError`` (one line) when it cannot be built."""
    try:
        interp = find_interpreter(python)
    except InterpreterNotFound as exc:
        raise ProjectError(str(exc)) from None
    wanted = project_requirements(layout.root, requirements)
    servers = server_requirements(wanted.pins)
    folder = venvs or venvs_dir()
    name = venv_name(layout, interp)
    venv = folder / name
    fingerprint = _fingerprint(interp, wanted, servers)
    with file_lock(folder / f".{name}.lock"):
        reused = _reuse(venv, fingerprint)
        if reused is not None:
            return reused
        return _build(layout, interp, wanted, venv, fingerprint, say)


def venv_name(layout: ProjectLayout, interp: Interpreter) -> str:
    """``project-mysite-1a2b3c4d-py3.11.7``: the folder's name and a hash of its path (two
    projects called ``mysite`` get two environments), and the interpreter."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", layout.name).strip("-") or "project"
    where = hashlib.sha256(str(layout.root).encode()).hexdigest()[:8]
    return f"project-{slug}-{where}-{interp.tag}"


# -- the project's dependencies ------------------------------------------------------------


def project_requirements(root: Path, requirements: Path | None) -> Requirements:
    """Where the project's dependencies come from, read (``uv.lock`` is exported later,
    when an environment is built). ``ProjectError`` for a file that cannot be read."""
    if requirements is not None:
        path = Path(requirements).expanduser().resolve()
        if not path.is_file():
            raise ProjectError(f"--requirements {requirements}: no such file")
        return _from_requirements_file(path, root, "requirements", str(path))
    lock, pyproject = root / "uv.lock", root / "pyproject.toml"
    if lock.is_file():
        key = hashlib.sha256(_read_bytes(lock) + b"\0" + _read_bytes(pyproject)).hexdigest()
        return Requirements("uv.lock", "uv.lock", (), {}, (), key)
    if pyproject.is_file():
        dependencies = _pyproject_dependencies(pyproject)
        if dependencies:
            lines, pins, skipped = _filter(dependencies, root, root)
            key = hashlib.sha256("\n".join(dependencies).encode()).hexdigest()
            return Requirements("pyproject.toml", "pyproject.toml", lines, pins, skipped, key)
    text = root / "requirements.txt"
    if text.is_file():
        return _from_requirements_file(text, root, "requirements.txt", "requirements.txt")
    return Requirements("none", "no dependency file", (), {}, (), "")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror or exc}") from None


def _pyproject_dependencies(path: Path) -> list[str]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProjectError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    project = doc.get("project")
    dependencies = project.get("dependencies") if isinstance(project, dict) else None
    if not isinstance(dependencies, list):
        return []
    return [str(d) for d in dependencies]


def _from_requirements_file(path: Path, root: Path, kind: SourceKind, label: str) -> Requirements:
    raw = list(_flatten(path))
    lines, pins, skipped = _filter(raw, path.parent, root)
    key = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return Requirements(kind, label, lines, pins, skipped, key)


def _logical_lines(path: Path) -> Iterator[str]:
    """The lines of a requirements file without comments, continuations joined."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    return requirement_lines(text)


def requirement_lines(text: str) -> Iterator[str]:
    """The lines of a requirements text without comments, continuations joined."""
    pending = ""
    for physical in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", physical).rstrip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line, pending = (pending + line.strip()).strip(), ""
        if line:
            yield line
    if pending.strip():
        yield pending.strip()


def _flatten(path: Path, seen: tuple[Path, ...] = ()) -> Iterator[str]:
    """Every line of a requirements file with its ``-r`` includes read in place, and the
    relative paths of ``-c`` and ``--find-links`` made absolute (the file uv reads is
    written elsewhere)."""
    if path in seen:
        return
    for line in _logical_lines(path):
        include = _INCLUDE.match(line)
        links = _FIND_LINKS.match(line)
        if include is not None:
            target = (path.parent / include.group(2)).resolve()
            if include.group(1) in ("-r", "--requirement"):
                if not target.is_file():
                    raise ProjectError(f"{path}: {line}: no such file")
                yield from _flatten(target, (*seen, path))
            else:
                yield f"-c {target}"
        elif links is not None and "://" not in links.group(2):
            yield f"--find-links {(path.parent / links.group(2)).resolve()}"
        else:
            yield line


def _local_path(line: str, base: Path) -> Path | None:
    """The folder or file a requirement line installs from this disk (None for a name or a
    remote URL): ``.``, ``./pkg``, ``-e .``, ``file:///...``, ``name @ file:///...``."""
    editable = _EDITABLE.match(line)
    spec = editable.group(1) if editable else line.split(";")[0].strip()
    if " @ " in spec:
        spec = spec.split(" @ ", 1)[1].strip()
    if spec.startswith("file:"):
        return Path(re.sub(r"^file:(//)?", "", spec)).expanduser()
    if "://" in spec or not (spec.startswith((".", "/", "~")) or "/" in spec):
        return None
    return (base / Path(spec.split("[")[0]).expanduser()).resolve()


def _filter(
    raw: Sequence[str], base: Path, root: Path
) -> tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]:
    """(lines to install, the names they pin, the lines left out): a local path inside the
    project is left out (building it writes into the project), one outside it is made
    absolute."""
    lines: list[str] = []
    pins: dict[str, str] = {}
    skipped: list[str] = []
    for line in raw:
        local = _local_path(line, base) if not line.startswith(("-c ", "--")) else None
        if local is not None:
            if local == root or root in local.parents:
                skipped.append(line)
                continue
            lines.append(f"-e {local}" if _EDITABLE.match(line) else str(local))
            continue
        lines.append(line)
        name = _NAME.match(line) if not line.startswith("-") else None
        if name is not None:
            pins.setdefault(normalise(name.group(1)), line.split(";")[0].strip())
    return tuple(lines), pins, tuple(skipped)


def _export_lock(uv: str, root: Path, work: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """The project's ``uv.lock`` as pinned requirement lines (``uv export --frozen``, run
    from ``work``: nothing is written into the project)."""
    done = _uv([uv, *EXPORT_ARGS, "--project", str(root)], work, f"uv export of {root / 'uv.lock'}")
    if done.returncode != 0:
        raise ProjectError(f"cannot export {root / 'uv.lock'}: {_first_error(done)}")
    lines, pins, _ = _filter(list(requirement_lines(done.stdout)), root, root)
    return lines, pins


# -- the servers -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerPins:
    """What the suite adds: ``requirements`` (servers, and Django when the project names
    none: ``added_django``), ``overrides`` (the servers' releases, above any pin of the
    project), ``constraints`` (their libraries' releases) and the servers' ``versions``."""

    requirements: tuple[str, ...]
    overrides: tuple[str, ...]
    constraints: tuple[str, ...]
    versions: dict[str, str]
    added_django: str | None


def server_requirements(pins: dict[str, str]) -> ServerPins:
    """The suite's servers at its locked releases, and Django's locked release when the
    project's own requirements (``pins``) name no Django."""
    locked = locked_versions()
    missing = [name for name, _ in SERVERS if name not in locked]
    if missing or "django" not in locked:
        raise ProjectError(
            f"the suite's uv.lock does not pin {', '.join(missing or ['django'])}: "
            "cannot install the servers at their releases"
        )
    versions = {name: locked[name] for name, _ in SERVERS}
    requirements = [f"{name}{extra}=={locked[name]}" for name, extra in SERVERS]
    overrides = [f"{name}{extra}=={locked[name]}" for name, extra in SERVERS]
    constraints = [f"{name}=={locked[name]}" for name in SERVER_LIBRARIES if name in locked]
    added = None
    if "django" not in pins:
        added = locked["django"]
        requirements.insert(0, f"django=={added}")
    return ServerPins(tuple(requirements), tuple(overrides), tuple(constraints), versions, added)


def overridden(pins: dict[str, str], servers: ServerPins) -> list[str]:
    """One sentence per server the project pins itself to another release."""
    said = []
    for name, version in servers.versions.items():
        line = pins.get(name)
        if line is not None and not re.search(rf"==\s*{re.escape(version)}(\s|$|,)", line):
            said.append(
                f"the project asks for {line}; the suite serves its own {name} {version} "
                "(the runners' command lines are written for it)"
            )
    return said


# -- build and reuse -----------------------------------------------------------------------


def _fingerprint(interp: Interpreter, wanted: Requirements, servers: ServerPins) -> str:
    """The environment's key: the interpreter by the file it runs (the same Python through
    the virtual environments of ``tox -e bench``, ``serve`` and ``ui``), the dependencies
    and the servers."""
    payload: list[Any] = [
        _RECIPE,
        os.path.realpath(interp.path),
        interp.version,
        wanted.kind,
        wanted.key,
        list(servers.requirements),
        list(servers.overrides),
        list(servers.constraints),
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _reuse(venv: Path, fingerprint: str) -> ProjectEnv | None:
    try:
        saved = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return None
    python = venv / "bin" / "python"
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        return None
    if not python.exists():
        return None
    try:
        return _env_from(venv, dict(saved["packages"]), str(saved.get("source", "none")))
    except (KeyError, TypeError, ValueError):
        return None


def _env_from(venv: Path, packages: dict[str, str], source: str) -> ProjectEnv:
    if "django" not in packages:
        raise ProjectError(f"{venv} has no Django installed: the project's requirements lack it")
    return ProjectEnv(
        python=str(venv / "bin" / "python"),
        venv=venv,
        django=packages["django"],
        asgiref=packages.get("asgiref"),
        installed_hash=installed_hash(packages),
        packages=dict(sorted(packages.items())),
        source=source,
    )


def installed_hash(packages: dict[str, str]) -> str:
    """sha256 of the sorted ``name==version`` lines of an installed set."""
    lines = sorted(f"{normalise(name)}=={version}" for name, version in packages.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _build(
    layout: ProjectLayout,
    interp: Interpreter,
    wanted: Requirements,
    venv: Path,
    fingerprint: str,
    say: Callable[[str], None],
) -> ProjectEnv:
    try:
        uv = find_uv()
    except RuntimeSetupError as exc:
        raise ProjectError(str(exc).splitlines()[0]) from None
    say(f"Building {venv} for {layout.name} ({wanted.label}, {interp.label})...")
    for line in wanted.skipped:
        say(f"not installed from {wanted.label}: {line} (a folder inside the project)")
    began = time.monotonic()
    if venv.exists():
        shutil.rmtree(venv)
    with tempfile.TemporaryDirectory(prefix="bench-project-") as tmp:
        work = Path(tmp)
        lines, pins = wanted.lines, wanted.pins
        if wanted.kind == "uv.lock":
            lines, pins = _export_lock(uv, layout.root, work)
        servers = server_requirements(pins)
        if wanted.kind == "none":
            say(
                f"{layout.name} has no requirements.txt, uv.lock or pyproject.toml "
                f"dependencies: installing only Django {servers.added_django} (the suite's "
                "release) and the servers"
            )
        elif servers.added_django is not None:
            say(
                f"{wanted.label} names no Django: installing Django {servers.added_django} "
                "(the suite's release)"
            )
        for sentence in overridden(pins, servers):
            say(sentence)
        packages = _install(uv, interp, venv, work, (lines, pins), servers)
    env = _env_from(venv, packages, wanted.label)
    marker = {
        "fingerprint": fingerprint,
        "built_at": time.time(),
        "project": str(layout.root),
        "source": wanted.label,
        "packages": env.packages,
    }
    (venv / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    say(
        f"Built {venv.name} in {time.monotonic() - began:.1f}s (Django {env.django}, "
        f"{len(packages)} packages)."
    )
    return env


def _install(
    uv: str,
    interp: Interpreter,
    venv: Path,
    work: Path,
    project: tuple[Sequence[str], dict[str, str]],
    servers: ServerPins,
) -> dict[str, str]:
    """``uv venv`` and one ``uv pip install`` of the project's lines with the servers, run
    from ``work``; what is installed. A failed install leaves no environment."""
    lines, pins = project
    _write(work / "project.txt", lines)
    _write(work / "servers.txt", servers.requirements)
    _write(work / "overrides.txt", servers.overrides)
    _write(work / "constraints.txt", servers.constraints)
    made = _uv(
        [uv, "venv", "--python", interp.path, "--no-python-downloads", str(venv)],
        work,
        f"uv venv with {interp.path}",
    )
    if made.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise ProjectError(f"cannot make {venv} with {interp.path}: {_first_error(made)}")
    python = str(venv / "bin" / "python")
    install = [uv, "pip", "install", "--python", python, "-r", "project.txt"]
    install += ["-r", "servers.txt", "--override", "overrides.txt"]
    install += ["--constraint", "constraints.txt"]
    done = _uv(install, work, f"installing the requirements into {venv}")
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise ProjectError(explain_failure(done.stderr + done.stdout, pins, servers))
    return frozen_packages(uv, python, work)


def _write(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _uv(argv: Sequence[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    """uv run from ``cwd`` (a temporary folder: never the project's)."""
    try:
        return run_captured(argv, what, cwd=cwd)
    except RuntimeSetupError as exc:
        raise ProjectError(str(exc)) from None


def frozen_packages(uv: str, python: str, cwd: Path) -> dict[str, str]:
    """Name to version of everything installed for ``python`` (``uv pip freeze``); a
    package installed from a URL or path maps to that."""
    done = _uv([uv, "pip", "freeze", "--python", python], cwd, f"uv pip freeze of {python}")
    if done.returncode != 0:
        raise ProjectError(f"cannot list the packages of {python}: {_first_error(done)}")
    packages: dict[str, str] = {}
    for line in done.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            name, _, version = line.partition(" @ ")
        packages[normalise(name.strip().removeprefix("-e").strip())] = version.strip()
    return packages


# -- uv's failures, in one line ----------------------------------------------------------

_DEPENDS = re.compile(
    r"(?P<who>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(?P<whospec>[^\s]*) depends? on "
    r"(?P<dep>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(?P<depspec>[^\s]*)"
)


def _first_error(done: subprocess.CompletedProcess[str]) -> str:
    return first_error_line(done.stderr + done.stdout) or f"exit status {done.returncode}"


def first_error_line(output: str) -> str | None:
    lines = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
    first = next((line for line in lines if "error" in line.lower()), None)
    return first or (lines[-1] if lines else None)


def explain_failure(output: str, pins: dict[str, str], servers: ServerPins) -> str:
    """uv's failure to install as one line: the project's pin and the suite's requirement
    that conflict when uv's explanation names them, else uv's first reason."""
    suite = dict(servers.versions)
    if servers.added_django is not None:
        suite["django"] = servers.added_django
    text = " ".join(output.split())
    for match in _DEPENDS.finditer(text):
        who, dep = normalise(match["who"]), normalise(match["dep"])
        needs = f"{match['dep']}{match['depspec'].rstrip(',.')}"
        if who in suite and dep in pins and dep not in suite:
            label = (
                f"Django {suite[who]} (the suite's release: the project names no Django)"
                if who == "django" and servers.added_django is not None
                else f"{who} {suite[who]} (the suite's server)"
            )
            return f"the project pins {pins[dep]} but {label} needs {needs}"
        if who not in suite and dep in suite:
            whose = f"{match['who']}{match['whospec'].rstrip(',.')}"
            return f"the project's {whose} needs {needs} but the suite serves {dep} {suite[dep]}"
    reason = re.search(r"Because (.+?)(?:, we can conclude|\.(?:\s|$)|$)", text)
    if reason is not None:
        return f"uv cannot install the project's requirements: {reason.group(1)}"
    first = first_error_line(output) or "no output"
    return f"uv cannot install the project's requirements: {first}"
