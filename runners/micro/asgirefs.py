"""asgiref as a dimension of the micro-benchmarks: ``--asgiref 3.11,3.13``.

Django's ASGI handler gets its per-request thread from asgiref
(``ThreadSensitiveContext``), and asgiref 3.12 changed how that thread is
joined. ``python -m runners.micro --asgiref 3.11,3.13`` runs the chosen
benchmarks once per asgiref release, each in a virtual environment with the
suite's locked versions except asgiref (``runners.runtimes.venvs``, as
``--django`` does for the load tests), on the current interpreter. Every
benchmark name gets the release as a fourth part
(``asgi-async/minimal/json/asgiref-3.11``) and every benchmark records
``asgiref_version``; all of them go into one pyperf file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import metadata

from runners.runtimes.interpreters import current_interpreter, version_tuple
from runners.runtimes.releases import locked_versions
from runners.runtimes.venvs import Runtime, runtime_env

_RELEASE = re.compile(r"^\d+\.\d+(?:\.\d+)?$")

TAG_PREFIX = "asgiref-"

MIN_FALLBACK = "3.8.1"
"""Django 5.2's minimum asgiref, if the installed Django does not say."""


def django_minimum() -> str:
    """The lowest asgiref the installed Django accepts (from its requirements)."""
    for requirement in metadata.requires("django") or []:
        found = re.match(r"^asgiref\s*>=\s*([\d.]+)", requirement)
        if found:
            return found.group(1)
    return MIN_FALLBACK


def parse_asgirefs(text: str) -> tuple[str, ...]:
    """``"3.11,3.13"`` -> the releases; ``ValueError`` (one line) for a malformed list
    or a release older than the installed Django accepts."""
    items = [part.strip().removeprefix("asgiref").removeprefix("==") for part in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"--asgiref: malformed list {text!r} (expected e.g. 3.11,3.13)")
    bad = [item for item in items if not _RELEASE.match(item)]
    if bad:
        raise ValueError(f"--asgiref: {bad[0]!r} is not an asgiref release like 3.11 or 3.11.1")
    minimum = django_minimum()
    # 3.8 stands for the 3.8 series: compare the parts given.
    old = [i for i in items if version_tuple(i) < version_tuple(minimum)[: len(version_tuple(i))]]
    if old:
        raise ValueError(
            f"--asgiref {old[0]}: Django {metadata.version('django')} needs asgiref>={minimum}"
        )
    return tuple(dict.fromkeys(items))


def tag(release: str) -> str:
    """The fourth part of a benchmark name: ``asgiref-3.11``."""
    return TAG_PREFIX + release


def runtime(release: str, say: Callable[[str], None] = print) -> Runtime:
    """The virtual environment with asgiref ``release`` and pyperf (built once, reused).
    ``RuntimeSetupError`` when it cannot be built (an unknown release, no network)."""
    pyperf = locked_versions().get("pyperf")
    extras = (f"pyperf=={pyperf}" if pyperf else "pyperf",)
    return runtime_env(current_interpreter(), None, asgiref=release, extras=extras, say=say)


# pyperf's options naming the output file (replaced by --append in each child).
_OUTPUT_OPTIONS = ("-o", "--output", "--append")
_OWN_OPTIONS = ("--asgiref",)


def child_args(argv: Sequence[str], release: str, output: str) -> list[str]:
    """The arguments of the child run for ``release``: ``argv`` without ``--asgiref`` and
    the output options, appending to ``output`` and tagging every benchmark name."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in (*_OUTPUT_OPTIONS, *_OWN_OPTIONS):
            skip = "=" not in arg
            continue
        out.append(arg)
    return [*out, "--name-tag", tag(release), "--append", output, "--skip-prepare"]
