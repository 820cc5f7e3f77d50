"""The ledger's resources: what a killed driver made that is not a process (a scratch
database, a cgroup) is removed by the next driver, by the cleaner of its kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from runners.serving import ledger, supervisor


@pytest.fixture
def cleaned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    removed: list[str] = []

    def cleaner(ident: str) -> str | None:
        if ident == "busy":
            raise RuntimeError("in use")
        removed.append(ident)
        return f"dropped {ident}" if ident != "gone" else None

    monkeypatch.setitem(ledger.CLEANERS, "scratch", cleaner)
    return removed


def _dead_driver_ledger(folder: Path, resources: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    driver = {"name": "driver", "pid": 999_999_999, "create_time": 1.0, "cmdline": []}
    path = folder / "999999999.json"
    path.write_text(json.dumps({"driver": driver, "processes": [], "resources": resources}))
    return path


def test_a_dead_drivers_resources_are_cleaned_and_its_ledger_removed(
    tmp_path: Path, cleaned: list[str]
) -> None:
    path = _dead_driver_ledger(
        tmp_path, [{"kind": "scratch", "ident": "a"}, {"kind": "scratch", "ident": "gone"}]
    )
    found = supervisor.stop_strays(tmp_path)
    assert cleaned == ["a", "gone"]
    assert found == ["scratch: dropped a"]  # an already-gone one is not reported
    assert not path.exists()


def test_what_cannot_be_cleaned_now_stays_listed(tmp_path: Path, cleaned: list[str]) -> None:
    path = _dead_driver_ledger(
        tmp_path,
        [
            {"kind": "scratch", "ident": "busy"},
            {"kind": "unknown-kind", "ident": "x"},
            {"kind": "scratch", "ident": "b"},
        ],
    )
    assert supervisor.stop_strays(tmp_path) == ["scratch: dropped b"]
    left = json.loads(path.read_text())["resources"]
    assert left == [{"kind": "scratch", "ident": "busy"}, {"kind": "unknown-kind", "ident": "x"}]


def test_this_drivers_resources_are_kept_while_it_runs_and_released(tmp_path: Path) -> None:
    resource = ledger.Resource("scratch", "db1")
    with ledger.active(tmp_path) as book:
        ledger.acquired(resource)
        doc = json.loads(book.path.read_text())
        assert doc["resources"] == [{"kind": "scratch", "ident": "db1"}]
        assert doc["driver"]["pid"] == os.getpid()
        # Another driver's start-up leaves a live driver's ledger alone.
        assert supervisor.stop_strays(tmp_path) == []
        ledger.released(resource)
        assert json.loads(book.path.read_text())["resources"] == []
    assert not book.path.exists()


def test_a_resource_never_released_keeps_the_ledger_on_disk(tmp_path: Path) -> None:
    with ledger.active(tmp_path) as book:
        ledger.acquired(ledger.Resource("scratch", "db2"))
    assert book.path.exists()
    assert psutil.pid_exists(json.loads(book.path.read_text())["driver"]["pid"])
