"""A WSGI app whose every request (but ``/health``) allocates and keeps 96 MiB, for the
OOM-kill tests: under a 64 MiB memory limit the kernel kills the worker serving it.

Imported in each worker (a server without preload), it raises the worker's
``oom_score_adj`` to the most, so that the kernel picks a worker, not the master (whose
kill would end the run, not flag it): the pages it allocates are the worker's anyway."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ALLOCATE = 96 * 2**20
KEPT: list[bytes] = []

with contextlib.suppress(OSError):
    Path("/proc/self/oom_score_adj").write_text("1000")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/health":
        KEPT.append(b"x" * ALLOCATE)  # every page written: resident, charged to the cgroup
    body = json.dumps({"pid": os.getpid(), "kept": len(KEPT) * ALLOCATE}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
