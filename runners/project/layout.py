"""Which folder is the project, and which settings module it runs with.

``find_project(path, settings=None)``
    ``path`` must be a folder. The settings module is found the way Django's own
    ``manage.py`` finds it: its ``os.environ.setdefault("DJANGO_SETTINGS_MODULE",
    "mysite.settings")`` (or an assignment to ``os.environ[...]``), read as text with
    ``ast`` and never executed; ``settings`` (``--settings``) overrides it. The module
    must be a file under the folder (``mysite/settings.py`` or
    ``mysite/settings/__init__.py``). Nothing is imported or installed here: every
    problem is one line (``ProjectError``) before anything else happens.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from runners.project.errors import ProjectError

MANAGE_PY = "manage.py"

SETTINGS_VARIABLE = "DJANGO_SETTINGS_MODULE"


@dataclass(frozen=True)
class ProjectLayout:
    """A project as found on disk: ``root`` (absolute), ``name`` (the folder's name), its
    ``manage.py`` if it has one, the ``settings`` module and its top ``package``."""

    root: Path
    name: str
    manage_py: Path | None
    settings: str
    package: str


def find_project(path: Path, settings: str | None = None) -> ProjectLayout:
    """The project in ``path``, with ``settings`` instead of the one ``manage.py`` names
    when given. ``ProjectError`` (one line) when it is not a Django project."""
    root = _folder(path)
    manage = root / MANAGE_PY
    manage_py = manage if manage.is_file() else None
    if settings is not None and settings.strip():
        module = settings.strip()
        origin = "--settings"
    elif manage_py is None:
        raise ProjectError(
            f"{root} is not a Django project: no {MANAGE_PY} in it{_nested_hint(root)} "
            "(give --settings MODULE for a project without one)"
        )
    else:
        found = settings_from_manage_py(manage_py)
        if found is None:
            raise ProjectError(
                f"{root} is not a Django project: its {MANAGE_PY} does not set "
                f"{SETTINGS_VARIABLE} (give --settings MODULE)"
            )
        module, origin = found, MANAGE_PY
    if not all(part.isidentifier() for part in module.split(".")):
        raise ProjectError(
            f"{origin} names {module!r}, which is not a module name like mysite.settings"
        )
    if settings_file(root, module) is None:
        tried = " or ".join(str(p.relative_to(root)) for p in _settings_candidates(root, module))
        raise ProjectError(
            f"{root} is not a Django project: its settings module {module} (from {origin}) "
            f"is not there (looked for {tried})"
        )
    return ProjectLayout(
        root=root,
        name=root.name,
        manage_py=manage_py,
        settings=module,
        package=module.split(".")[0],
    )


def _folder(path: Path) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ProjectError(f"{path}: no such folder (give the folder that holds manage.py)")
    if not folder.is_dir():
        raise ProjectError(f"{path} is a file, not a folder (give the folder that holds manage.py)")
    return folder.resolve()


def _nested_hint(root: Path) -> str:
    """`` (found backend/manage.py: give that folder)`` when exactly one subfolder has one."""
    try:
        nested = sorted(p for p in root.glob(f"*/{MANAGE_PY}") if p.is_file())
    except OSError:
        return ""
    if len(nested) != 1:
        return ""
    return f" (found {nested[0].relative_to(root)}: give {nested[0].parent})"


def settings_from_manage_py(manage_py: Path) -> str | None:
    """The settings module ``manage.py`` sets (None if it sets none), read with ``ast``.

    ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x.y")`` (also through ``from os
    import environ``) and ``os.environ["DJANGO_SETTINGS_MODULE"] = "x.y"``; the first in
    the file wins. ``ProjectError`` when the file cannot be read or parsed."""
    try:
        tree = ast.parse(manage_py.read_text(encoding="utf-8"), filename=str(manage_py))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise ProjectError(f"cannot read {manage_py}: {type(exc).__name__}: {exc}") from None
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr | ast.stmt):
            continue
        value = _setdefault_value(node) or _assigned_value(node)
        if value is not None:
            found.append((node.lineno, node.col_offset, value))
    return min(found)[2] if found else None


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or a bare ``environ``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name)
    return isinstance(node, ast.Name) and node.id == "environ"


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _setdefault_value(node: ast.AST) -> str | None:
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "setdefault"
        and _is_environ(node.func.value)
        and len(node.args) == 2
        and _text(node.args[0]) == SETTINGS_VARIABLE
    ):
        return None
    return _text(node.args[1])


def _assigned_value(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Assign) or len(node.targets) != 1:
        return None
    target = node.targets[0]
    if (
        isinstance(target, ast.Subscript)
        and _is_environ(target.value)
        and _text(target.slice) == SETTINGS_VARIABLE
    ):
        return _text(node.value)
    return None


def _settings_candidates(root: Path, module: str) -> tuple[Path, Path]:
    base = root.joinpath(*module.split("."))
    return base.with_name(base.name + ".py"), base / "__init__.py"


def settings_file(root: Path, module: str) -> Path | None:
    """The file of ``module`` under ``root`` (``a/b.py`` or ``a/b/__init__.py``), if any."""
    return next((p for p in _settings_candidates(root, module) if p.is_file()), None)
