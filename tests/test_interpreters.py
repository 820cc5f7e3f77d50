"""Interpreters, Django releases, gc modes and soak options: discovery and validation.

Discovery runs against fake interpreters (shell scripts answering the probe
the way a Python would) on a fake PATH and in a fake pyenv folder, so these
tests do not depend on what the machine has installed.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runners.bench import console, main, soak
from runners.bench import matrix as bench_matrix
from runners.bench import options as bench_options
from runners.runtimes import axes, interpreters, releases, venvs
from runners.runtimes.interpreters import (
    Interpreter,
    InterpreterNotFound,
    find_interpreter,
    find_interpreters,
)
from runners.runtimes.releases import (
    DjangoUnavailable,
    check_djangos,
    parse_django,
    version_matches,
)
from runners.sampling.memory import ProcessMemory, TreeSample
from runners.serving.registry import RUNNERS

REPO_ROOT = Path(__file__).resolve().parents[1]


def fake_python(path: Path, version: str, implementation: str = "CPython") -> Path:
    """An executable that answers the probe like Python ``version`` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = [int(p) for p in version.split(".")]
    answer = json.dumps(
        {
            "implementation": implementation,
            "version": version,
            "executable": str(path),
            "version_info": info,
        }
    )
    path.write_text(f"#!/bin/sh\necho '{answer}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return path


def broken_shim(path: Path) -> Path:
    """What a pyenv shim does for a version pyenv was not told about."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    path.write_text(f"#!/bin/sh\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path: Path) -> tuple[str, Path]:
    """A PATH with a shim that cannot run 3.12, and a pyenv root with 3.12.1, 3.12.9, 3.13.0."""
    bin_dir = tmp_path / "bin"
    broken_shim(bin_dir / "python3.12")
    fake_python(bin_dir / "python3.11", "3.11.9")
    root = tmp_path / "pyenv"
    for version in ("3.12.1", "3.12.9", "3.13.0", "3.10.4"):
        major_minor = ".".join(version.split(".")[:2])
        fake_python(root / "versions" / version / "bin" / f"python{major_minor}", version)
    (root / "versions" / "3.12-dev").mkdir()  # not a release: never chosen
    return str(bin_dir), root


# --- finding interpreters -------------------------------------------------------------------


def test_version_on_path_is_found(machine: tuple[str, Path]) -> None:
    path, root = machine
    found = find_interpreter("3.11", search_path=path, root=root)
    assert (found.implementation, found.version) == ("CPython", "3.11.9")
    assert found.path == str(Path(path) / "python3.11")
    assert found.spec == "3.11"
    assert (found.minor, found.tag, found.label) == ("3.11", "py3.11.9", "CPython 3.11.9")


def test_a_shim_that_cannot_run_falls_back_to_pyenv_newest_patch(
    machine: tuple[str, Path],
) -> None:
    path, root = machine
    found = find_interpreter("3.12", search_path=path, root=root)
    assert found.version == "3.12.9"
    assert found.path.startswith(str(root / "versions" / "3.12.9"))
    assert find_interpreter("python3.12", search_path=path, root=root).version == "3.12.9"


def test_an_exact_patch_is_honoured(machine: tuple[str, Path]) -> None:
    path, root = machine
    assert find_interpreter("3.12.1", search_path=path, root=root).version == "3.12.1"


def test_pyenv_root_comes_from_the_environment(
    machine: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, root = machine
    monkeypatch.setenv("PYENV_ROOT", str(root))
    assert find_interpreter("3.13", search_path=path).version == "3.13.0"


def test_a_missing_version_names_what_and_where(machine: tuple[str, Path]) -> None:
    path, root = machine
    with pytest.raises(InterpreterNotFound) as caught:
        find_interpreter("3.14", search_path=path, root=root)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no Python 3.14: looked for python3.14 on PATH")
    assert path in message
    assert str(root / "versions" / "3.14.*" / "bin" / "python3") in message


def test_an_unusable_shim_is_named(machine: tuple[str, Path], tmp_path: Path) -> None:
    path, _ = machine
    with pytest.raises(InterpreterNotFound) as caught:
        find_interpreter("3.12", search_path=path, root=tmp_path / "no-pyenv")
    message = str(caught.value)
    assert "found but not usable" in message
    assert "python3.12: pyenv: python3.12: command not found" in message


def test_paths_are_used_as_given(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "custom" / "python", "3.12.4")
    assert find_interpreter(str(python)).version == "3.12.4"
    with pytest.raises(InterpreterNotFound, match=r"no Python at .*nope: no such file"):
        find_interpreter(str(tmp_path / "nope"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    text.chmod(0o755)
    with pytest.raises(InterpreterNotFound, match="is not a working Python"):
        find_interpreter(str(text))


def test_too_old_an_interpreter_is_refused(machine: tuple[str, Path]) -> None:
    path, root = machine
    with pytest.raises(
        InterpreterNotFound, match=r"3\.10\.4 .* too old: the suite needs Python >= 3\.11"
    ):
        find_interpreter("3.10", search_path=path, root=root)


def test_the_real_current_interpreter_is_found_by_path() -> None:
    found = find_interpreter(sys.executable)
    assert found.version == interpreters.current_interpreter().version


def test_two_names_for_one_interpreter_count_once_and_same_versions_collide(
    tmp_path: Path,
) -> None:
    one = fake_python(tmp_path / "a" / "python3", "3.12.4")
    link = tmp_path / "b" / "python3"
    link.parent.mkdir()
    link.symlink_to(one)
    other = fake_python(tmp_path / "c" / "python3", "3.12.4")
    # The symlink runs the same script: it reports the script's path.
    assert len(find_interpreters([str(one), str(link)])) == 1
    with pytest.raises(ValueError, match=r"are both CPython 3\.12\.4"):
        find_interpreters([str(one), str(other)])


# --- the bench CLI refuses before anything runs -------------------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("bench: error: ")
    return lines[0]


def test_bench_missing_interpreter_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    assert main.main(["--python", "3.99", "--output", str(tmp_path / "out")]) == 2
    line = _one_line_error(capsys)
    assert "--python: no Python 3.99: looked for python3.99 on PATH" in line
    assert f"{tmp_path}/versions/3.99.*/bin/python3" in line
    assert not (tmp_path / "out").exists()


def test_bench_missing_interpreter_through_the_cli(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYENV_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "runners.bench", "--python", "3.11,3.98"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "no Python 3.98: looked for python3.98 on PATH" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gc", "default,nope"], "--gc: unknown gc mode 'nope'"),
        (["--gc", "freeze,,off"], "--gc: malformed list"),
        (["--django", "latest"], "--django: 'latest' is not a Django release"),
        (["--soak", "ten"], "--soak: 'ten' is neither a number of requests"),
        (["--soak", "0"], "--soak: '0': the number of requests must be positive"),
        (["--python", ""], "--python: malformed list"),
        (
            ["--runners", "gunicorn-sync", "--gc", "default,freeze"],
            "--gc freeze: gunicorn-sync imports the app in each worker after the fork",
        ),
        (
            ["--soak", "100", "--runners", "gunicorn-sync", "--gc", "off"],
            "use gunicorn-sync-preload",
        ),
    ],
)
def test_bad_runtime_options_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(args) == 2
    assert message in _one_line_error(capsys)


# --- Django releases ------------------------------------------------------------------------


RELEASES = {
    "3.11": ["5.2.19", "5.2", "5.1.15", "5.1"],
    "3.12": ["6.1.3", "6.1", "6.0.10", "6.0", "5.2.19", "5.2"],
    "3.13": ["6.1.3", "6.1", "6.0.10", "6.0", "5.2.19", "5.2"],
    releases.ANY_PYTHON: ["6.1.3", "6.1", "6.0.10", "6.0", "5.2.19", "5.2", "5.1.15"],
}
PY311 = Interpreter("CPython", "3.11.7", "/x/python3.11", "3.11")
PY312 = Interpreter("CPython", "3.12.1", "/x/python3.12", "3.12")


def lookup(minor: str) -> list[str]:
    return RELEASES[minor]


def test_django_specs() -> None:
    assert parse_django("6.1") == "6.1"
    assert parse_django(" 5.2.19 ") == "5.2.19"
    assert parse_django("django==5.2") == "5.2"
    with pytest.raises(ValueError, match="not a Django release"):
        parse_django("6")
    assert version_matches("5.2.19", "5.2")
    assert version_matches("5.2", "5.2.0")
    assert not version_matches("5.2.19", "5.2.1")
    assert not version_matches("6.1.3", "6.0")


def test_django_6_on_python_311_is_refused_with_the_reason() -> None:
    check_djangos(["5.2", "6.1"], [PY312], lookup)
    with pytest.raises(DjangoUnavailable) as caught:
        check_djangos(["6.1"], [PY312, PY311], lookup)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--django 6.1 does not install on CPython 3.11.7")
    assert "needs a newer Python" in message
    assert "the newest Django for Python 3.11 is 5.2.19" in message
    assert "give --python 3.12 or newer" in message


def test_a_release_not_on_the_index_lists_what_is() -> None:
    with pytest.raises(DjangoUnavailable) as caught:
        check_djangos(["6.2"], [PY312], lookup)
    message = str(caught.value)
    assert message.startswith("--django 6.2: no such Django release on the package index")
    assert "available: 6.1 (6.1.3), 6.0 (6.0.10), 5.2 (5.2.19), 5.1 (5.1.15)" in message


def test_the_locked_release_needs_no_lookup() -> None:
    locked = releases.locked_django()
    assert locked is not None

    def refuse(minor: str) -> list[str]:
        raise AssertionError("no lookup expected")

    check_djangos([".".join(locked.split(".")[:2])], [PY311], refuse)


def test_the_index_is_asked_once_then_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fake(minor: str) -> list[str]:
        calls.append(minor)
        return RELEASES[minor]

    monkeypatch.setattr(releases, "_index_lookup", fake)
    assert releases.django_releases("3.12", cache_dir=tmp_path) == RELEASES["3.12"]
    assert releases.django_releases("3.12", cache_dir=tmp_path) == RELEASES["3.12"]
    assert calls == ["3.12"]
    assert "3.12" in json.loads((tmp_path / releases.INDEX_CACHE).read_text())


def test_bench_refuses_django_6_on_python_311_before_anything_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(releases, "django_releases", lookup)
    python = fake_python(tmp_path / "py311" / "python3.11", "3.11.7")
    out = tmp_path / "out"
    assert main.main(["--python", str(python), "--django", "6.1", "--output", str(out)]) == 2
    line = _one_line_error(capsys)
    assert "--django 6.1 does not install on CPython 3.11.7" in line
    assert not out.exists()


def test_venv_names_and_overrides() -> None:
    locked = releases.locked_django()
    assert venvs.venv_name(PY312, None) == f"py3.12.1-django{locked}"
    assert venvs.venv_name(PY312, "6.1") == "py3.12.1-django6.1"
    assert venvs._override(None) is None
    assert venvs._override("6.1") == "django==6.1.*"
    assert venvs._override("6.1.3") == "django==6.1.3"


# --- gc modes and the plan -------------------------------------------------------------------


def test_gc_modes_apply_to_preloading_pre_fork_masters_only() -> None:
    gcs = axes.parse_gcs("default,freeze,off")
    assert axes.gc_modes_for(RUNNERS["gunicorn-sync-preload"], gcs) == gcs
    assert axes.gc_modes_for(RUNNERS["uwsgi"], gcs) == gcs
    assert axes.gc_modes_for(RUNNERS["uvicorn"], gcs) == ("default",)
    assert axes.gc_modes_for(RUNNERS["gunicorn-gthread"], gcs) == ("default",)
    assert axes.gc_modes_for(RUNNERS["gunicorn-sync-freeze"], ()) == (None,)
    axes.check_gcs([RUNNERS["gunicorn-sync"]], ("default",))
    with pytest.raises(ValueError, match="gunicorn-sync imports the app in each worker"):
        axes.check_gcs([RUNNERS["gunicorn-sync"]], ("default", "off"))


def test_plan_ids_are_unique_and_carry_what_varies(monkeypatch: pytest.MonkeyPatch) -> None:
    pythons = (PY311, PY312)
    monkeypatch.setattr(bench_options, "find_interpreters", lambda specs: pythons)
    options, _ = bench_options.parse_options(
        [
            *("--runners", "gunicorn-sync-preload,uvicorn", "--workloads", "json"),
            *("--python", "3.11,3.12", "--gc", "default,freeze,off", "--repeat", "2"),
        ]
    )
    assert options is not None
    cells = bench_matrix.plan(options)
    ids = [cell.id for cell in cells]
    assert len(ids) == len(set(ids)) == 2 * (2 * 3 + 2 * 1)
    assert bench_matrix.run_count(options) == len(cells)
    assert "gunicorn-sync-preload/json/open/1/py3.11.7/gc-freeze" in ids
    assert "uvicorn/json/open/2/py3.12.1/gc-default" in ids
    stems = {cell.stem for cell in cells}
    assert "gunicorn-sync-preload-json-open-r1-py3.12.1-gc-off" in stems
    # Interpreters and gc modes of one cell run next to each other (drift hits them alike).
    assert [c.runtime.gc for c in cells[:3]] == ["default", "freeze", "off"]
    assert bench_matrix.matrix_block(options).to_dict()["gcs"] == ["default", "freeze", "off"]
    assert "CPython 3.12.1" in console.describe_plan(options)


def test_without_runtime_options_the_ids_do_not_change() -> None:
    options, _ = bench_options.parse_options(["--runners", "uvicorn", "--workloads", "json"])
    assert options is not None
    assert [c.id for c in bench_matrix.plan(options)] == ["uvicorn/json/open/1"]


# --- soak -----------------------------------------------------------------------------------


def test_soak_targets() -> None:
    assert soak.parse_soak("300") == soak.SoakTarget(requests=300)
    assert soak.parse_soak("120s") == soak.SoakTarget(duration_s=120)
    assert soak.parse_soak("2m").duration_s == 120
    assert soak.parse_soak("1.5h").duration_s == 5400
    assert soak.SoakTarget(requests=300).cap_s() == soak.MIN_CAP_S
    assert soak.SoakTarget(requests=100_000).cap_s() == 5000
    assert soak.SoakTarget(requests=100).cap_s(30.0) == 30.0


def test_soak_defaults_to_one_preloading_runner_on_mixed_with_every_gc_mode() -> None:
    options, _ = bench_options.parse_options(["--soak", "300"])
    assert options is not None
    assert options.runners == (soak.DEFAULT_RUNNER,)
    assert options.workloads == ("mixed",)
    assert options.users == (soak.DEFAULT_USERS,)
    assert options.gcs == ("default", "freeze", "off")
    assert options.warmup_s == 0
    assert options.load == "closed"
    assert options.soak is not None and options.soak.requests == 300
    assert [c.runtime.gc for c in bench_matrix.plan(options)] == ["default", "freeze", "off"]
    options, _ = bench_options.parse_options(
        ["--soak", "90s", "--runners", "uwsgi,uvicorn", "--workloads", "feed", "--gc", "freeze"]
    )
    assert options is not None
    assert (options.runners, options.workloads, options.gcs) == (("uwsgi",), ("feed",), ("freeze",))
    assert options.duration_s == 90


def _sample(t: float, workers: list[tuple[int, int, int]]) -> TreeSample:
    procs = [ProcessMemory(1, "master", 50, 30, 10, 0.0)]
    procs += [ProcessMemory(pid, "worker", rss, rss - 5, uss, 0.0) for pid, rss, uss in workers]
    return TreeSample(t=t, processes=tuple(procs))


def test_soak_series_keeps_each_worker_on_a_common_axis() -> None:
    samples = [_sample(i * 0.5, [(2, 40, 5 + i), (3, 40, 6 + i)]) for i in range(1000)]
    # Worker 3 is replaced by worker 4 halfway.
    samples += [_sample(500 + i * 0.5, [(2, 40, 900), (4, 40, 8)]) for i in range(10)]
    series = soak.series(
        samples,
        target=soak.SoakTarget(requests=5000),
        interval_s=0.5,
        window_start_s=1.0,
        window_end_s=505.0,
        requests=5003,
    )
    assert series.ended_by == "requests"
    assert series.samples == 1010
    assert len(series.t) == soak.MAX_POINTS
    assert series.t[0] == 0 and series.t[-1] == 504.5
    names = [(p.name, p.pid) for p in series.processes]
    assert names == [("master", 1), ("worker 1", 2), ("worker 2", 3), ("worker 3", 4)]
    for proc in series.processes:
        assert len(proc.shared) == len(proc.uss) == len(proc.pss) == soak.MAX_POINTS
    first = series.processes[1]
    assert first.uss[0] == 5 and first.shared[0] == 35
    replaced = series.processes[2]
    assert replaced.uss[-1] is None and replaced.uss[0] == 6
    assert series.processes[3].uss[0] is None
