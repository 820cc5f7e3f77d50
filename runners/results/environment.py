"""What a benchmark ran on: the ``environment`` block of results.json.

CPU model and count, memory, the CPU placement of server and load generator,
OS, Python, the versions of every package that shapes the figures, the
database (its URL without the password), the cache and the git commit of the
suite.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from runners import REPO_ROOT
from runners.results.document import CgroupSupport, CpuPlacement, Environment
from runners.results.record import PythonInfo
from runners.runtimes.releases import package_versions
from runners.serving import cgroups


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model name, from /proc/cpuinfo where there is one."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in {"model name", "Model", "cpu model", "Hardware"} and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_total_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def redact_url(url: str) -> str:
    """``url`` without its password: ``postgres://bench@db:5432/bench``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def database_label(database_url: str | None) -> str:
    return redact_url(database_url) if database_url else "sqlite"


def cache_label(redis_url: str | None) -> str:
    return f"redis {redact_url(redis_url)}" if redis_url else "locmem"


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """The commit of the suite and whether the work tree differs from it."""
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def python_info(executable: str = sys.executable) -> PythonInfo:
    return PythonInfo(
        implementation=platform.python_implementation(),
        version=platform.python_version(),
        path=executable,
    )


def cgroup_support() -> CgroupSupport:
    """Whether this host gives each server a cgroup (``runners.serving.cgroups``), and why not."""
    found = cgroups.support()
    where = found.hierarchy
    return CgroupSupport(
        available=where is not None,
        version=where.version if where is not None else None,
        memory_parent=str(where.memory) if where is not None else None,
        cpu_parent=str(where.cpu) if where is not None and where.cpu is not None else None,
        reason=found.reason,
    )


def capture(
    *,
    placement: CpuPlacement,
    database_url: str | None,
    redis_url: str | None,
    seed: Mapping[str, int] | None = None,
) -> Environment:
    """The environment block of results.json."""
    commit, dirty = git_state()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return Environment(
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        cpus_available=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else (os.cpu_count() or 1),
        hostname=socket.gethostname(),
        placement=placement,
        os=platform.platform(),
        kernel=platform.release(),
        load_average=tuple(load) if load is not None else None,
        python=python_info(),
        packages=package_versions(),
        database=database_label(database_url),
        cache=cache_label(redis_url),
        seed=dict(seed) if seed else None,
        git_commit=commit,
        git_dirty=dirty,
        memory_total_bytes=memory_total_bytes(),
        cgroups=cgroup_support(),
    )
