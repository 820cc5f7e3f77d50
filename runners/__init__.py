"""The harness: serve the app (``serving``), drive it (``load``), sample it
(``sampling``), record it (``results``), render it (``report``); ``bench``
walks the matrix, ``runtimes`` varies the interpreter, ``micro`` times
Django's request path in-process, ``cli`` holds the small commands."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository: commands run from here, with it on ``PYTHONPATH``."""
