"""The smaps breakdown: categories of real mappings, their sums, thread stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.cli import memcheck
from runners.sampling.memory import read_smaps_rollup, sample_tree
from runners.sampling.smaps import (
    CATEGORIES,
    SmapsBreakdown,
    Usage,
    _regions,
    breakdown,
    breakdown_of,
    read_regions,
    stack_regions,
)
from runners.serving.registry import get_runner
from runners.serving.server import RunningServer
from tests.servers import data_dir_fixture, get, running, server_cpus  # noqa: F401

MIB = 2**20

# A process that maps a known file (every page touched), starts a helper
# thread that reports its stack range as glibc knows it, then waits on stdin.
CHILD = r"""
import ctypes, json, mmap, sys, threading
with open(sys.argv[1], "rb") as fh:
    mapped = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
touched = sum(mapped[i] for i in range(0, len(mapped), 4096))
info, ready, stop = {}, threading.Event(), threading.Event()

def helper():
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_ulong
    attr = ctypes.create_string_buffer(256)
    assert libc.pthread_getattr_np(ctypes.c_ulong(libc.pthread_self()), attr) == 0
    low, size = ctypes.c_void_p(), ctypes.c_size_t()
    libc.pthread_attr_getstack(attr, ctypes.byref(low), ctypes.byref(size))
    libc.pthread_attr_destroy(attr)
    info.update(tid=threading.get_native_id(), low=low.value, high=low.value + size.value)
    ready.set()
    stop.wait()

threading.Thread(target=helper, daemon=True).start()
ready.wait()
print(json.dumps(info), flush=True)
sys.stdin.read()
"""


Child = tuple[subprocess.Popen[str], Path, dict[str, int]]


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Child]:
    data = tmp_path / "known.bin"
    data.write_bytes(os.urandom(MIB))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield proc, data, info
    finally:
        proc.kill()
        proc.wait()


def test_a_mapped_file_is_file_backed(child: Child) -> None:
    proc, data, _ = child
    regions = [r for r in read_regions(proc.pid) if r.path == str(data)]
    assert regions, "the mapped file is not in smaps"
    assert all(r.file_backed and not r.anonymous for r in regions)
    assert sum(r.usage.rss for r in regions) == MIB  # every page was touched
    result = breakdown(proc.pid)
    files = {f.path: f for f in result.files}
    assert files[str(data)].category == "files"
    assert files[str(data)].usage.rss == MIB
    assert result.categories["files"].rss >= MIB
    assert result.categories["heap"].rss > 0
    assert result.categories["libraries"].rss > 0  # libc at least


def test_categories_add_up_to_smaps_rollup(child: Child) -> None:
    proc, _, _ = child
    for _ in range(5):  # an idle process: retry only if it changed while we read
        before = read_smaps_rollup(proc.pid)
        result = breakdown(proc.pid)
        after = read_smaps_rollup(proc.pid)
        if before["Rss"] == after["Rss"]:
            break
        time.sleep(0.1)
    total = result.total
    assert set(result.categories) == set(CATEGORIES)
    assert total.rss == after["Rss"]
    assert total.private == after["Private_Clean"] + after["Private_Dirty"]
    # smaps rounds each mapping's PSS down to a kB, smaps_rollup the sum once; other
    # processes mapping the same libraries may come and go between the reads (0.5 %).
    low = min(before["Pss"], after["Pss"])
    high = max(before["Pss"], after["Pss"])
    slack = 1024 * total.mappings + high // 200
    assert low - slack <= total.pss <= high + high // 200
    assert total.mappings == len(read_regions(proc.pid))


def test_a_helper_threads_stack_is_found(child: Child) -> None:
    proc, _, info = child
    result = breakdown(proc.pid)
    assert result.threads == 2
    assert result.threads_unlocated == 0
    # The stack glibc reports for the helper lies in a mapping counted as a stack.
    assert any(start < info["high"] and info["low"] < end for start, end in result.stacks)
    stacks = result.categories["stacks"]
    assert stacks.mappings == 2  # [stack] and the helper's
    assert stacks.rss > 0


SMAPS = b"""\
55d0a0000000-55d0a0001000 r--p 00000000 08:01 100 /usr/bin/python3.11
Rss:                   4 kB
Pss:                   2 kB
Shared_Clean:          4 kB
55d0a1000000-55d0a1200000 rw-p 00000000 00:00 0                          [heap]
Rss:                1024 kB
Pss:                1024 kB
Private_Dirty:      1024 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Rss:                 256 kB
Pss:                 128 kB
Shared_Dirty:        256 kB
7f0000100000-7f0000101000 ---p 00000000 00:00 0
Rss:                   0 kB
7f0000101000-7f0000901000 rw-p 00000000 00:00 0
Rss:                  16 kB
Pss:                  16 kB
Private_Dirty:        16 kB
Swap:                  8 kB
7f0001000000-7f0001010000 r-xp 00000000 08:01 200 /lib/libc.so.6
Rss:                  64 kB
Pss:                   8 kB
Shared_Clean:         64 kB
7f0002000000-7f0002010000 r-xp 00000000 08:01 201 /opt/py/lib/libpython3.11.so.1.0
Rss:                  32 kB
Pss:                  32 kB
Private_Clean:        32 kB
7f0003000000-7f0003010000 r--s 00000000 08:01 202 /data/db.sqlite3-shm
Rss:                  32 kB
Pss:                  16 kB
Shared_Dirty:         32 kB
7f0004000000-7f0004010000 rw-s 00000000 00:01 3 /dev/zero (deleted)
Rss:                   8 kB
Pss:                   4 kB
Shared_Dirty:          8 kB
7f0005000000-7f0005001000 rw-p 00000000 00:00 0                          [anon:glibc: malloc]
Rss:                   4 kB
Pss:                   4 kB
Private_Dirty:         4 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  12 kB
Pss:                  12 kB
Private_Dirty:        12 kB
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
Rss:                   0 kB
VmFlags: ex
"""


def test_classification_of_each_kind_of_mapping() -> None:
    regions = list(_regions(SMAPS))
    assert len(regions) == 12
    stacks = stack_regions(regions, [0x7F0000800000, 0x12345])  # the second is nowhere
    assert [r.start for r in stacks] == [0x7F0000101000]
    categories, files = breakdown_of(regions, "/usr/bin/python3.11", stacks)
    kib = 1024
    assert categories["interpreter"] == Usage(
        rss=36 * kib, pss=34 * kib, shared_clean=4 * kib, private_clean=32 * kib, mappings=2
    )
    assert categories["heap"].rss == (1024 + 256 + 4) * kib  # [heap], anonymous, [anon:...]
    assert categories["heap"].mappings == 4  # with the PROT_NONE guard page
    assert categories["heap"].shared_dirty == 256 * kib
    assert categories["stacks"] == Usage(
        rss=28 * kib, pss=28 * kib, private_dirty=28 * kib, swap=8 * kib, mappings=2
    )
    assert categories["libraries"].rss == 64 * kib
    assert categories["files"].rss == 32 * kib
    assert categories["other"].rss == 8 * kib  # /dev/zero; [vsyscall] maps nothing
    assert categories["other"].mappings == 2
    assert [f.path for f in files] == [
        "/lib/libc.so.6",
        "/data/db.sqlite3-shm",  # ties on RSS go by path
        "/opt/py/lib/libpython3.11.so.1.0",
        "/usr/bin/python3.11",
    ]
    total = sum((u for u in categories.values()), Usage())
    assert total.rss == sum(r.usage.rss for r in regions)


def test_breakdown_as_dict_is_json() -> None:
    regions = list(_regions(SMAPS))
    categories, files = breakdown_of(regions, "/usr/bin/python3.11", [])
    result = SmapsBreakdown(1, categories, 1, 0, 0.001, files)
    data = json.loads(json.dumps(result.as_dict(top_files=2)))
    assert data["categories"]["heap"]["private_dirty"] == (1024 + 16 + 4) * 1024
    assert data["total"]["rss"] == sum(r.usage.rss for r in regions)
    assert len(data["files"]) == 2


def test_a_gone_process_raises() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(OSError):
        breakdown(proc.pid)


def _worker(server: RunningServer) -> int:
    return sample_tree(server.pid).workers[0].pid


@pytest.mark.servers
def test_a_threaded_workers_stacks_and_categories() -> None:
    with running("gunicorn-gthread", workers=1, threads=3) as server:
        for _ in range(12):
            assert get(server, "/sync/json")[0] == 200
        result = breakdown(_worker(server))
    assert result.threads >= 2  # the main thread and the pool's
    assert result.threads_unlocated == 0
    assert result.categories["stacks"].mappings == result.threads
    for name in ("heap", "libraries", "interpreter"):
        assert result.categories[name].rss > MIB, name
    assert result.categories["heap"].private_dirty > 5 * MIB  # a Django worker's own objects


@pytest.mark.servers
def test_memcheck_breakdown_and_memory_profile(tmp_path: Path, data_dir: Path) -> None:
    row = memcheck.measure(
        get_runner("gunicorn-sync-preload"),
        2,
        data_dir,
        tmp_path / "logs",
        server_cpus(),
        per_worker=2,
        settle=0.2,
        breakdown=True,
        profile_dir=tmp_path / "mp",
    )
    assert set(row.breakdowns) == {"master", "worker"}
    worker = row.breakdowns["worker"]
    assert worker.pid in {p.pid for p in row.sample.workers}
    assert worker.categories["heap"].private_dirty > MIB
    assert row.read_cost["smaps_s"] > row.read_cost["smaps_rollup_s"] > 0
    assert row.memory_profile is not None
    assert {p["role"] for p in row.memory_profile["processes"]} == {"worker"}
    assert len(row.memory_profile["processes"]) == 2
    text = row.describe_extras()
    assert "heap" in text and "by package" in text and "at the fork" in text
    json.dumps(row.as_dict())
