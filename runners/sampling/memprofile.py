"""``--memory-profile`` from the driver's side: what each worker allocated, by package.

The servers do the tracing (``runners/serving/servers/memprofile.py``); this
module starts them with it and reads what they write::

    folder = out / "memprofile"
    config = ServeConfig(..., env={**env, **server_env(folder)})
    with serve(config) as server:
        ...the measured window...
        found = snapshots(folder, "end", worker_pids)    # asks, then waits
    summary = summarize(found, roles, fork_records(folder))

``server_env`` puts ``runners/serving/servers/sitedir`` first on
``PYTHONPATH`` (its ``sitecustomize`` loads the shim in every Python process
of the server, forked or spawned) and sets ``UWSGI_ENABLE_THREADS`` (without
it uWSGI never releases the GIL to the shim's polling thread). Tracing slows
the server (see the report for the measured slowdown): a profiled run's
throughput and memory are not comparable with an unprofiled one's, so a
profile is a run of its own.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runners import REPO_ROOT
from runners.serving.servers import memprofile as shim

SITE_DIR = REPO_ROOT / "runners" / "serving" / "servers" / "sitedir"
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MIB = 2**20


def server_env(directory: Path, frames: int = 1) -> dict[str, str]:
    """Environment (for ``ServeConfig.env``) that profiles every process of a server
    into ``directory`` (created), with ``frames`` frames per allocation."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        # First on the servers' path (``runners.serving.server.server_env`` adds the rest).
        "PYTHONPATH": str(SITE_DIR),
        shim.ENV: str(directory.resolve()),
        shim.FRAMES_ENV: str(frames),
        "UWSGI_ENABLE_THREADS": "1",
    }


def request_snapshots(directory: Path, label: str) -> None:
    """Ask every profiled process to write ``snapshot-<label>-<pid>.json`` (within ~0.2 s)."""
    if not _LABEL.fullmatch(label):
        raise ValueError(f"snapshot label {label!r}: letters, digits, '_', '-', '.' only")
    tmp = directory / f".{shim.TRIGGER}.tmp"
    tmp.write_text(label)
    os.replace(tmp, directory / shim.TRIGGER)


def collect(
    directory: Path, label: str, pids: Iterable[int], timeout: float = 30.0
) -> dict[int, dict[str, Any]]:
    """The snapshots ``label`` in ``directory`` once every one of ``pids`` has written
    its own (or ``timeout`` has passed), plus those other processes wrote meanwhile
    (a spawning master, a helper): keyed by pid."""
    wanted = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        done = {pid for pid in wanted if (directory / f"snapshot-{label}-{pid}.json").exists()}
        if done == wanted or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    time.sleep(2 * shim.POLL_S)  # the others poll as often
    found: dict[int, dict[str, Any]] = {}
    for path in directory.glob(f"snapshot-{label}-*.json"):
        snap = json.loads(path.read_text())
        found[int(snap["pid"])] = snap
    return found


def snapshots(
    directory: Path, label: str, pids: Iterable[int], timeout: float = 30.0
) -> dict[int, dict[str, Any]]:
    """``request_snapshots`` then ``collect``."""
    request_snapshots(directory, label)
    return collect(directory, label, pids, timeout)


def fork_records(directory: Path) -> list[dict[str, Any]]:
    """What pre-fork masters recorded before their first fork (one per master)."""
    return [json.loads(p.read_text()) for p in sorted(directory.glob("fork-*.json"))]


def _type_counts(objects: Mapping[str, Any]) -> dict[str, int]:
    return {row["type"]: row["count"] for row in objects.get("by_type", [])}


def object_changes(
    fork: Mapping[str, Any], end: Mapping[str, Any], top: int = 10
) -> list[dict[str, Any]]:
    """Per type, tracked objects at the end of the window minus at the fork, largest first.

    Only types in either side's top list are compared (the records keep the
    top types only); under ``gc.freeze()`` the worker no longer sees the
    frozen objects, so inherited types show as negative.
    """
    before, after = _type_counts(fork), _type_counts(end)
    changes: list[dict[str, Any]] = []
    for name in dict.fromkeys([*before, *after]):
        at_fork, at_end = before.get(name), after.get(name)
        change = (at_end or 0) - (at_fork or 0)
        changes.append({"type": name, "fork": at_fork, "end": at_end, "change": change})
    changes.sort(key=lambda row: (-abs(row["change"]), row["type"]))
    return changes[:top]


def summarize(
    found: Mapping[int, Mapping[str, Any]],
    roles: Mapping[int, str],
    forks: Iterable[Mapping[str, Any]] = (),
    top: int = 5,
) -> dict[str, Any]:
    """The ``memory_profile`` block proposed for results.json.

    Per profiled process (``roles`` gives ``master``/``worker``): traced bytes,
    tracemalloc's own overhead, bytes by package, the ``top`` lines and the
    object counts; plus what each pre-fork master recorded at the fork and,
    per worker, the change of object counts since.
    """
    fork_by_pid = {int(f["pid"]): f for f in forks}
    processes = []
    for pid, snap in sorted(found.items()):
        fork = fork_by_pid.get(int(snap.get("ppid", -1)))
        processes.append(
            {
                "pid": pid,
                "role": roles.get(pid, "unknown"),
                "traced_from": snap["traced_from"],
                "traced_seconds": snap["traced_seconds"],
                "traced_bytes": snap["traced_bytes"],
                "traced_peak_bytes": snap["traced_peak_bytes"],
                "tracemalloc_overhead_bytes": snap["tracemalloc_overhead_bytes"],
                "freeze_count_at_fork": snap["freeze_count_at_fork"],
                "by_package": snap["by_package"],
                "by_caller_package": snap["by_caller_package"],
                "top_lines": snap["top_lines"][:top],
                "objects_total": snap["objects"]["total"],
                "objects_by_type": snap["objects"]["by_type"][:10],
                "objects_since_fork": (
                    None if fork is None else object_changes(fork["objects"], snap["objects"])
                ),
            }
        )
    return {
        "frames": next((snap["frames"] for snap in found.values()), None),
        "fork": [
            {
                "pid": f["pid"],
                "app_imported": f["app_imported"],
                "gc": f["gc"],
                "objects_total": f["objects"]["total"],
                "objects_by_type": f["objects"]["by_type"][:10],
            }
            for f in fork_by_pid.values()
        ],
        "processes": processes,
    }


def format_process(process: Mapping[str, Any]) -> str:
    """One profiled process as text: traced bytes, by package, top lines."""
    packages = ", ".join(
        f"{row['package']} {row['bytes'] / MIB:.2f}" for row in process["by_package"]
    )
    lines = [
        f"  {process['role']} {process['pid']}: traced {process['traced_bytes'] / MIB:.2f} MiB "
        f"since {process['traced_from']} ({process['traced_seconds']} s), tracemalloc itself "
        f"{process['tracemalloc_overhead_bytes'] / MIB:.2f} MiB",
        f"    by package (MiB): {packages}",
    ]
    for row in process["top_lines"]:
        lines.append(
            f"    {row['bytes'] / MIB:7.3f} MiB {row['blocks']:>7} blocks  "
            f"{row['file']}:{row['line']} [{row['package']}]"
        )
    return "\n".join(lines)
