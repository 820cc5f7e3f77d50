"""The runtime dimensions of a matrix: interpreters, Django releases, gc modes.

``runners.bench`` multiplies every runner x workload x users cell by them:

- ``--python 3.11,3.12`` (versions or paths; ``runners.runtimes.interpreters`` finds
  them): the servers run on each interpreter, from a virtual environment with
  the locked versions. Without it the servers run on the driver's own Python.
- ``--django 5.2,6.1``: the same with each Django release.
- ``--gc default,freeze,off``: the garbage-collector modes of
  ``runners/serving/servers/gcmode.py``. They act on what a pre-fork master imports
  before it forks, so they apply to the runners whose master preloads the app
  (``gunicorn-sync-preload``, ``gunicorn-sync-freeze``, ``uwsgi``,
  ``gunicorn-uvicorn``, ``gunicorn-asgi``): each of those runs once per mode.
  A pre-fork runner that imports the app in each worker after the fork
  (``gunicorn-sync``) has nothing shared to freeze: a mode other than
  ``default`` is refused for it (use ``gunicorn-sync-preload``). Every other
  runner (threads, async servers without a preloading master) runs once, with
  ``default``, and records it.

A run's id gets one qualifier per dimension that has more than one value,
e.g. ``gunicorn-sync-preload/json/16/1/py3.12.1/gc-freeze``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from runners.runtimes.interpreters import Interpreter, current_interpreter
from runners.runtimes.venvs import Runtime, current_runtime, runtime_env
from runners.serving.commands import GC_SERVERS
from runners.serving.registry import Runner
from runners.vocabulary import GC_MODES, GcMode


def gc_capable(runner: Runner) -> bool:
    """The runner's master imports the app, then forks: gc modes change what is shared."""
    return runner.server in GC_SERVERS and runner.preload


def parse_gcs(text: str) -> tuple[GcMode, ...]:
    """``default,freeze,off`` -> the modes; ``ValueError`` with the accepted ones."""
    items = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"malformed list {text!r} (expected e.g. default,freeze,off)")
    unknown = [item for item in items if item not in GC_MODES]
    if unknown:
        raise ValueError(
            f"unknown gc mode {', '.join(map(repr, unknown))} (accepted: {', '.join(GC_MODES)})"
        )
    return tuple(cast(GcMode, item) for item in dict.fromkeys(items))


def check_gcs(runners: Sequence[Runner], gcs: Sequence[GcMode]) -> None:
    """``ValueError`` for a pre-fork runner without preload asked for a non-default mode."""
    modes = [m for m in gcs if m != "default"]
    if not modes:
        return
    for runner in runners:
        if runner.family == "prefork" and not gc_capable(runner):
            raise ValueError(
                f"{','.join(modes)}: {runner.name} imports the app in each worker after the "
                f"fork (no preload), so there is nothing shared for gc {modes[0]} to keep; "
                "use gunicorn-sync-preload (the same server with --preload), or --gc default"
            )


def gc_modes_for(runner: Runner, gcs: Sequence[GcMode]) -> tuple[GcMode | None, ...]:
    """The modes ``runner`` runs under: each of ``gcs`` for a preloading pre-fork
    master, ``default`` for the others, the runner's own (None) without ``--gc``."""
    if not gcs:
        return (None,)
    if gc_capable(runner):
        return tuple(gcs)
    return ("default",)


@dataclass(frozen=True)
class RuntimeSpec:
    """One interpreter x Django x gc combination a run asks for (None: the default)."""

    python: Interpreter | None = None
    django: str | None = None
    gc: GcMode | None = None
    qualifiers: tuple[str, ...] = ()


DEFAULT_RUNTIME = RuntimeSpec()
"""The driver's interpreter, the locked Django, the runner's own gc mode."""


def runtime_specs(
    runner: Runner,
    pythons: Sequence[Interpreter],
    djangos: Sequence[str],
    gcs: Sequence[GcMode],
) -> list[RuntimeSpec]:
    """Every combination a runner's runs ask for, interpreters outermost."""
    out: list[RuntimeSpec] = []
    python_choices: list[Interpreter | None] = list(pythons) or [None]
    django_choices: list[str | None] = list(djangos) or [None]
    for python in python_choices:
        for django in django_choices:
            for gc in gc_modes_for(runner, gcs):
                qualifiers: list[str] = []
                if python is not None and len(pythons) > 1:
                    qualifiers.append(python.tag)
                if django is not None and len(djangos) > 1:
                    qualifiers.append(f"django{django}")
                if gc is not None and len(gcs) > 1:
                    qualifiers.append(f"gc-{gc}")
                out.append(RuntimeSpec(python, django, gc, tuple(qualifiers)))
    return out


def qualified(base: str, qualifiers: Sequence[str], sep: str = "/") -> str:
    """``base`` followed by the qualifiers: ``a/b/1/py3.12.1/gc-off``."""
    return sep.join([base, *qualifiers])


RuntimeKey = tuple[str | None, str | None]
"""Which built ``Runtime`` (virtual environment) a run uses: (interpreter path, Django)."""


def runtime_key(spec: RuntimeSpec) -> RuntimeKey:
    """The built runtime a spec runs on: (interpreter path or None, Django or None)."""
    return (spec.python.path if spec.python is not None else None, spec.django)


def build_runtimes(
    pythons: Sequence[Interpreter],
    djangos: Sequence[str],
    say: Callable[[str], None] = print,
) -> dict[RuntimeKey, Runtime]:
    """Every runtime of the matrix, built (or reused) now. Without ``--python`` and
    ``--django`` the servers run on the driver's own interpreter and packages."""
    if not pythons and not djangos:
        return {(None, None): current_runtime()}
    built: dict[RuntimeKey, Runtime] = {}
    python_choices: list[Interpreter | None] = list(pythons) or [None]
    django_choices: list[str | None] = list(djangos) or [None]
    for python in python_choices:
        interp = python or current_interpreter()
        for django in django_choices:
            key = (python.path if python is not None else None, django)
            built[key] = runtime_env(interp, django, say=say)
    return built
