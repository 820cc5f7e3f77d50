"""--profile: a py-spy flame graph of a real server's processes under requests."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from runners.sampling.cpuprofile import CpuProfilePlan, ProfileError, PySpyRecording
from runners.serving.cpus import default_placement
from tests.servers import assert_no_processes, get, running


def _load(url_get: Callable[[], tuple[int, bytes]], seconds: float) -> int:
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _ = url_get()
        assert status == 200
        count += 1
    return count


@pytest.mark.servers
@pytest.mark.parametrize("runner", ["gunicorn-sync-preload", "uvicorn"])
def test_the_flame_graph_names_django_functions(tmp_path: Path, runner: str) -> None:
    svg = tmp_path / f"{runner}.svg"
    loadgen = default_placement().loadgen
    with running(runner) as server:
        plan = CpuProfilePlan(server.pid, svg, cpus=loadgen, rate=200)
        with PySpyRecording(plan) as profile:
            assert profile.pid is not None
            spy = psutil.Process(profile.pid)
            assert spy.cpu_affinity() == list(loadgen)
            requests = _load(lambda: get(server, f"/{server.variant}/fortunes"), 3.0)
    result = profile.result
    assert result is not None and result.output == svg, result and result.log
    assert requests > 10
    text = svg.read_text()
    assert text.startswith("<?xml") and "<svg" in text
    # Django's request path, by function and file, in the server's workers.
    assert "get_response" in text
    assert "django/core/handlers/base.py" in text
    samples, _errors = result.samples or (0, 0)
    assert samples > 50
    assert result.as_dict(tmp_path)["flamegraph"] == svg.name
    assert_no_processes([spy.pid])


@pytest.mark.servers
def test_a_missing_process_is_an_error(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProfileError, match="py-spy exited"):
        PySpyRecording(CpuProfilePlan(proc.pid, tmp_path / "x.svg")).start()


@pytest.mark.servers
def test_a_fixed_duration_ends_by_itself(tmp_path: Path) -> None:
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True:\n    sum(range(10000))"]
    )
    try:
        plan = CpuProfilePlan(busy.pid, tmp_path / "busy.svg", duration_s=1.0)
        profile = PySpyRecording(plan)
        profile.start()
        began = time.monotonic()
        result = profile.stop(timeout=30)
        assert time.monotonic() - began < 10
    finally:
        busy.kill()
        busy.wait()
    assert result.output is not None
    assert "&lt;module&gt; (&lt;string&gt;" in result.output.read_text()


def test_the_command_line() -> None:
    plan = CpuProfilePlan(123, Path("/tmp/x.svg"), rate=50, duration_s=2.4, nonblocking=False)
    argv = plan.command("py-spy")
    assert argv[:4] == ["py-spy", "record", "--pid", "123"]
    options = dict(itertools.pairwise(argv))
    assert options["--rate"] == "50"
    assert options["--duration"] == "2"
    assert "--subprocesses" in argv and "--nonblocking" not in argv
