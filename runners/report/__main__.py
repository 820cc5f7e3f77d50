"""``python -m runners.report``: rebuild a report, the index, or compare two runs.

python -m runners.report DIR                    rebuild DIR/index.html and DIR/../index.html
python -m runners.report OLD NEW [--output F]   write a comparison page
python -m runners.report --index [REPORTS_DIR]  rebuild the index (default: reports)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from runners.report.render import render_all, render_comparison, render_index
from runners.results.document import ResultsError

PROG = "python -m runners.report"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Rebuild a benchmark report from its results.json (DIR), compare two runs "
            "(OLD NEW), or rebuild the index of every run (--index)."
        ),
    )
    p.add_argument(
        "dirs",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="one run folder (holding results.json) to rebuild, or two (OLD NEW) to compare",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        help="comparison page to write (default: NEW/compare-<OLD name>.html)",
    )
    p.add_argument(
        "--index",
        nargs="?",
        const=Path("reports"),
        type=Path,
        metavar="REPORTS_DIR",
        help="rebuild REPORTS_DIR/index.html (default: reports)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    dirs: list[Path] = args.dirs
    try:
        if args.index is not None:
            if dirs or args.output:
                p.error("--index takes no run folders and no --output")
            if not args.index.is_dir():
                raise ResultsError(f"{args.index}: no such directory")
            written = [render_index(args.index)]
        elif len(dirs) == 1:
            if args.output:
                p.error("--output is for comparisons (OLD NEW)")
            written = render_all(dirs[0])
        elif len(dirs) == 2:
            written = [render_comparison(dirs[0], dirs[1], args.output)]
        else:
            p.error("give DIR, OLD NEW, or --index [REPORTS_DIR]")
    except ResultsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: cannot write the report: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
