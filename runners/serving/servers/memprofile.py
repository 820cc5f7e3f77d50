"""``--memory-profile`` inside the server: trace each worker's allocations and
write snapshots on request.

Off unless ``BENCH_MEMORY_PROFILE`` names a folder. Then every Python process
of the server loads this module at start-up (``sitedir/sitecustomize.py``,
put first on ``PYTHONPATH`` by ``runners.sampling.memprofile.server_env``:
one mechanism that reaches forked, spawned and single-process servers
alike) and ``install`` runs:

- ``tracemalloc`` starts (``BENCH_MEMORY_PROFILE_FRAMES`` frames per
  allocation, default 1) and a daemon thread polls the folder's ``trigger``
  file every 0.2 s;
- ``os.register_at_fork`` restarts both in every forked child: a worker's
  traces hold only what it allocated itself after the fork, and
  ``freeze_count_at_fork`` records ``gc.get_freeze_count()`` as inherited.

A pre-fork master (gunicorn's config file, ``uwsgi_app``) calls
``in_master`` (no tracing, no thread in the process that forks: the workers
restart them) and ``before_fork`` before its first fork: what the workers
inherit, written once to ``fork-<pid>.json``: object counts by type,
``gc.get_freeze_count()``, whether the app is imported. A master that spawns
its workers (uvicorn, hypercorn) or serves itself traces like a worker.

When the trigger file's content changes (``runners.sampling.memprofile.
request_snapshots`` writes a new label), each process writes
``snapshot-<label>-<pid>.json``: the traced bytes grouped by package and by
line, and object counts by type. Signals were not used: gunicorn's workers
reset every handler (SIGUSR2 would kill them) and its master reserves SIGUSR2.

Grouping by package, from the file of the most recent frame of each
allocation (``by_package``) and of the most recent frame outside the standard
library (``by_caller_package``: with 1 frame it is the same; raise
``BENCH_MEMORY_PROFILE_FRAMES`` to charge ``json.dumps`` to the view calling
it): ``django`` (Django and asgiref), ``app`` (``apps/``), ``server`` (the
server packages and ``runners/serving/servers``), ``stdlib``, ``imports``
(``importlib``'s bootstrap: the code objects and module bodies of modules
imported while tracing, e.g. what a worker imports lazily after the fork, which
preload did not share), ``native`` (no Python frame: allocations by the
interpreter or the server's C/Rust code outside any Python call) and ``rest``
(every other package). Serving a user's project (``BENCH_APP_ROOT``: its folder),
``app`` is the project's own code and every other installed package is its own group,
named after its top-level package (``wagtail``, ``PIL``): what each dependency costs.

Object counts are of the objects the garbage collector tracks (containers,
instances, functions, classes); ``str``, ``int``, ``bytes`` and ``float``
objects are not tracked and not counted. Counting writes every counted
object's reference count, which un-shares its page: take snapshots at the end
of a window, not during it. Standard library only: this runs in the servers.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import json
import os
import sys
import sysconfig
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ENV = "BENCH_MEMORY_PROFILE"
FRAMES_ENV = "BENCH_MEMORY_PROFILE_FRAMES"
TRIGGER = "trigger"
POLL_S = 0.2
TOP_LINES = 25
TOP_TYPES = 30
REPO_ROOT = Path(__file__).resolve().parents[3]
APP_ROOT_ENV = "BENCH_APP_ROOT"
APP_ROOT = os.environ.get(APP_ROOT_ENV) or str(REPO_ROOT / "apps")
"""The app's own code: the built-in ``apps/``, or the user's project folder."""
PER_PACKAGE = APP_ROOT_ENV in os.environ
"""A user's project: other installed packages are grouped one by one."""
SERVER_PACKAGES = frozenset(
    {
        "gunicorn",
        "uvicorn",
        "uvicorn_worker",
        "uvloop",
        "httptools",
        "h11",
        "h2",
        "hpack",
        "wsproto",
        "websockets",
        "granian",
        "waitress",
        "hypercorn",
        "daphne",
        "twisted",
        "autobahn",
        "txaio",
        "pyuwsgi",
    }
)
DJANGO_PACKAGES = frozenset({"django", "asgiref"})
_STDLIB = tuple(
    {str(Path(sysconfig.get_paths()[key]).resolve()) + os.sep for key in ("stdlib", "platstdlib")}
)
_SELF = str(Path(__file__).resolve())
_UNTRACED = frozenset(
    {tracemalloc.__file__, __file__, _SELF, str(Path(tracemalloc.__file__).resolve())}
)
"""Files whose allocations a summary leaves out (a ``Snapshot.filter_traces`` of them
matched every trace against fnmatch patterns: most of a snapshot's cost)."""


class _State:
    """This process's profiling state (one per process; reset in forked children)."""

    directory: Path | None = None
    frames: int = 1
    poller: threading.Thread | None = None
    stop: threading.Event | None = None
    traced_since: float | None = None
    traced_from: str = "start"
    freeze_count_at_fork: int | None = None
    fork_recorded: bool = False
    hooked: bool = False


_state = _State()


def directory() -> Path | None:
    """The output folder named by ``BENCH_MEMORY_PROFILE`` (None: profiling is off)."""
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


def install() -> None:
    """Start tracing and the trigger poller in this process (no-op when off)."""
    folder = directory()
    if folder is None:
        return
    _state.directory = folder
    _state.frames = max(1, int(os.environ.get(FRAMES_ENV, "1") or "1"))
    if not _state.hooked:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _state.hooked = True
    _start("start")


def in_master() -> None:
    """In a pre-fork master: neither trace nor poll here (the workers do, from the fork)."""
    if _state.directory is None:
        return
    _stop_poller()
    tracemalloc.stop()
    _state.traced_since = None


def before_fork() -> None:
    """In a pre-fork master before a fork: record once what the workers will inherit.

    Call it before any ``gc.freeze()`` of the same hook: ``gc.get_objects()``
    does not see frozen objects.
    """
    if _state.directory is None or _state.fork_recorded:
        return
    _state.fork_recorded = True
    record = {
        "pid": os.getpid(),
        "t": time.time(),
        "app_imported": "apps.project.settings" in sys.modules,
        "modules": len(sys.modules),
        "gc": _gc_state(),
        "objects": object_counts(),
    }
    _write_json(_state.directory / f"fork-{os.getpid()}.json", record)


def _after_fork_in_child() -> None:
    if _state.directory is None:
        return
    _state.freeze_count_at_fork = gc.get_freeze_count()
    _state.poller = None  # the parent's thread does not exist here
    _state.stop = None
    tracemalloc.stop()  # drop the traces inherited from the parent, if it traced
    _start("fork")


def _start(traced_from: str) -> None:
    tracemalloc.start(_state.frames)
    _state.traced_since = time.monotonic()
    _state.traced_from = traced_from
    _stop_poller()
    stop = threading.Event()
    last = _read_trigger()
    poller = threading.Thread(
        target=_poll, args=(stop, last), name="bench-memory-profile", daemon=True
    )
    _state.stop, _state.poller = stop, poller
    poller.start()


def _stop_poller() -> None:
    if _state.stop is not None and _state.poller is not None:
        _state.stop.set()
        if _state.poller is not threading.current_thread():
            _state.poller.join(timeout=2.0)
    _state.stop = _state.poller = None


def _read_trigger() -> str | None:
    if _state.directory is None:
        return None
    try:
        return (_state.directory / TRIGGER).read_text().strip()
    except OSError:
        return None


def _poll(stop: threading.Event, last: str | None) -> None:
    while not stop.wait(POLL_S):
        label = _read_trigger()
        if label and label != last:
            last = label
            # A failing snapshot must not take the worker down; the driver sees it missing.
            with contextlib.suppress(Exception):
                write_snapshot(label)


@functools.lru_cache(maxsize=4096)
def package_of(filename: str) -> str:
    """The group of a traced frame's file (see the module docstring); cached: a snapshot
    has tens of thousands of sites in a few hundred files."""
    if filename.startswith("<frozen importlib._bootstrap"):
        return "imports"
    if filename.startswith("<frozen "):
        return "stdlib"
    if not filename.startswith(os.sep):
        return "native" if filename == "<unknown>" else "rest"
    for marker in ("site-packages", "dist-packages"):
        _, sep, tail = filename.rpartition(os.sep + marker + os.sep)
        if sep:
            top = tail.split(os.sep, 1)[0].removesuffix(".py")
            if top in DJANGO_PACKAGES:
                return "django"
            if top in SERVER_PACKAGES:
                return "server"
            return top if PER_PACKAGE and top else "rest"
    if filename.startswith(APP_ROOT.rstrip(os.sep) + os.sep):
        return "app"
    if filename.startswith(str(REPO_ROOT / "runners" / "serving" / "servers") + os.sep):
        return "server"
    if filename.startswith(_STDLIB):
        return "stdlib"
    return "rest"


def short_path(filename: str) -> str:
    """A traced file's path from its package: ``django/db/models/query.py``."""
    for marker in ("site-packages", "dist-packages"):
        _, sep, tail = filename.rpartition(os.sep + marker + os.sep)
        if sep:
            return tail
    for prefix in (*_STDLIB, str(REPO_ROOT) + os.sep):
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    return filename


def _caller(frames: tracemalloc.Traceback) -> tracemalloc.Frame:
    """The most recent frame outside the standard library (the most recent one if none)."""
    for frame in reversed(frames):
        if package_of(frame.filename) not in ("stdlib", "imports", "native"):
            return frame
    return frames[-1]


def traced_summary(snapshot: tracemalloc.Snapshot, top: int = TOP_LINES) -> dict[str, Any]:
    """``by_package``, ``by_caller_package`` and ``top_lines`` of a tracemalloc snapshot."""
    by_package: collections.Counter[str] = collections.Counter()
    by_caller: collections.Counter[str] = collections.Counter()
    blocks: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[tuple[str, int]] = collections.Counter()
    line_blocks: collections.Counter[tuple[str, int]] = collections.Counter()
    for stat in snapshot.statistics("traceback"):
        frame = stat.traceback[-1]
        if frame.filename in _UNTRACED:  # tracemalloc's and this module's own allocations
            continue
        package = package_of(frame.filename)
        by_package[package] += stat.size
        blocks[package] += stat.count
        by_caller[package_of(_caller(stat.traceback).filename)] += stat.size
        lines[frame.filename, frame.lineno] += stat.size
        line_blocks[frame.filename, frame.lineno] += stat.count
    return {
        "by_package": [
            {"package": name, "bytes": size, "blocks": blocks[name]}
            for name, size in by_package.most_common()
        ],
        "by_caller_package": [
            {"package": name, "bytes": size} for name, size in by_caller.most_common()
        ],
        "top_lines": [
            {
                "file": short_path(filename),
                "line": lineno,
                "package": package_of(filename),
                "bytes": size,
                "blocks": line_blocks[filename, lineno],
            }
            for (filename, lineno), size in lines.most_common(top)
        ],
    }


def object_counts(top: int = TOP_TYPES) -> dict[str, Any]:
    """Objects the collector tracks (frozen ones excluded), counted by type."""
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        module = kind.__module__
        counts[kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"] += 1
    return {
        "total": sum(counts.values()),
        "by_type": [{"type": name, "count": n} for name, n in counts.most_common(top)],
    }


def _gc_state() -> dict[str, Any]:
    return {
        "enabled": gc.isenabled(),
        "threshold": list(gc.get_threshold()),
        "count": list(gc.get_count()),
        "freeze_count": gc.get_freeze_count(),
    }


def snapshot(label: str) -> dict[str, Any]:
    """What this process allocated since tracing started, and its objects, now."""
    if not tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is not tracing in this process")
    began = time.monotonic()
    traced = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    started = _state.traced_since
    summary = traced_summary(traced)
    objects = object_counts()
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "label": label,
        "t": time.time(),
        "argv0": sys.argv[0] if sys.argv else "",
        "frames": tracemalloc.get_traceback_limit(),
        "traced_from": _state.traced_from,
        "traced_seconds": None if started is None else round(time.monotonic() - started, 3),
        "traced_bytes": current,
        "traced_peak_bytes": peak,
        "tracemalloc_overhead_bytes": tracemalloc.get_tracemalloc_memory(),
        "freeze_count_at_fork": _state.freeze_count_at_fork,
        "gc": _gc_state(),
        **summary,
        "objects": objects,
        "snapshot_seconds": round(time.monotonic() - began, 3),
    }


def write_snapshot(label: str) -> Path:
    """``snapshot(label)`` to ``snapshot-<label>-<pid>.json`` in the folder (atomically)."""
    if _state.directory is None:
        raise RuntimeError(f"{ENV} is not set")
    path = _state.directory / f"snapshot-{label}-{os.getpid()}.json"
    _write_json(path, snapshot(label))
    return path


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
