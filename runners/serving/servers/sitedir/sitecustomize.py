"""Loaded at start-up by every Python process of a server run with ``--memory-profile``.

``runners.sampling.memprofile.server_env`` puts this folder first on
``PYTHONPATH``, so ``site`` imports this file in the server's root and in every
process it forks or spawns (``multiprocessing`` children inherit the
environment). It starts ``runners.serving.servers.memprofile`` and then runs
the ``sitecustomize`` it shadows, if the interpreter has one (Debian's does).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

if os.environ.get("BENCH_MEMORY_PROFILE"):
    from runners.serving.servers import memprofile

    memprofile.install()


def _run_shadowed() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_run_shadowed()
