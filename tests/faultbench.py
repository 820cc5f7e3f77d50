"""``python -m tests.faultbench [bench options]``: the real ``runners.bench`` driver,
serving test-only fault apps (``tests/faultapp.py``) for some runners.

``FAULT_APPS`` (JSON) maps a runner name to the app import target its servers
serve instead of Django, e.g. ``{"gunicorn-sync": "tests.faultapp:hang_wsgi"}``.
Nothing else changes: the options, the matrix, the processes and the files are
those of ``python -m runners.bench``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator

from runners import hosting
from runners.bench import main as bench_main
from runners.serving import server as process
from runners.serving.server import RunningServer, ServeConfig


def main() -> int:
    apps: dict[str, str] = json.loads(os.environ.get("FAULT_APPS") or "{}")
    real_serve = process.serve

    @contextlib.contextmanager
    def serve(config: ServeConfig) -> Iterator[RunningServer]:
        app = apps.get(config.runner.name)
        with real_serve(dataclasses.replace(config, app=app) if app else config) as server:
            yield server

    # The local host serves through this name (runners.hosting.LocalHost).
    setattr(hosting, "serve", serve)  # noqa: B010 - replacing the imported name is the point
    return bench_main.main()


if __name__ == "__main__":
    sys.exit(main())
