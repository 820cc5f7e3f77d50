"""The measured window as the Locust plugin (``loadtests/measure.py``) writes it to
``--measure-out`` and the driver (``runners/load/locust.py``) reads it back.

Standard library only: the plugin imports it inside Locust (gevent), the driver
imports it without Locust.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Window:
    """One measured window. Times are Unix seconds; ``duration_s`` is on a monotonic clock."""

    warmup_s: float
    users: int
    spawn_complete_at: float
    start: float
    end: float
    duration_s: float
    requests: int
    failures: int
    loadgen_cpu_seconds: float
    """User + system CPU seconds of the Locust process tree over the window."""
    loadgen_processes: int

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Window:
        data = json.loads(path.read_text())
        return cls(
            warmup_s=float(data["warmup_s"]),
            users=int(data["users"]),
            spawn_complete_at=float(data["spawn_complete_at"]),
            start=float(data["start"]),
            end=float(data["end"]),
            duration_s=float(data["duration_s"]),
            requests=int(data["requests"]),
            failures=int(data["failures"]),
            loadgen_cpu_seconds=float(data["loadgen_cpu_seconds"]),
            loadgen_processes=int(data["loadgen_processes"]),
        )
