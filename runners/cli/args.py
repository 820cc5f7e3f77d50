"""What the suite's command lines share: one-line usage errors, list and
``--seed`` parsing, and echoing a log file while a process runs."""

from __future__ import annotations

import argparse
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
