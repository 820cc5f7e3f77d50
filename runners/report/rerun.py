"""What to run again when nothing trustworthy is known of a cell: the invocation's own
command (as ``tox -e bench --``), narrowed to the cells' runners and workload, with
more repeats.

The options that choose the matrix (``--runners``, ``--workloads``, ``--repeat``,
``--output``, a sweep's ``--sweep``, ``--workers`` and ``--threads``) are replaced;
every other option of the invocation is kept, so the new runs are comparable with the
old ones (``tox -e report -- OLD NEW``).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from runners.results.cells import Cell

RERUN_REPEAT = 3
"""The repeats a rerun asks for at least: enough for a band of repeats and a tie."""
REPLACED = ("--runners", "--workloads", "--repeat", "--output", "--workers", "--threads")
"""Options with a value that the rerun sets itself."""
DROPPED = ("--sweep",)
"""Options without a value that the rerun leaves out."""


def _options(command: str) -> list[str]:
    """The options of a recorded bench command (after ``runners.bench`` or ``--``);
    [] when the command cannot be read."""
    try:
        words = shlex.split(command)
    except ValueError:
        return []
    for marker in ("runners.bench", "--"):
        if marker in words:
            words = words[words.index(marker) + 1 :]
            break
    else:
        return []
    kept: list[str] = []
    skip = False
    for word in words:
        if word.startswith("("):
            break  # a note the record adds after the command, not an option
        if skip:
            skip = False
        elif word in REPLACED:
            skip = True
        elif word not in DROPPED and not word.startswith(tuple(f"{n}=" for n in REPLACED)):
            kept.append(word)
    return kept


def rerun_command(command: str, cells: Sequence[Cell], repeat: int) -> str:
    """``tox -e bench -- --runners a,b --workloads w --repeat 3 ...``: the cells again
    (one workload; a sweep's cell with its worker and thread count), at least
    ``RERUN_REPEAT`` repeats (``repeat``: the invocation's)."""
    runners = list(dict.fromkeys(c.runner for c in cells))
    workloads = list(dict.fromkeys(c.workload for c in cells))
    words = [
        "--runners",
        ",".join(runners),
        "--workloads",
        ",".join(workloads),
        "--repeat",
        str(max(RERUN_REPEAT, repeat)),
    ]
    for prefix, option in (("w", "--workers"), ("t", "--threads")):
        counts = sorted({int(q[1:]) for c in cells for q in c.sweep if q.startswith(prefix)})
        if counts:
            words += [option, ",".join(str(n) for n in counts)]
    return shlex.join(["tox", "-e", "bench", "--", *words, *_options(command)])
