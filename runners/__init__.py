"""The harness: serve the app (``serving``), drive it (``load``), sample it
(``sampling``), record it (``results``), render it (``report``); ``bench``
walks the matrix, ``runtimes`` varies the interpreter, ``micro`` times
Django's request path in-process, ``cli`` holds the small commands."""

from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository: commands run from here, with it on ``PYTHONPATH``."""
PYCACHE = REPO_ROOT / ".data" / "pycache"
"""Where the Python processes the suite starts keep their bytecode (``PYTHONPYCACHEPREFIX``)."""


def with_bytecode_cache(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a process the suite starts (``supervisor.spawn``: a server, Locust,
    the upstream): a Python one loads its
    modules compiled, as a deployment does, from a cache under ``.data/pycache``, never
    beside a project's sources, even where the caller turned writing bytecode off (a
    process that compiles every module it imports measures its compiler)."""
    cached = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return cached
