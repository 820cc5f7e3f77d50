"""CPU placement: which cores the server gets and which the load generator gets.

A benchmark on one machine must not let the load generator and the server
fight over the same cores. The server's whole process tree is pinned to
``Placement.server`` (affinity is inherited across fork, spawn and exec); the
load generator and the upstream service get ``Placement.loadgen``. The default
splits the CPUs this process may use into two halves, server first; with a
single CPU both share it and ``Placement.shared`` says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from runners.serving.servers.launch import launch_command


@dataclass(frozen=True)
class Placement:
    """The CPU sets of the server tree and of the load side (loadgen + upstream)."""

    server: tuple[int, ...]
    loadgen: tuple[int, ...]

    @property
    def upstream(self) -> tuple[int, ...]:
        """The upstream service's CPUs: on the load side, never the server's (there it
        would bias the server); a CPU of its own where the load side has more than two,
        else beside Locust, whose windows then record what it cost them."""
        return self.loadgen[-1:] if len(self.loadgen) > 2 else self.loadgen

    @property
    def locust(self) -> tuple[int, ...]:
        """Locust's CPUs: the load side, less the upstream's CPU where it has one."""
        return self.loadgen[:-1] if len(self.loadgen) > 2 else self.loadgen

    @property
    def shared(self) -> bool:
        """True when the two sets overlap (a fidelity problem worth flagging)."""
        return bool(set(self.server) & set(self.loadgen))

    def as_dict(self) -> dict[str, object]:
        """The ``environment.placement`` block of results.json."""
        return {
            "server_cpus": list(self.server),
            "loadgen_cpus": list(self.loadgen),
            "shared": self.shared,
        }

    def describe(self) -> str:
        note = " (shared: server and load generator compete)" if self.shared else ""
        server, loadgen = format_cpus(self.server), format_cpus(self.loadgen)
        return f"server CPUs {server}, loadgen CPUs {loadgen}{note}"


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on, sorted."""
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cpus(text: str) -> tuple[int, ...]:
    """Parse a CPU list such as ``0``, ``0-3`` or ``0,2-3`` (sorted, no duplicates).

    Raises ``ValueError`` naming the offending part.
    """
    cpus: set[int] = set()
    if not text.strip():
        raise ValueError("empty CPU list: expected e.g. '0', '0-3' or '0,2-3'")
    for part in text.split(","):
        item = part.strip()
        try:
            if "-" in item:
                lo_text, hi_text = item.split("-", 1)
                lo, hi = int(lo_text), int(hi_text)
                if lo > hi:
                    raise ValueError
                cpus.update(range(lo, hi + 1))
            else:
                cpus.add(int(item))
        except ValueError:
            raise ValueError(
                f"bad CPU list {text!r}: {item!r} is not a CPU number or a range like 2-3"
            ) from None
    if min(cpus) < 0:
        raise ValueError(f"bad CPU list {text!r}: negative CPU number")
    return tuple(sorted(cpus))


def format_cpus(cpus: Sequence[int]) -> str:
    """The inverse of ``parse_cpus``: ``(0, 1, 2, 5)`` -> ``"0-2,5"``."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def check_available(cpus: Sequence[int], available: Sequence[int] | None = None) -> None:
    """``ValueError`` unless every CPU in ``cpus`` is one this process may use."""
    allowed = set(available_cpus() if available is None else available)
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise ValueError(
            f"CPU(s) {format_cpus(missing)} not available; this process may use "
            f"{format_cpus(sorted(allowed))}"
        )


def default_placement(available: Sequence[int] | None = None) -> Placement:
    """Split the available CPUs in two halves: server first, then the load side.

    With an odd count the load side gets the extra CPU (a Python load
    generator needs more CPU than the server it saturates). One CPU: both
    share it.
    """
    cpus = tuple(sorted(set(available_cpus() if available is None else available)))
    if not cpus:
        raise ValueError("no CPUs available")
    if len(cpus) == 1:
        return Placement(server=cpus, loadgen=cpus)
    half = len(cpus) // 2
    return Placement(server=cpus[:half], loadgen=cpus[half:])


def placement_from(
    server: str | None, loadgen: str | None, available: Sequence[int] | None = None
) -> Placement:
    """A placement from ``--server-cpus`` / ``--loadgen-cpus`` texts (either may be None).

    A missing side defaults to the CPUs the other does not use (or, if it uses
    them all, to the same CPUs: shared).
    """
    allowed = tuple(sorted(available_cpus() if available is None else available))
    default = default_placement(allowed)
    server_cpus = parse_cpus(server) if server else None
    loadgen_cpus = parse_cpus(loadgen) if loadgen else None
    for cpus in (server_cpus, loadgen_cpus):
        if cpus is not None:
            check_available(cpus, allowed)

    def rest(used: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(c for c in allowed if c not in used) or used

    if server_cpus is None and loadgen_cpus is None:
        return default
    if server_cpus is None:
        assert loadgen_cpus is not None
        return Placement(server=rest(loadgen_cpus), loadgen=loadgen_cpus)
    if loadgen_cpus is None:
        return Placement(server=server_cpus, loadgen=rest(server_cpus))
    return Placement(server=server_cpus, loadgen=loadgen_cpus)


def pin_command(argv: list[str], cpus: Sequence[int]) -> list[str]:
    """``argv`` wrapped so that it and every process it starts run on ``cpus``.

    The wrapper (``runners/serving/servers/launch.py``) sets the affinity and then
    execs ``argv``, so the PID of the returned command is the PID of ``argv``.
    """
    return launch_command(argv, cpus=cpus)
