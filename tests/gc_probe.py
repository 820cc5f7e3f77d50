"""A WSGI app that reports its process's garbage-collector state, for tests.

Every path answers JSON: ``pid``, ``enabled`` (``gc.isenabled()``),
``threshold`` (``gc.get_threshold()``) and ``frozen`` (``gc.get_freeze_count()``),
so a test can check that a server's gc hooks ran in its workers.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    body = json.dumps(
        {
            "pid": os.getpid(),
            "enabled": gc.isenabled(),
            "threshold": list(gc.get_threshold()),
            "frozen": gc.get_freeze_count(),
        }
    ).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
