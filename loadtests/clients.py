"""What the suite's Locust users share about their HTTP clients.

- ``count_connects()``: every new TCP connection of a ``FastHttpUser`` is counted
  (``PACER.connected``), so a run says how many connections per request the server
  cost;
- ``--request-timeout`` (``add_request_timeout``, ``request_timeout``): a request
  unanswered for that long fails, so a hung server shows as counted timeouts;
- ``paced_request``: one request on the schedule (``loadtests/pacing.py``), its latency
  from its intended send time, in Locust's statistics too;
- ``is_timeout``, ``error_name``: what a request that got no response ran into.

Several Locust files of the suite may be loaded in one process (``locust -f loadtests``
loads the whole folder), so the hook and the option are added once however many files
ask for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loadtests.catalog import DEFAULT_REQUEST_TIMEOUT_S
from loadtests.pacing import PACER

TIMEOUT = "connection error: timeout"
"""The failure of a request that got no answer within ``--request-timeout``."""


def count_connects() -> None:
    """Count every TCP connection the users open (``PACER.connected``): new connections
    per request say whether the server kept them alive, measured at no cost to the load
    generator. FastHttpUser's client pools its connections in geventhttpclient's
    ``ConnectionPool``, whose ``after_connect`` is the documented hook for a new one."""
    from geventhttpclient.connectionpool import ConnectionPool

    if getattr(ConnectionPool.after_connect, "bench_counted", False):
        return
    original = ConnectionPool.after_connect

    def after_connect(self: ConnectionPool, sock: Any) -> None:
        PACER.connected()
        original(self, sock)

    after_connect.bench_counted = True  # type: ignore[attr-defined]
    ConnectionPool.after_connect = after_connect  # type: ignore[method-assign]


def add_request_timeout(parser: Any) -> None:
    """Add ``--request-timeout`` to Locust's options (once, whoever asks first)."""
    if parser.get_default("request_timeout") is not None:
        return
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        help=(
            "seconds without an answer (to connect, or between bytes) before a request "
            f"fails (default {DEFAULT_REQUEST_TIMEOUT_S:g})"
        ),
    )


def request_timeout(environment: Any) -> float:
    """This process's ``--request-timeout`` (its default when no file added the option)."""
    options = environment.parsed_options
    timeout = getattr(options, "request_timeout", None) if options is not None else None
    return float(timeout or DEFAULT_REQUEST_TIMEOUT_S)


def is_timeout(error: object) -> bool:
    """A request's error is a timeout (geventhttpclient wraps the timeout in its
    ``RetriesExceeded``, requests in ``ReadTimeout``/``ConnectTimeout``: their text says so)."""
    return isinstance(error, TimeoutError) or "timed out" in str(error).lower()


def error_name(response: Any) -> str:
    """What went wrong with a request that got no response: ``timeout`` when nothing
    came back in time, else the exception's name."""
    error = getattr(response, "error", None)
    return "timeout" if is_timeout(error) else type(error).__name__


def paced_request(
    client: Any, method: str, url: str, judge: Callable[[Any], str | None], **kwargs: Any
) -> None:
    """Send one request of a FastHttpUser's ``client`` on the schedule.

    The request waits for its ticket (at once in a closed loop); ``judge`` says what is
    wrong with its response (None: a success), and a request with no response fails as
    ``connection error: <what>``. Its latency runs from the ticket's intended time, and
    Locust's statistics get that latency too (``response_time``), so its CSV and HTML
    report agree with the probes. ``kwargs`` go to ``client.request`` (``name``, ``data``,
    ``json``, ``headers``...).
    """
    request = PACER.acquire()
    try:
        with client.request(method, url, catch_response=True, **kwargs) as response:
            problem: str | None
            if not response.status_code:
                problem = f"connection error: {error_name(response)}"
            else:
                problem = judge(response)
            if problem is None:
                response.success()
            else:
                response.failure(problem)
            latency = PACER.done(request, ok=problem is None, timeout=problem == TIMEOUT)
            response.request_meta["response_time"] = latency * 1000.0
    finally:
        PACER.abandon(request)  # a user stopped mid-request (no-op once done)
