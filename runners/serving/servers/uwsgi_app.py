"""The WSGI app as uWSGI loads it: ``--module runners.serving.servers.uwsgi_app:application``.

uWSGI imports this in the master (unless ``--lazy-apps``: then in each
worker) and forks its workers right after, so the garbage-collector mode of ``BENCH_GC`` (see
``gcmode``) is applied around the import: ``in_master`` before it,
``before_fork`` after it, ``in_worker`` from uWSGI's post-fork hook. The app
is ``BENCH_WSGI_APP`` (``module:attribute``, default the Django app). Under
``--memory-profile`` (see ``memprofile``) the master stops tracing and
records what the workers inherit; ``--py-call-osafterfork`` runs the
``os.register_at_fork`` hooks that restart tracing in each worker.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from runners.serving.servers import gcmode, memprofile

MODE = gcmode.from_env()
gcmode.in_master(MODE)
try:
    import uwsgi
except ImportError:  # imported outside uWSGI (tests, tooling)
    uwsgi = None
if uwsgi is not None and uwsgi.worker_id() == 0:
    memprofile.in_master()  # before the import: the master does not trace

_module, _, _attr = os.environ.get("BENCH_WSGI_APP", "apps.project.wsgi:application").partition(":")
application: Any = getattr(importlib.import_module(_module), _attr or "application")


def _post_fork() -> None:
    gcmode.in_worker(MODE)
    gcmode.fast_exit_at_shutdown(MODE)


if uwsgi is not None:
    if uwsgi.worker_id() == 0:  # in the master: the workers are forked next
        previous = getattr(uwsgi, "post_fork_hook", None)

        def _chained_post_fork() -> None:
            _post_fork()
            if callable(previous):
                previous()

        uwsgi.post_fork_hook = _chained_post_fork
        memprofile.before_fork()  # before gc.freeze(): get_objects() skips frozen objects
        gcmode.before_fork(MODE)
    else:  # --lazy-apps: imported in the worker, after the fork
        _post_fork()
