"""Ctrl-C, SIGTERM and SIGHUP: how every command of the suite (bench, serve, ui) stops.

``stop_on_signals()`` installs a handler for all three explicitly, so that they
stop a command however it was started. (Python installs its own SIGINT handler
only when SIGINT was not inherited as ignored; a background job of a
non-interactive shell inherits it ignored, and would otherwise never see
Ctrl-C sent to its process group.) The first signal raises
``KeyboardInterrupt``; from then on all three are ignored, so that a second
Ctrl-C, or tox's SIGTERM after the interrupt, cannot cut short the clean-up
(stopping every process, checking that none is left, writing the results).

``ignore_stop_signals()`` does the same for a clean-up that starts without a
signal (a server that exited on its own).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def ignore_stop_signals() -> None:
    """Ignore Ctrl-C, SIGTERM and SIGHUP from now on (the clean-up runs to its end)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, the first SIGINT, SIGTERM or SIGHUP raises ``KeyboardInterrupt``
    and later ones are ignored until the process exits.

    Without a signal, the previous handlers are back after the block.
    """
    interrupted = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        ignore_stop_signals()
        interrupted = True
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        if not interrupted:
            for sig, old in previous.items():
                if old is not None:
                    signal.signal(sig, old)
