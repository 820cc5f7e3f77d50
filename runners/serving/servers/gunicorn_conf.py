"""gunicorn config for every gunicorn runner (``-c python:runners.serving.servers.gunicorn_conf``).

Settings come from the command line; this file only adds the server hooks
that apply the garbage-collector mode of ``BENCH_GC`` (see ``gcmode``). It is
imported by the master before the app (even with ``--preload``), which is
where ``gc.disable()`` must happen for the ``freeze`` pattern. Under
``--memory-profile`` (see ``memprofile``) the master neither traces nor polls,
and records what the workers inherit before its first fork.
"""

from __future__ import annotations

from typing import Any

from runners.serving.servers import gcmode, memprofile

MODE = gcmode.from_env()
gcmode.in_master(MODE)
memprofile.in_master()


def pre_fork(server: Any, worker: Any) -> None:
    memprofile.before_fork()  # before gc.freeze(): get_objects() skips frozen objects
    gcmode.before_fork(MODE)


def post_fork(server: Any, worker: Any) -> None:
    gcmode.in_worker(MODE)


def post_worker_init(worker: Any) -> None:
    gcmode.fast_exit_at_shutdown(MODE)
