"""cgroups without a server: sizes and cores parsed, where a server's cgroup goes (v1 and
v2, from fake ``/proc/self/cgroup`` and mountinfo texts and a fake cgroupfs tree), what
its files say (v1 and v2 fixtures), and the ledger's cleaner on a real cgroup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runners.bench import pods
from runners.cli.args import UsageError, format_size, parse_cores, parse_size
from runners.sampling import cgroupmem
from runners.sampling.cgroupmem import CgroupReader, parse_stat, reading_v1, reading_v2
from runners.serving import cgroups, ledger, supervisor
from runners.serving.cgroups import Cgroup, Limits
from runners.serving.registry import RUNNERS

MIB = 2**20
REPO_ROOT = Path(__file__).resolve().parents[1]

# --- sizes and cores ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * MIB),
        ("512Mi", 512 * MIB),
        ("512M", 512 * MIB),
        ("512MB", 512 * 10**6),
        ("1.5GiB", int(1.5 * 2**30)),
        ("64k", 64 * 1024),
    ],
)
def test_sizes_take_a_unit_binary_unless_decimal_bytes(text: str, size: int) -> None:
    assert parse_size(text, "--memory-limit") == size


@pytest.mark.parametrize("text", ["512", "12XB", "", "-1MiB", "0MiB", "lots"])
def test_a_size_that_does_not_parse_names_the_option(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--memory-limit: "):
        parse_size(text, "--memory-limit")


def test_sizes_print_in_binary_units() -> None:
    assert format_size(256 * MIB) == "256 MiB"
    assert format_size(int(1.5 * 2**30)) == "1.5 GiB"
    assert format_size(52.3 * MIB) == "52.3 MiB"


@pytest.mark.parametrize(("text", "cores"), [("1.5", 1.5), ("500m", 0.5), ("2", 2.0)])
def test_cores_as_a_number_or_in_millicores(text: str, cores: float) -> None:
    assert parse_cores(text) == cores


@pytest.mark.parametrize("text", ["0", "-1", "x", "nan", "inf", "m"])
def test_bad_cores(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--cpu-limit: "):
        parse_cores(text)


def test_limit_lists_with_none_and_the_rule() -> None:
    assert pods.parse_memory_limits("none,256MiB") == (None, 256 * MIB)
    assert pods.parse_cpu_limits("0.5,none") == (0.5, None)
    assert pods.parse_worker_rules("limit,host") == ("limit", "host")
    with pytest.raises(UsageError, match="--worker-rule: unknown 'cores'"):
        pods.parse_worker_rules("cores")
    assert Limits(cpu_cores=1.5).cpus == 2 and Limits(cpu_cores=0.5).cpus == 1


def test_pods_are_a_dimension_with_qualifiers_where_they_vary() -> None:
    prefork, single = RUNNERS["gunicorn-sync-preload"], RUNNERS["waitress"]
    specs = pods.pod_specs(prefork, (None, 256 * MIB), (1.0,), ("limit", "host"))
    assert [s.qualifiers for s in specs] == [
        ("mem-none", "rule-limit"),
        ("mem-none", "rule-host"),
        ("mem256Mi", "rule-limit"),
        ("mem256Mi", "rule-host"),
    ]
    assert specs[1].rule_cpus(1) == os.cpu_count() and specs[0].rule_cpus(1) == 1
    # A single-process server has no worker rule: the rule does not multiply its runs.
    assert len(pods.pod_specs(single, (256 * MIB,), (), ("limit", "host"))) == 1


# --- where a server's cgroup goes ---------------------------------------------------------


def _mountinfo(*lines: tuple[str, str, str, str]) -> str:
    return "\n".join(
        f"{30 + n} 23 0:{30 + n} {root} {point} rw,relatime - {fstype} {fstype} rw{options}"
        for n, (root, point, fstype, options) in enumerate(lines)
    )


@pytest.fixture
def v2_tree(tmp_path: Path) -> Path:
    """A fake cgroup2 mount with our cgroup /user.slice/bench under it."""
    mount = tmp_path / "unified"
    own = mount / "user.slice" / "bench"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own / "cgroup.subtree_control").write_text("cpu memory\n")
    return mount


def test_v2_where_the_memory_controller_is_there(v2_tree: Path) -> None:
    found = cgroups.detect("0::/user.slice/bench\n", _mountinfo(("/", str(v2_tree), "cgroup2", "")))
    own = v2_tree / "user.slice" / "bench"
    assert found.hierarchy == cgroups.Hierarchy(2, own, own)
    assert found.reason is None


def test_v2_without_the_memory_controller_for_children_says_why(v2_tree: Path) -> None:
    own = v2_tree / "user.slice" / "bench"
    (own / "cgroup.subtree_control").unlink()
    (own / "cgroup.subtree_control").mkdir()  # cannot be written: as with processes in it
    found = cgroups.detect("0::/user.slice/bench\n", _mountinfo(("/", str(v2_tree), "cgroup2", "")))
    assert found.hierarchy is None
    assert found.reason is not None and "cannot enable the memory controller" in found.reason


def test_no_memory_controller_anywhere(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    found = cgroups.detect("1:cpu:/\n", _mountinfo(("/", str(tmp_path / "cpu"), "cgroup", ",cpu")))
    assert found.hierarchy is None
    assert found.reason == "no cgroup v2 memory controller and no cgroup v1 memory hierarchy"


def test_v1_under_our_own_memory_cgroup_and_a_bind_mounted_root(tmp_path: Path) -> None:
    memory, cpu = tmp_path / "memory", tmp_path / "cpu,cpuacct"
    (memory / "sub").mkdir(parents=True)
    cpu.mkdir()
    text = _mountinfo(
        ("/docker/abc", str(memory), "cgroup", ",memory"),
        ("/", str(cpu), "cgroup", ",cpu,cpuacct"),
        ("/", str(tmp_path / "unified"), "cgroup2", ""),
    )
    found = cgroups.detect("4:memory:/docker/abc/sub\n2:cpu,cpuacct:/\n0::/\n", text)
    assert found.hierarchy == cgroups.Hierarchy(1, memory / "sub", cpu)


def test_a_v2_cgroup_is_made_with_its_limits_and_listed_in_the_ledger(
    v2_tree: Path, tmp_path: Path
) -> None:
    own = v2_tree / "user.slice" / "bench"
    where = cgroups.Support(cgroups.Hierarchy(2, own, own))
    with ledger.active(tmp_path / "running") as book:
        cgroup = cgroups.make("uvicorn", Limits(512 * MIB, 1.5), where)
        assert cgroup.memory == cgroup.cpu and cgroup.memory.parent == own
        assert cgroup.memory.name.startswith(f"django-bench-{os.getpid()}-")
        assert (cgroup.memory / "memory.max").read_text() == str(512 * MIB)
        assert (cgroup.memory / "memory.swap.max").read_text() == "0"
        assert (cgroup.memory / "cpu.max").read_text() == "150000 100000"
        assert cgroup.procs_files == (cgroup.memory / "cgroup.procs",)
        listed = json.loads(book.path.read_text())["resources"]
        assert listed == [{"kind": "cgroup", "ident": str(cgroup.memory)}]
        for written in cgroup.memory.iterdir():  # a real cgroupfs has no files to remove
            written.unlink()
        assert cgroups.remove(cgroup) == 0
        assert not cgroup.memory.exists()
        assert json.loads(book.path.read_text())["resources"] == []


def test_a_limit_that_cannot_be_written_leaves_nothing(v2_tree: Path, tmp_path: Path) -> None:
    own = v2_tree / "user.slice" / "bench"
    where = cgroups.Support(cgroups.Hierarchy(2, own, None))  # no cpu controller
    with ledger.active(tmp_path / "running") as book:
        with pytest.raises(cgroups.CgroupError, match="needs the cpu controller"):
            cgroups.make("uvicorn", Limits(cpu_cores=1.0), where)
        assert json.loads(book.path.read_text())["resources"] == []
    assert not [p for p in own.iterdir() if p.is_dir()]


# --- what a cgroup's files say ------------------------------------------------------------

V1_STAT = """cache 466944
rss 1798144
shmem 0
total_cache 8388608
total_rss 52428800
total_shmem 1048576
total_active_file 4194304
total_inactive_file 3145728
total_active_anon 52428800
"""
V2_STAT = """anon 52428800
file 8388608
kernel_stack 262144
pagetables 786432
percpu 0
sock 4096
vmalloc 0
shmem 1048576
active_file 4194304
inactive_file 3145728
slab 2097152
"""


def test_v1_working_set_is_usage_minus_total_inactive_file() -> None:
    reading = reading_v1(
        parse_stat(V1_STAT),
        70 * MIB,
        parse_stat("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
        kmem=4 * MIB,
        kmem_tcp=8192,
        failcnt=12,
    )
    assert reading.working_set == 70 * MIB - 3 * MIB
    assert (reading.anon, reading.file, reading.shmem) == (50 * MIB, 8 * MIB, 1 * MIB)
    assert (reading.kernel, reading.sock, reading.slab) == (4 * MIB, 8192, None)
    assert reading.oom_kills == 3 and reading.limit_hits == 12
    assert reading.page_cache_in_working_set == 8 * MIB - 1 * MIB - 3 * MIB


def test_v1_without_oom_kill_counts_none() -> None:
    old = reading_v1(parse_stat(V1_STAT), 70 * MIB, parse_stat("oom_kill_disable 0\n"))
    assert old.oom_kills is None and old.kernel is None


def test_v2_reading_and_its_kernel_memory() -> None:
    events = parse_stat("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n")
    reading = reading_v2(parse_stat(V2_STAT), 64 * MIB, events)
    assert reading.working_set == 64 * MIB - 3 * MIB
    # No "kernel" key (kernels before 5.18): the parts added up.
    assert reading.kernel == 262144 + 786432 + 4096 + 2 * MIB
    assert (reading.slab, reading.sock, reading.pagetables) == (2 * MIB, 4096, 786432)
    assert reading.oom_kills == 2 and reading.limit_hits == 7
    with_kernel = reading_v2(parse_stat(V2_STAT + "kernel 5000000\n"), 64 * MIB, events)
    assert with_kernel.kernel == 5_000_000
    assert reading_v2(parse_stat(V2_STAT), 1 * MIB, {}).working_set == 0  # never below 0


def test_the_reader_reads_a_v2_tree_and_a_v1_tree(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.stat").write_text(V2_STAT)
    (v2 / "memory.current").write_text(f"{64 * MIB}\n")
    (v2 / "memory.events").write_text("max 1\noom 1\noom_kill 1\n")
    reading = CgroupReader(Cgroup(2, v2, v2)).read()
    assert reading is not None and reading.working_set == 61 * MIB and reading.oom_kills == 1
    assert CgroupReader(Cgroup(2, v2, v2)).oom_kills() == 1
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "memory.stat").write_text(V1_STAT)
    (v1 / "memory.usage_in_bytes").write_text(f"{70 * MIB}\n")
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    (v1 / "memory.kmem.usage_in_bytes").write_text(f"{4 * MIB}\n")
    reading = CgroupReader(Cgroup(1, v1, None)).read()
    assert reading is not None and reading.kernel == 4 * MIB and reading.oom_kills == 4
    shutil.rmtree(v1)
    assert CgroupReader(Cgroup(1, v1, None)).read() is None  # gone


def test_a_reading_travels_as_json() -> None:
    reading = reading_v2(parse_stat(V2_STAT), 64 * MIB, {"oom_kill": 1})
    assert cgroupmem.CgroupReading.from_json(json.loads(json.dumps(reading.to_json()))) == reading


# --- the ledger's cleaner, on a real cgroup -----------------------------------------------

needs_cgroups = pytest.mark.skipif(
    not cgroups.support().available, reason=f"no cgroups here: {cgroups.support().reason}"
)


@needs_cgroups
def test_the_cleaner_kills_what_is_inside_and_removes_the_cgroup(tmp_path: Path) -> None:
    hierarchy = cgroups.support().hierarchy
    assert hierarchy is not None
    folder = hierarchy.memory / f"{cgroups.PREFIX}test-{os.getpid()}"
    folder.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (folder / "cgroup.procs").write_text(str(sleeper.pid))
        assert cgroups.clean(str(folder)) == f"removed {folder} (killed 1 process(es) in it)"
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        assert not folder.exists()
        assert bystander.poll() is None  # nothing outside the cgroup is touched
        assert cgroups.clean(str(folder)) is None  # already gone
    finally:
        bystander.kill()
        sleeper.kill()
        bystander.wait()
        sleeper.wait()
        if folder.exists():
            folder.rmdir()


def test_the_cleaner_refuses_what_the_suite_never_makes(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    with pytest.raises(RuntimeError, match="not a cgroup of the suite"):
        cgroups.clean(str(tmp_path / "other"))
    fake = tmp_path / f"{cgroups.PREFIX}1-1-x"
    fake.mkdir()
    with pytest.raises(RuntimeError, match="not a cgroup"):
        cgroups.clean(str(fake))
    assert fake.exists()


@needs_cgroups
def test_a_dead_drivers_cgroup_is_removed_by_the_next_driver(tmp_path: Path) -> None:
    hierarchy = cgroups.support().hierarchy
    assert hierarchy is not None
    folder = hierarchy.memory / f"{cgroups.PREFIX}999999999-1-dead"
    folder.mkdir()
    running = tmp_path / "running"
    running.mkdir()
    driver = {"name": "driver", "pid": 999_999_999, "create_time": 1.0, "cmdline": []}
    resources = [{"kind": "cgroup", "ident": str(folder)}]
    (running / "999999999.json").write_text(
        json.dumps({"driver": driver, "processes": [], "resources": resources})
    )
    began = time.monotonic()
    assert supervisor.stop_strays(running) == [f"cgroup: removed {folder}"]
    assert time.monotonic() - began < 5
    assert not folder.exists() and not list(running.iterdir())


@needs_cgroups
def test_a_cgroup_no_ledger_here_lists_is_removed_once_its_driver_is_gone(
    tmp_path: Path,
) -> None:
    """A driver of another clone, killed: its ledger is not in this folder, but its cgroup
    names its PID; a live driver's cgroup stays."""
    hierarchy = cgroups.support().hierarchy
    assert hierarchy is not None
    dead = hierarchy.memory / f"{cgroups.PREFIX}999999998-3-orphan"
    live = hierarchy.memory / f"{cgroups.PREFIX}1-3-live"  # PID 1 runs
    dead.mkdir()
    live.mkdir()
    try:
        found = supervisor.stop_strays(tmp_path)
        assert found == [f"cgroup: removed {dead} (its driver 999999998 is gone)"]
        assert not dead.exists() and live.exists()
    finally:
        for folder in (dead, live):
            if folder.exists():
                folder.rmdir()


# --- bad pod options: one line, exit status 2, nothing started ---------------------------------

BAD_POD_OPTIONS = [
    (["--memory-limit", "12XB"], "--memory-limit: '12XB' is not a size with a unit"),
    (["--memory-limit", "256MiB,,512MiB"], "--memory-limit: malformed list"),
    (["--cpu-limit", "half"], "--cpu-limit: 'half' is not a number of cores"),
    (["--worker-rule", "host", "--workers", "2"], "--worker-rule: it says what a worker rule"),
    (
        ["--fit-memory", "256MiB", "--workers", "2"],
        "--fit-memory: it searches the worker count under SIZE as the pods' memory limit "
        "itself; give --workers or --fit-memory, not both",
    ),
    (["--fit-memory", "256MiB", "--memory-limit", "512MiB"], "give --memory-limit or --fit-memory"),
    (["--fit-memory", "lots"], "--fit-memory: 'lots' is not a size"),
]


@pytest.mark.parametrize(("args", "message"), BAD_POD_OPTIONS)
def test_bad_pod_options_are_one_line_and_start_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from tests.test_faults import bench_env

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "runners.bench", *args, "--output", str(out)],
        cwd=REPO_ROOT,
        env=bench_env(tmp_path / "data", tmp_path / "running"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), proc.stderr
    assert message in lines[0]
    assert not out.exists()


# --- the report's sentence ------------------------------------------------------------------


def _cgroup_memory(ws: int, pss: int, **parts: int) -> Any:
    from runners.results.record import CgroupMemory

    figures: dict[str, Any] = {
        "anon_bytes": pss,
        "file_bytes": 0,
        "active_file_bytes": 0,
        "inactive_file_bytes": 0,
        "shmem_bytes": 0,
        "kernel_bytes": 0,
        "pss_anon_bytes": pss,
        "pss_file_bytes": 0,
        "pss_shmem_bytes": 0,
        **parts,
    }
    return CgroupMemory(
        version=1,
        usage_peak_bytes=ws,
        usage_mean_bytes=ws,
        working_set_peak_bytes=ws,
        working_set_mean_bytes=ws,
        pss_bytes=pss,
        **figures,
    )


def test_a_sentence_where_the_working_set_and_pss_differ_naming_the_part() -> None:
    from runners.report.memory import working_set_sentence
    from runners.results.record import Memory

    def memory(cgroup: Any) -> Memory:
        return Memory(
            rss_peak_bytes=0,
            pss_peak_bytes=cgroup.pss_bytes,
            pss_mean_bytes=cgroup.pss_bytes,
            uss_peak_bytes=0,
            processes=1,
            cgroup=cgroup,
        )

    close = _cgroup_memory(105 * MIB, 100 * MIB, kernel_bytes=5 * MIB)
    assert working_set_sentence("uvicorn", memory(close)) is None  # within 10 %
    kernel = _cgroup_memory(130 * MIB, 100 * MIB, kernel_bytes=25 * MIB, file_bytes=5 * MIB)
    sentence = working_set_sentence("uvicorn on json", memory(kernel))
    assert sentence is not None and sentence.startswith(
        "uvicorn on json: working set 130 MiB is 30% above summed PSS 100 MiB; most of the "
        "difference is kernel (+25 MiB): kernel memory charged to the cgroup"
    )
    libraries = _cgroup_memory(
        80 * MIB, 100 * MIB, pss_file_bytes=20 * MIB, pss_anon_bytes=80 * MIB
    )
    sentence = working_set_sentence("gunicorn-gthread", memory(libraries))
    assert sentence is not None and "is 20% below summed PSS" in sentence
    assert "page cache (-20 MiB): mapped files" in sentence
    assert working_set_sentence("x", None) is None


# --- what the measurement does with a cgroup's figures -----------------------------------------


def test_a_probe_with_an_oom_kill_fails_and_the_bound_is_memory() -> None:
    from runners.bench.capacity import ProbeObservation, Search, Target, bound

    def probe(oom_kills: int) -> ProbeObservation:
        return ProbeObservation(
            mode="open",
            offered_rps=100.0,
            achieved_rps=100.0,
            p50_ms=5.0,
            p99_ms=20.0,
            requests=1000,
            failures=0,
            users=16,
            server_cpu_percent=40.0,
            oom_kills=oom_kills,
        )

    target = Target()
    assert probe(0).passes(target)
    killed = probe(2)
    assert not killed.passes(target)
    assert killed.problems(target) == ["2 process(es) OOM-killed at the memory limit"]
    found = Search(target, curve=[probe(0), killed], passed=probe(0), failed=killed)
    assert bound(found, slots=4) == "memory"


def test_window_figures_carry_the_cgroup_as_json() -> None:
    from runners.hosting import CgroupWindow, WindowFigures
    from runners.sampling.memory import ProcessMemory, TreeSample

    reading = reading_v2(parse_stat(V2_STAT), 64 * MIB, {"oom_kill": 1})
    process = ProcessMemory(1, "worker", 10, 8, 6, 0.5, pss_anon=7, pss_file=1)
    figures = WindowFigures(
        server_cpu_percent=50.0,
        samples=(TreeSample(0.5, (process,), cgroup=reading),),
        cgroup=CgroupWindow(2, 256 * MIB, 1.0, 70 * MIB, "window", 1, 3),
    )
    assert WindowFigures.from_json(json.loads(json.dumps(figures.to_json()))) == figures
    # What an agent without cgroups (or an older one) sends is still read.
    old: dict[str, Any] = {
        "server_cpu_percent": None,
        "samples": [],
        "sampler_cpu_percent": 0.0,
        "error": None,
    }
    assert WindowFigures.from_json(old).cgroup is None


def test_without_cgroups_the_driver_says_so_once_and_records_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from runners.bench import main as bench_main
    from runners.bench.options import parse_options
    from runners.results import environment

    monkeypatch.setattr(cgroups, "support", lambda: cgroups.Support(None, "no memory controller"))
    monkeypatch.setenv("BENCH_RUNNING_DIR", str(tmp_path / "running"))
    options, _ = parse_options(["--quick", "--database", "sqlite", "--output", str(tmp_path)])
    assert options is not None
    bench_main.connect(options)
    out = capsys.readouterr().out
    assert out.count("no cgroup for the servers here (no memory controller)") == 1
    found = environment.cgroup_support()
    assert (found.available, found.reason) == (False, "no memory controller")
    with pytest.raises(UsageError, match=r"no cgroup can be made here \(no memory controller\)"):
        parse_options(["--memory-limit", "256MiB", "--output", str(tmp_path / "x")])


def test_a_master_that_replaced_every_oom_killed_worker_recovered() -> None:
    from runners.bench.incidents import Incidents, worker_changes
    from runners.sampling.memory import ProcessMemory, TreeSample

    def sample(t: float, *pids: int) -> TreeSample:
        return TreeSample(t, tuple(ProcessMemory(p, "worker", 1, 1, 1, 0.0) for p in pids))

    # Workers 1 and 2; 1 killed, replaced by 3; 3 killed, replaced by 4 (a stream of kills).
    samples = [sample(0, 1, 2), sample(1, 3, 2), sample(2, 4, 2)]
    gone, new = worker_changes({1, 2}, samples)
    assert (gone, new) == ((1, 3), (3, 4))
    assert Incidents(gone, new, oom_kills=2).flags() == ["worker-restarted", "oom-killed"]
    # The last one killed and not replaced (yet): after the window the master gets time.
    gone, new = worker_changes({1, 2}, [*samples, sample(3, 2)], now={2, 5})
    assert Incidents(gone, new).recovered
    gone, new = worker_changes({1, 2}, [*samples, sample(3, 2)], now={2})
    assert Incidents(gone, new).flags() == ["worker-lost"]
