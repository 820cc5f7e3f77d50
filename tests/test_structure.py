"""The code's shape: imports run one way, every class name is used once, and no function
is longer than 80 lines.

Read with ``ast`` (nothing is imported), so it runs in the fast tier. ``LAYERS`` is the
README's layering as a table, lowest first: a module may import from its own package
and from lower layers, never from a higher one or from a sibling package of its own
layer. A name is matched by its longest prefix in the table (``runners.cli.args`` and
``runners.cli.signals`` are the small helpers every command shares, below everything;
the commands of ``runners.cli`` are at the top).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("apps", "loadtests", "runners")

LAYERS: dict[str, int] = {
    "apps": 0,  # the subject: imports nothing of the suite
    "runners": 0,  # REPO_ROOT
    "runners.vocabulary": 0,
    "runners.cli.args": 0,
    "runners.cli.signals": 0,
    "runners.serving": 1,
    "runners.sampling": 2,
    "runners.runtimes": 2,
    "runners.results": 3,
    "runners.project": 3,
    "runners.hosting": 4,
    "loadtests": 4,
    "runners.load": 5,
    "runners.micro": 5,
    "runners.agent": 5,
    "runners.report": 6,
    "runners.plan": 7,
    "runners.bench": 8,
    "runners.cli": 9,
}

# Django's own conventions: every management command is a ``Command``, model options
# are ``Meta``, every migration is a ``Migration``.
FRAMEWORK_NAMES = {"Command", "Meta", "Migration"}


def home(module: str) -> str:
    """The longest prefix of ``module`` in ``LAYERS`` (KeyError for none)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return prefix
    raise KeyError(module)


def modules() -> dict[str, Path]:
    found = {}
    for root in SOURCES:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            rel = path.relative_to(REPO_ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    return found


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of the suite's own code, function-level
    ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in SOURCES]
    return found


def allowed(source: str, target: str) -> bool:
    top = package(source)
    if target == top or target.startswith(top + "."):
        return True  # inside its own package
    return LAYERS[home(target)] < LAYERS[home(source)]


def package(module: str) -> str:
    """``runners.bench`` for ``runners.bench.main``; ``loadtests`` for ``loadtests.probes``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "runners" and len(parts) > 1 else parts[0]


def wrong_way(found: dict[str, Path], root: Path = REPO_ROOT) -> list[str]:
    wrong = []
    for module, path in found.items():
        for line, target in imports(path):
            if not allowed(module, target):
                wrong.append(
                    f"{path.relative_to(root)}:{line}: {module} ({home(module)}, layer "
                    f"{LAYERS[home(module)]}) imports {target} ({home(target)}, layer "
                    f"{LAYERS[home(target)]})"
                )
    return wrong


def test_every_module_has_a_layer() -> None:
    missing = []
    for module in modules():
        try:
            home(module)
        except KeyError:
            missing.append(module)
    assert not missing, f"add these to LAYERS: {missing}"


def test_imports_run_one_way() -> None:
    wrong = wrong_way(modules())
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check itself sees an import from a higher layer and from a sibling."""
    low = tmp_path / "serving_mod.py"
    low.write_text("from runners.bench.options import Options\nimport runners.results.record\n")
    sibling = tmp_path / "sampling_mod.py"
    sibling.write_text("from runners.runtimes import venvs\n")
    found = {"runners.serving.fake": low, "runners.sampling.fake": sibling}
    wrong = wrong_way(found, tmp_path)
    assert len(wrong) == 3, wrong
    assert any("imports runners.bench.options" in w for w in wrong)
    assert any("imports runners.runtimes" in w for w in wrong)


def test_every_class_name_is_used_once() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name not in FRAMEWORK_NAMES:
                where[node.name].append(f"{module}:{node.lineno}")
    shared = {name: places for name, places in where.items() if len(places) > 1}
    assert not shared, f"class names defined more than once: {shared}"


MAX_FUNCTION_LINES = 80


def long_functions(found: dict[str, Path]) -> list[str]:
    """The functions of ``found`` longer than ``MAX_FUNCTION_LINES``, with their length."""
    long = []
    for module, path in found.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}:{node.lineno} {node.name} ({lines} lines)")
    return long


def test_no_function_is_longer_than_80_lines(tmp_path: Path) -> None:
    """A function that does one job fits a screen: split a longer one into named steps."""
    assert not long_functions(modules()), long_functions(modules())
    # The check itself sees one.
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert long_functions({"runners.fake": long}) == [
        f"runners.fake:1 f ({MAX_FUNCTION_LINES + 1} lines)"
    ]
