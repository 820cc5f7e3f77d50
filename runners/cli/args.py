"""What the suite's command lines share: one-line usage errors, list and
``--seed`` parsing, and echoing a log file while a process runs."""

from __future__ import annotations

import argparse
import math
import re
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

#: ``--seed`` keys: the sizes ``python -m apps.manage seed`` takes.
SEED_KEYS = ("users", "follows", "posts", "likes", "comments")


class UsageError(ValueError):
    """A bad option or name; the message is one line (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, raising ``UsageError`` (one line, exit status 2 from ``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def split_list(text: str, what: str) -> tuple[str, ...]:
    """``a,b`` -> ``("a", "b")``, duplicates dropped; ``UsageError`` if malformed."""
    items = tuple(part.strip() for part in text.split(","))
    if not text.strip() or any(not item for item in items):
        raise UsageError(f"--{what}: malformed list {text!r} (expected e.g. a,b)")
    return tuple(dict.fromkeys(items))


def parse_seed(text: str | None) -> dict[str, int]:
    """``users=100,posts=2000`` -> sizes for ``apps.manage prepare``; {} for None."""
    if text is None:
        return {}
    seed: dict[str, int] = {}
    for item in split_list(text, "seed"):
        key, sep, value = item.partition("=")
        if not sep or key not in SEED_KEYS:
            raise UsageError(
                f"--seed: {item!r} is not KEY=N with KEY one of {', '.join(SEED_KEYS)}"
            )
        try:
            seed[key] = int(value)
        except ValueError:
            raise UsageError(f"--seed: {item!r}: {value!r} is not a whole number") from None
        if seed[key] < 0:
            raise UsageError(f"--seed: {item!r} is negative")
    return seed


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)


def parse_size(text: str, option: str = "--memory") -> int:
    """``32GiB``, ``32G``, ``32Gi`` (binary), ``32GB`` (decimal), ``512MiB``... -> bytes;
    ``UsageError`` naming ``option`` for anything else."""
    match = _SIZE.match(text)
    if match is None or not match.group(2):
        raise UsageError(f"{option}: {text!r} is not a size with a unit (e.g. 32GiB, 512MiB, 64G)")
    number, prefix, binary, byte = match.groups()
    power = "kmgt".index(prefix.lower()) + 1
    base = 1000 if byte and not binary else 1024
    size = int(float(number) * base**power)
    if size <= 0:
        raise UsageError(f"{option}: {text!r} is not a positive size")
    return size


def format_size(size: int | float) -> str:
    """``268435456`` -> ``256 MiB`` (``1.5 GiB``; ``64 KiB``)."""
    for unit, power in (("GiB", 3), ("MiB", 2), ("KiB", 1)):
        scale = 1024**power
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size:.0f} B"


def parse_cores(text: str, option: str = "--cpu-limit") -> float:
    """``1.5`` (or ``1500m``, as Kubernetes writes it) -> cores; ``UsageError`` if not a
    positive number of cores."""
    raw = text.strip()
    try:
        cores = float(raw[:-1]) / 1000 if raw.endswith("m") else float(raw)
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a number of cores (e.g. 0.5, 1.5, 500m)"
        ) from None
    if not math.isfinite(cores) or cores <= 0:
        raise UsageError(f"{option}: {text!r} is not a positive number of cores")
    return cores


def follow_log(path: Path, done: threading.Event) -> None:
    """Echo what a process writes to ``path`` to stdout until ``done`` is set."""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif done.is_set():
                return
            else:
                time.sleep(0.2)
