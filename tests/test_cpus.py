"""CPU placement: parsing CPU lists, the default split, pinning a process tree."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runners.serving.cpus import (
    Placement,
    available_cpus,
    default_placement,
    format_cpus,
    parse_cpus,
    pin_command,
    placement_from,
)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0", (0,)),
        ("0-3", (0, 1, 2, 3)),
        ("0,2-3", (0, 2, 3)),
        (" 3, 1 ", (1, 3)),
        ("1,1,0-1", (0, 1)),
    ],
)
def test_parse_cpus(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpus(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "0,,1", "-1", "1.5"])
def test_parse_cpus_rejects_garbage_clearly(text: str) -> None:
    with pytest.raises(ValueError, match="CPU"):
        parse_cpus(text)


@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_format_cpus_round_trips(cpus: set[int]) -> None:
    assert parse_cpus(format_cpus(sorted(cpus))) == tuple(sorted(cpus))


def test_format_cpus_compacts_ranges() -> None:
    assert format_cpus([5, 0, 1, 2]) == "0-2,5"


@pytest.mark.parametrize(
    ("available", "server", "loadgen"),
    [
        ([0], (0,), (0,)),
        ([0, 1], (0,), (1,)),
        ([0, 1, 2], (0,), (1, 2)),
        ([0, 1, 2, 3], (0, 1), (2, 3)),
        ([4, 6, 5, 7], (4, 5), (6, 7)),
    ],
)
def test_default_placement_splits_in_two(
    available: list[int], server: tuple[int, ...], loadgen: tuple[int, ...]
) -> None:
    placement = default_placement(available)
    assert (placement.server, placement.loadgen) == (server, loadgen)
    assert placement.shared is (len(available) == 1)


def test_default_placement_uses_this_process_affinity() -> None:
    placement = default_placement()
    assert set(placement.server) | set(placement.loadgen) == set(os.sched_getaffinity(0))


def test_placement_as_dict() -> None:
    placement = Placement(server=(0, 1), loadgen=(1, 2))
    assert placement.shared
    assert placement.as_dict() == {"server_cpus": [0, 1], "loadgen_cpus": [1, 2], "shared": True}
    assert "shared" in placement.describe()


def test_placement_from_options() -> None:
    cpus = [0, 1, 2, 3]
    assert placement_from(None, None, cpus) == default_placement(cpus)
    assert placement_from("0", None, cpus) == Placement((0,), (1, 2, 3))
    assert placement_from(None, "3", cpus) == Placement((0, 1, 2), (3,))
    assert placement_from("0-3", None, cpus) == Placement((0, 1, 2, 3), (0, 1, 2, 3))
    assert placement_from("0", "0", cpus).shared
    with pytest.raises(ValueError, match="not available"):
        placement_from("7", None, cpus)


AFFINITY_TREE = (
    "import os, subprocess, sys\n"
    "print(sorted(os.sched_getaffinity(0)), os.getpid(), flush=True)\n"
    "subprocess.run([sys.executable, '-c', "
    "'import os; print(sorted(os.sched_getaffinity(0)))'], check=True)\n"
)


def test_pin_command_pins_the_command_and_its_children() -> None:
    cpu = available_cpus()[-1]
    proc = subprocess.Popen(
        pin_command([sys.executable, "-c", AFFINITY_TREE], [cpu]),
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=30)
    first, second = out.splitlines()
    assert first == f"[{cpu}] {proc.pid}"  # exec'd: same PID as the launcher
    assert second == f"[{cpu}]"


def test_pin_command_rejects_an_empty_set() -> None:
    with pytest.raises(ValueError):
        pin_command(["true"], [])


def test_the_upstream_gets_a_cpu_of_its_own_only_where_the_load_side_has_more_than_two() -> None:
    two = Placement(server=(0,), loadgen=(1,))
    assert two.upstream == two.locust == (1,)
    four = Placement(server=(0, 1), loadgen=(2, 3))
    assert four.upstream == four.locust == (2, 3)
    eight = Placement(server=(0, 1, 2, 3, 4), loadgen=(5, 6, 7))
    assert eight.upstream == (7,) and eight.locust == (5, 6)
