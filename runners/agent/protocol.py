"""What the driver and the agent say to each other: small frozen records that travel as
JSON, and their checks.

The agent never takes a command line: a ``ServeRequest`` names a known runner and a
few validated settings (the same checks as the driver's options and ``tox -e serve``),
which the agent turns into a ``ServeConfig`` itself. ``ProtocolError`` (HTTP 400)
says what was refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from runners.cli.args import SEED_KEYS
from runners.serving.commands import Settings, check
from runners.serving.registry import RUNNERS, worker_count
from runners.vocabulary import GC_MODES, MIDDLEWARES, VARIANTS, GcMode, Variant

TOKEN_ENV = "BENCH_AGENT_TOKEN"  # noqa: S105 (the variable's name, not a secret)
"""The shared secret, when no token file is given (agent and driver alike)."""
MAX_BODY = 1 << 20
"""Largest request body the agent reads."""
DEFAULT_PORT = 8765
DEFAULT_LEASE_S = 10.0


class ProtocolError(ValueError):
    """A request the agent refuses (HTTP 400); one line."""


def _int(data: Mapping[str, Any], key: str, *, minimum: int = 1) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError(f"{key}: expected a whole number >= {minimum}, got {value!r}")
    return value


def _choice(data: Mapping[str, Any], key: str, accepted: tuple[str, ...]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if value not in accepted:
        raise ProtocolError(f"{key}: {value!r} is not one of {', '.join(accepted)}")
    return str(value)


def check_database(value: object) -> str | None:
    """None for SQLite, else a postgres URL (the driver's ``--database`` rule)."""
    if value is None or value == "sqlite":
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in {"postgres", "postgresql"}:
        raise ProtocolError(f"database: expected sqlite or a postgres:// URL, got {value!r}")
    return value


def check_seed(value: object) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("seed: expected an object of sizes")
    seed: dict[str, int] = {}
    for key in value:
        if key not in SEED_KEYS:
            raise ProtocolError(f"seed: {key!r} is not one of {', '.join(SEED_KEYS)}")
        size = _int(value, key, minimum=0)
        if size is not None:
            seed[key] = size
    return seed


@dataclass(frozen=True)
class PrepareRequest:
    """Migrate and seed the agent's database (``apps.manage prepare``)."""

    database: str | None = None
    seed: Mapping[str, int] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrepareRequest:
        return cls(database=check_database(data.get("database")), seed=check_seed(data.get("seed")))


@dataclass(frozen=True)
class ServeRequest:
    """Serve one known runner with these settings (None: the runner's own)."""

    runner: str
    workers: int | None = None
    threads: int | None = None
    variant: Variant | None = None
    gc: GcMode | None = None
    middleware: str = "minimal"
    database: str | None = None
    with_upstream: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServeRequest:
        name = data.get("runner")
        if not isinstance(name, str) or name not in RUNNERS:
            raise ProtocolError(f"runner: unknown runner {name!r} (accepted: {', '.join(RUNNERS)})")
        variant = _choice(data, "variant", VARIANTS)
        gc = _choice(data, "gc", GC_MODES)
        request = cls(
            runner=name,
            workers=_int(data, "workers"),
            threads=_int(data, "threads"),
            variant=variant,  # type: ignore[arg-type]
            gc=gc,  # type: ignore[arg-type]
            middleware=_choice(data, "middleware", MIDDLEWARES) or "minimal",
            database=check_database(data.get("database")),
            with_upstream=bool(data.get("with_upstream", False)),
        )
        return request

    def check(self, ncpus: int) -> None:
        """``ProtocolError`` for settings the runner's server cannot honour."""
        runner = RUNNERS[self.runner]
        workers = self.workers or worker_count(runner.workers, ncpus)
        threads = self.threads if self.threads is not None else runner.threads
        try:
            check(runner, Settings("127.0.0.1", 1, workers, threads, gc=self.gc or runner.gc))
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Served:
    """A server the agent started: what the run records of it."""

    id: str
    port: int
    pid: int
    workers: int
    threads: int | None
    variant: Variant
    gc: GcMode
    argv: tuple[str, ...]
    startup_s: float
    python: Mapping[str, Any]
    django: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Served:
        return cls(**{**data, "argv": tuple(data["argv"])})
